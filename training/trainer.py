"""Listwise fine-tuning of Set-Encoder and mono cross-encoders: AdamW, linear warm-up and decay, gradient clipping
and accumulation, bf16 autocast on CUDA, gradient checkpointing, seeded and resumable, with JSONL loss logs and
multi-process training through ``torch.distributed`` (``torchrun``).

>>> config = TrainConfig.from_yaml("training/configs/dl21-set-encoder.yaml")  # doctest: +SKIP
>>> Trainer(config).train()  # doctest: +SKIP

From a shell (one process, or several with ``torchrun --nproc-per-node 2 -m training.trainer ...``)::

    python -m training.trainer training/configs/dl21-set-encoder.yaml [--set max_steps=10 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from pyterrier_setenc.atomic import OutputPathError, atomic_folder, atomic_write, check_writable
from pyterrier_setenc.model import CrossEncoder

from .config import DATA_DIR_ENV, DEFAULT_DATA_DIR, ConfigError, TrainConfig, expand_variables
from .data import Mixture, Sample, build_source
from .export import save_checkpoint
from .losses import get_loss
from .model import build_model, load_model, score
from .run import (
    FIXED,
    RECORD_FILE,
    DamagedStateError,
    RunLock,
    RunLockedError,
    RunMismatchError,
    RunWriteError,
    check_digests,
    differences,
    mismatch_message,
    read_record,
    run_settings,
    top_setting,
    write_digests,
)

__all__ = ["TrainConfig", "Trainer", "ConfigError", "RunMismatchError", "DamagedStateError", "RunWriteError",
           "expand_variables", "linear_schedule", "DATA_DIR_ENV", "DEFAULT_DATA_DIR", "main"]


class Scorer(nn.Module):
    """The cross-encoder as a module whose forward gives the scores of a packed batch (what DDP wraps)."""

    def __init__(self, model: CrossEncoder, gradient_checkpointing: bool):
        super().__init__()
        self.model = model
        self.gradient_checkpointing = gradient_checkpointing

    def forward(self, batch) -> torch.Tensor:
        return score(self.model, batch, self.gradient_checkpointing)


def linear_schedule(warmup_steps: int, max_steps: int):
    """Learning-rate factor: linear warm-up from 0 over ``warmup_steps``, then linear decay to 0 at ``max_steps``."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (max_steps - step) / max(1, max_steps - warmup_steps))
    return factor


class Trainer:
    """Runs a :class:`TrainConfig` in its ``output_dir``, which belongs to one run: a second trainer on the same
    folder fails (:class:`~training.run.RunLockedError`); a start on a folder with a saved state continues that run
    exactly, or refuses (:class:`~training.run.RunMismatchError`) and lists each setting that differs from the
    stored ones (``output_dir/run.json``), unless it is named in ``allow_changes``; a finished run is not trained
    again.

    >>> Trainer(TrainConfig.from_yaml("c.yaml")).train()  # doctest: +SKIP
    >>> Trainer(TrainConfig.from_yaml("c.yaml", {"max_steps": 900}), allow_changes=["max_steps"]).train()
    ... # doctest: +SKIP
    """

    def __init__(self, config: TrainConfig, allow_changes: Iterable[str] = ()):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, not {type(config).__name__}")
        self.config = config
        self.allow_changes = {name.strip() for name in allow_changes if name.strip()}
        unknown = sorted(self.allow_changes - set(config.to_dict()))
        if unknown:
            raise ConfigError(f"allow_changes names no setting: {', '.join(unknown)}")
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.distributed and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend)
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        if config.threads:
            torch.set_num_threads(config.threads)
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            self.device = torch.device("cuda", local)
        else:
            self.device = torch.device("cpu")
        self.output = Path(config.output_dir)
        self.state_dir = self.output / "state"
        self.lock = RunLock(self.output)
        self.changes: list[tuple[str, Any, Any]] = []
        self._state_stamp: tuple[int, int] | None = None
        self._released = False
        self._settings: dict[str, Any] | None = None
        try:
            self.changes = self._agree(self._claim)
            self._build()
        except BaseException:
            self.lock.release()
            raise

    def _claim(self) -> list[tuple[str, Any, Any]]:
        """Rank 0: the folder is writable and locked, and its stored run (if any) is this one; returns the changes
        asked for."""
        check_writable(self.output / RECORD_FILE)
        self.lock.acquire()
        if not self.state_dir.exists():
            return []
        record = read_record(self.output)
        current = self._run_settings()
        if record is None:  # a state saved before settings were stored: they are taken as this run's
            print(f"{self.output} holds a state but no {RECORD_FILE} (saved by an earlier version); resuming it "
                  "with these settings", file=sys.stderr, flush=True)
            return []
        found = differences(record["settings"], current)
        blocked = [change for change in found if top_setting(change[0]) in FIXED
                   or top_setting(change[0]) not in self.allow_changes]
        if blocked:
            raise RunMismatchError(mismatch_message(self.output, record.get("step", "?"), found, self.allow_changes),
                                   found)
        return found

    def _agree(self, work: Callable[[], Any]) -> Any:
        """Runs ``work`` on rank 0 and returns its result; with several processes every process gets that result,
        or raises if ``work`` failed."""
        if not self.distributed:
            return work()
        outcome: list[Any] = [None, None]  # (failure, result)
        if self.rank == 0:
            try:
                outcome = [None, work()]
            except Exception as error:  # passed on to the other processes, then raised here
                dist.broadcast_object_list([f"{type(error).__name__}: {error}", None], src=0)
                raise
        dist.broadcast_object_list(outcome, src=0)
        if outcome[0] is not None:
            raise RuntimeError(f"the process of rank 0 failed: {outcome[0]}")
        return outcome[1]

    def _build(self) -> None:
        config = self.config
        random.seed(config.seed)
        torch.manual_seed(config.seed)
        self.data = Mixture([build_source(spec, config.data_root) for spec in config.data])
        if config.init_checkpoint is not None:
            self.model = load_model(config.init_checkpoint)
        else:
            assert config.backbone is not None  # TrainConfig holds exactly one of the two
            self.model = build_model(config.backbone, config.kind, query_length=config.query_length,
                                     doc_length=config.doc_length, add_extra_token=config.add_extra_token,
                                     depth=config.depth, sample_missing_docs=config.sample_missing_docs,
                                     pooling_strategy=config.pooling_strategy, seed=config.seed,
                                     workdir=self.output / "tokenizer" if self.rank == 0 else None)
        self.model.to(self.device).train()
        scorer: nn.Module = Scorer(self.model, config.gradient_checkpointing)
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel

            scorer = DistributedDataParallel(scorer, device_ids=[self.device.index] if self.device.type == "cuda"
                                             else None)
        self.scorer = scorer
        backbone = list(self.model.backbone.named_parameters())
        decay = [p for n, p in backbone if p.dim() > 1 and "LayerNorm" not in n]
        no_decay = [p for n, p in backbone if not (p.dim() > 1 and "LayerNorm" not in n)]
        head = list(self.model.head.parameters())
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0},
                                            {"params": head, "weight_decay": 0.0,
                                             "lr": config.head_learning_rate or config.learning_rate}],
                                           lr=config.learning_rate)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, linear_schedule(config.warmup_steps, config.max_steps))
        self.loss_fn = get_loss(config.loss, **config.loss_options)
        self.step = 0
        self.elapsed = 0.0
        if self.state_dir.exists():
            self.load_state()
            if self.changes:
                self._apply_changes()
        self._agree(self._start_record)

    def _start_record(self) -> None:
        """Rank 0: ``run.json`` holds this run's settings (and the changes made on purpose); the log holds no step
        after the state's (steps run after the last save are run again)."""
        record = (read_record(self.output) if self.step else None) or {"changes": []}
        if self.changes:
            record["changes"].append({"at_step": self.step, "settings": {name: [old, new] for name, old, new
                                                                          in self.changes}})
        record.update(settings=self._run_settings(), step=self.step)
        self._write_record(record)
        log = self.output / "log.jsonl"
        if log.is_file():
            kept = []
            for line in log.read_text(encoding="utf-8").splitlines(keepends=True):
                try:
                    if json.loads(line)["step"] <= self.step:
                        kept.append(line)
                except (ValueError, KeyError, TypeError):
                    continue  # a line torn by a killed write
            self._guarded(log, "the log", lambda: atomic_write(log, lambda file: file.writelines(kept)))

    def _run_settings(self) -> dict[str, Any]:
        if self._settings is None:
            self._settings = run_settings(self.config)
        return self._settings

    def _write_record(self, record: dict) -> None:
        path = self.output / RECORD_FILE
        self._guarded(path, "the run's settings",
                      lambda: atomic_write(path, lambda file: file.write(json.dumps(record, indent=1) + "\n")))

    def _apply_changes(self) -> None:
        """Settings changed on purpose that the saved optimizer and schedule hold: the new learning rates, weight
        decay and schedule take effect from the resumed step on."""
        config = self.config
        if self.step > config.max_steps:
            raise RunMismatchError(f"{self.output}: the run is at step {self.step}, past max_steps "
                                   f"{config.max_steps}", self.changes)
        bases = [config.learning_rate, config.learning_rate, config.head_learning_rate or config.learning_rate]
        factor = linear_schedule(config.warmup_steps, config.max_steps)(self.step)
        self.scheduler.base_lrs = list(bases)
        for group, base in zip(self.optimizer.param_groups, bases):
            group["initial_lr"] = base
            group["lr"] = base * factor
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        self.optimizer.param_groups[0]["weight_decay"] = config.weight_decay
        if self.rank == 0:
            listed = "; ".join(f"{name}: {old} -> {new}" for name, old, new in self.changes)
            print(f"{self.output}: continuing at step {self.step} with settings changed on purpose ({listed})",
                  file=sys.stderr, flush=True)

    @property
    def finished(self) -> bool:
        """Whether the run has reached ``max_steps`` and its model is saved."""
        return self.step >= self.config.max_steps and (self.output / "model" / "model.safetensors").is_file()

    def close(self) -> None:
        """Releases ``output_dir`` for another trainer (:meth:`train` does so when it returns)."""
        self.lock.release()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _relock(self) -> None:
        """Takes ``output_dir`` again for a second :meth:`train`; the state must be the one this trainer holds."""
        def claim():
            self.lock.acquire()
            if self._stamp() != self._state_stamp:
                self.lock.release()
                raise RunMismatchError(f"{self.state_dir} changed since this trainer read or saved it (another trainer "
                                       "ran in the folder); start a new Trainer to continue from it", [])
        self._agree(claim)

    def _stamp(self) -> tuple[int, int] | None:
        try:
            info = (self.state_dir / "trainer.pt").stat()
        except OSError:
            return None
        return info.st_ino, info.st_mtime_ns

    def _guarded(self, path: Path, what: str, write: Callable[[], Any], after: str = "") -> Any:
        """Runs ``write``; a failure (full or read-only file system) becomes a :class:`RunWriteError` naming
        ``path``."""
        try:
            return write()
        except Exception as error:
            reason = f"{type(error).__name__}: {getattr(error, 'strerror', None) or error}"
            after = after or "what was saved before is unchanged"
            raise RunWriteError(f"cannot write {what} to {path} ({reason}); {after}. Free space or make the folder "
                                "writable, then start the trainer again: it resumes from the last saved state") \
                from error

    # ---------------------------------------------------------------------------------------------- data order

    def lists_for(self, step: int, micro: int) -> list[Sample]:
        """The lists this process trains on in micro-step ``micro`` of optimizer step ``step``: a seeded
        permutation of all queries per epoch, dealt out to the processes in turn."""
        per_step = self.config.lists_per_step
        first = ((step * self.config.accumulation_steps + micro) * self.world + self.rank) * per_step
        samples = []
        for position in range(first, first + per_step):
            epoch, offset = divmod(position, len(self.data))
            generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
            index = int(torch.randperm(len(self.data), generator=generator)[offset])
            samples.append(self.data.sample(index, seed=self.config.seed, epoch=epoch))
        return samples

    def loss_of(self, samples: list[Sample]) -> torch.Tensor:
        queries = [s.query for s in samples for _ in s.texts]
        docs = [t for s in samples for t in s.texts]
        sizes = [len(s.texts) for s in samples]
        batch = self.model.encode(queries, docs, sizes)
        autocast = self.device.type == "cuda" and self.config.bf16
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
            scores = self.scorer(batch)
        losses = [self.loss_fn(part, torch.tensor(s.targets, device=part.device))
                  for part, s in zip(torch.split(scores.float(), sizes), samples)]
        return torch.stack(losses).mean()

    # ---------------------------------------------------------------------------------------------- training

    def train(self, until: int | None = None) -> Path:
        """Trains up to ``max_steps`` (or only up to step ``until``, keeping a resumable state) and saves the
        model as a lightning-ir checkpoint in ``output_dir/model``; returns that folder. A finished run is not
        trained again: it says so and returns its model. ``output_dir`` is released when it returns."""
        if self._released:
            self._relock()
        try:
            return self._train(until)
        finally:
            self.lock.release()
            self._released = True

    def _train(self, until: int | None) -> Path:
        config = self.config
        final = self.output / "model"
        if self.finished:
            if self.rank == 0:
                print(f"the run in {self.output} finished at step {self.step} (max_steps {config.max_steps}); its "
                      f"model is {final}. Nothing to train: to train it further, raise max_steps and add "
                      "--allow-change max_steps; to train anew, choose another output_dir", file=sys.stderr, flush=True)
            return final
        last = config.max_steps if until is None else min(until, config.max_steps)
        log_file = self.output / "log.jsonl"
        started = time.perf_counter() - self.elapsed
        while self.step < last:
            step_start = time.perf_counter()
            total = 0.0
            for micro in range(config.accumulation_steps):
                sync = micro == config.accumulation_steps - 1 or not self.distributed
                scorer = self.scorer  # distributed: the DistributedDataParallel wrapper
                context = scorer.no_sync() if not sync and isinstance(scorer, nn.parallel.DistributedDataParallel) \
                    else _nullcontext()
                with context:
                    loss = self.loss_of(self.lists_for(self.step, micro)) / config.accumulation_steps
                    loss.backward()
                total += float(loss.detach())
            grad_norm = None
            if config.max_grad_norm:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.max_grad_norm))
            learning_rate = self.scheduler.get_last_lr()[0]
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            if self.distributed:
                reduced = torch.tensor([total], device=self.device)
                dist.all_reduce(reduced)
                total = float(reduced) / self.world
            self.elapsed = time.perf_counter() - started
            if self.rank == 0 and (self.step % config.log_every == 0 or self.step == config.max_steps):
                record = dict(step=self.step, epoch=round(self.step * config.accumulation_steps * self.world
                                                          * config.lists_per_step / len(self.data), 3),
                              loss=round(total, 6), lr=learning_rate, grad_norm=grad_norm,
                              step_seconds=round(time.perf_counter() - step_start, 3),
                              elapsed_seconds=round(self.elapsed, 1))
                line = json.dumps(record) + "\n"
                self._guarded(log_file, "the log", partial(_append, log_file, line))
                print(f"step {self.step}/{config.max_steps} loss {total:.4f} lr {learning_rate:.2e} "
                      f"({record['step_seconds']:.1f}s/step, {self.elapsed / 60:.1f} min)", file=sys.stderr,
                      flush=True)
            if config.save_every and self.step % config.save_every == 0 and self.step < config.max_steps:
                self.save_state()
        if self._saved_step != self.step:
            self.save_state()
        if self.step < config.max_steps:
            return self.state_dir / "model"
        self._agree(lambda: self._guarded(
            final, "the model", lambda: save_checkpoint(self.model, final),
            after=f"the training state of step {self.step} is saved in {self.state_dir}, and a start of the trainer "
                  "writes the model from it without training"))
        return final

    # ---------------------------------------------------------------------------------------------- resuming

    _saved_step: int | None = None

    def save_state(self) -> None:
        """Model, optimizer, scheduler, RNG and step in ``output_dir/state`` (``model/``, ``trainer.pt`` and the
        SHA-256 of each file in ``digests.json``), written atomically (:func:`pyterrier_setenc.atomic.atomic_folder`):
        a failed save (full or read-only file system) raises :class:`~training.run.RunWriteError` naming the folder
        and leaves the earlier state as it was."""
        before = f"the state of step {self._saved_step} there is unchanged" if self._saved_step is not None \
            else "no earlier state was saved"

        def write() -> None:
            with atomic_folder(self.state_dir) as staging:
                save_checkpoint(self.model, staging / "model")
                torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                            "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
                            "step": self.step, "elapsed": self.elapsed}, staging / "trainer.pt")
                write_digests(staging)

        def save() -> None:
            self._guarded(self.state_dir, f"the training state of step {self.step}", write, after=before)
            record = read_record(self.output) or {"changes": [], "settings": self._run_settings()}
            record["step"] = self.step
            self._write_record(record)

        self._agree(save)  # with several processes, all raise if the save failed
        self._saved_step = self.step
        self._state_stamp = self._stamp()

    def load_state(self) -> None:
        """The saved state, checked first: a missing, truncated or altered file raises
        :class:`~training.run.DamagedStateError` naming it."""
        from pyterrier_setenc.checkpoint import read_state_dict
        from pyterrier_setenc.lightning_ir import model_weight_name

        remedy = (f"The saved state cannot be used: restore {self.state_dir} from a copy, or delete it to train the "
                  f"run in {self.output} again from step 0")
        trainer_file = self.state_dir / "trainer.pt"
        if not trainer_file.is_file():
            raise DamagedStateError(f"{trainer_file} is missing. {remedy}")
        check_digests(self.state_dir, remedy)
        try:
            state = torch.load(trainer_file, map_location="cpu", weights_only=True)
            missing = sorted({"optimizer", "scheduler", "torch_rng", "python_rng", "step"} - set(state))
            if missing:
                raise ValueError(f"it lacks {missing}")
        except Exception as error:
            raise DamagedStateError(f"{trainer_file} cannot be read ({type(error).__name__}: "
                                    f"{str(error).splitlines()[0] if str(error) else ''}). {remedy}") from None
        model_folder = self.state_dir / "model"
        try:
            weights = read_state_dict(model_folder)
            own = self.model.state_dict()
            mapped = {model_weight_name(key, own): tensor for key, tensor in weights.items()}
            self.model.load_state_dict(mapped)
        except Exception as error:
            raise DamagedStateError(f"the weights in {model_folder} cannot be read ({type(error).__name__}: "
                                    f"{str(error).splitlines()[0] if str(error) else ''}). {remedy}") from None
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["torch_rng"])
            random.setstate(state["python_rng"])
            self.step = int(state["step"])
        except Exception as error:
            raise DamagedStateError(f"{trainer_file} does not fit this model ({type(error).__name__}: {error}). "
                                    f"{remedy}") from None
        self.elapsed = float(state.get("elapsed", 0.0))
        self._saved_step = self.step
        self._state_stamp = self._stamp()
        if self.rank == 0:
            print(f"resumed from {self.state_dir} at step {self.step}", file=sys.stderr, flush=True)


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as file:
        file.write(text)
        file.flush()


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *args):
        return False


def parse_overrides(items: list[str]) -> dict[str, Any]:
    import yaml

    overrides = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key] = yaml.safe_load(value)
    return overrides


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fine-tune a Set-Encoder or mono cross-encoder from a YAML config.")
    parser.add_argument("config", help="a YAML file (see training/configs)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    parser.add_argument("--allow-change", action="append", default=[], metavar="SETTING[,SETTING]",
                        help="continue the run in output_dir although these settings differ from its stored ones "
                             "(e.g. max_steps to train further)")
    args = parser.parse_args(argv)
    try:
        config = TrainConfig.from_yaml(args.config, parse_overrides(args.set))
        trainer = Trainer(config, allow_changes=[name for item in args.allow_change for name in item.split(",")])
        finished = trainer.finished
        final = trainer.train()
    except (ConfigError, OutputPathError, RunLockedError, RunMismatchError, DamagedStateError, RunWriteError) as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)  # the message says it all: no traceback
        sys.exit(1)
    if trainer.rank == 0 and not finished:
        print(f"saved {final}", file=sys.stderr)
    if trainer.distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
