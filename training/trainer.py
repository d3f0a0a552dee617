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
import dataclasses
import json
import os
import random
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from pyterrier_setenc.atomic import atomic_folder

from .data import Mixture, Sample, build_source
from .export import save_checkpoint
from .losses import get_loss
from .model import build_model, load_model, score


@dataclass
class TrainConfig:
    """Everything a training run needs; read from YAML with :meth:`from_yaml`."""

    output_dir: str
    data: list[dict[str, Any]]
    backbone: str | None = None  # a BERT/ELECTRA folder or id; or
    init_checkpoint: str | None = None  # a lightning-ir set-encoder/mono checkpoint to continue from (stage 2)
    kind: str = "set-encoder"
    query_length: int = 32
    doc_length: int = 128
    add_extra_token: bool = True
    depth: int = 100
    sample_missing_docs: bool = True
    loss: str = "info_nce"
    loss_options: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. {temperature: 0.05} for listnet
    pooling_strategy: str = "first"  # the head's pooling of a fresh model: first ([CLS]) or mean
    learning_rate: float = 1e-5
    head_learning_rate: float | None = None  # for the fresh scoring layer (default: learning_rate)
    weight_decay: float = 0.01
    warmup_steps: int = 0
    max_steps: int = 100
    lists_per_step: int = 1  # query lists in one forward pass (per process)
    accumulation_steps: int = 1
    max_grad_norm: float | None = 1.0
    gradient_checkpointing: bool = True
    bf16: bool = True  # autocast to bfloat16, on CUDA only
    seed: int = 0
    threads: int | None = None
    log_every: int = 1
    save_every: int = 0  # steps between resumable states (0: only at the end)
    data_root: str | None = None  # where relative data paths start (default: the YAML file's folder)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> TrainConfig:
        import yaml

        with open(path, encoding="utf-8") as file:
            values = yaml.safe_load(file) or {}
        values.update(overrides or {})
        values = expand_variables(values, path)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path}: unknown settings {unknown}; known: {sorted(known)}")
        values.setdefault("data_root", str(Path(path).resolve().parent))
        return cls(**values)

    def __post_init__(self):
        if (self.backbone is None) == (self.init_checkpoint is None):
            raise ValueError("give exactly one of backbone (a BERT/ELECTRA model) and init_checkpoint")
        if self.kind not in ("set-encoder", "mono"):
            raise ValueError(f"kind must be 'set-encoder' or 'mono', not {self.kind!r}")
        get_loss(self.loss, **self.loss_options)
        if self.pooling_strategy not in ("first", "mean"):
            raise ValueError(f"pooling_strategy must be 'first' or 'mean', not {self.pooling_strategy!r}")
        if self.max_steps < 1 or self.accumulation_steps < 1 or self.lists_per_step < 1:
            raise ValueError("max_steps, accumulation_steps and lists_per_step must be at least 1")


DATA_DIR_ENV = "SETENC_DATA_DIR"
DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data"  # ../shared/data of the repo


def expand_variables(value: Any, source: str | os.PathLike) -> Any:
    """``${NAME}`` in the strings of a configuration replaced by the environment variable ``NAME``, made absolute;
    ``${SETENC_DATA_DIR}`` defaults to ``../shared/data`` beside the repository. Another unset variable is an error."""
    if isinstance(value, dict):
        return {key: expand_variables(item, source) for key, item in value.items()}
    if isinstance(value, list):
        return [expand_variables(item, source) for item in value]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match) -> str:
        name = match.group(1)
        setting = os.environ.get(name) or (str(DEFAULT_DATA_DIR) if name == DATA_DIR_ENV else None)
        if setting is None:
            raise ValueError(f"{source}: {value!r} uses ${{{name}}}, which is not set")
        return str(Path(setting).expanduser().absolute())

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", replace, value)


class Scorer(nn.Module):
    """The cross-encoder as a module whose forward gives the scores of a packed batch (what DDP wraps)."""

    def __init__(self, model: nn.Module, gradient_checkpointing: bool):
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
    """Runs a :class:`TrainConfig`; resumes from ``output_dir/state`` when it exists."""

    def __init__(self, config: TrainConfig):
        self.config = config
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
        self.output.mkdir(parents=True, exist_ok=True)
        random.seed(config.seed)
        torch.manual_seed(config.seed)
        self.data = Mixture([build_source(spec, config.data_root) for spec in config.data])
        if config.init_checkpoint:
            self.model = load_model(config.init_checkpoint)
        else:
            self.model = build_model(config.backbone, config.kind, query_length=config.query_length,
                                     doc_length=config.doc_length, add_extra_token=config.add_extra_token,
                                     depth=config.depth, sample_missing_docs=config.sample_missing_docs,
                                     pooling_strategy=config.pooling_strategy, seed=config.seed,
                                     workdir=self.output / "tokenizer" if self.rank == 0 else None)
        self.model.to(self.device).train()
        scorer = Scorer(self.model, config.gradient_checkpointing)
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
        self.state_dir = self.output / "state"
        if (self.state_dir / "trainer.pt").is_file():
            self.load_state()

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
        model as a lightning-ir checkpoint in ``output_dir/model``; returns that folder."""
        config = self.config
        last = config.max_steps if until is None else min(until, config.max_steps)
        log_file = self.output / "log.jsonl"
        started = time.perf_counter() - self.elapsed
        while self.step < last:
            step_start = time.perf_counter()
            total = 0.0
            for micro in range(config.accumulation_steps):
                sync = micro == config.accumulation_steps - 1 or not self.distributed
                context = self.scorer.no_sync() if not sync else _nullcontext()
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
                with open(log_file, "a", encoding="utf-8") as file:
                    file.write(json.dumps(record) + "\n")
                print(f"step {self.step}/{config.max_steps} loss {total:.4f} lr {learning_rate:.2e} "
                      f"({record['step_seconds']:.1f}s/step, {self.elapsed / 60:.1f} min)", file=sys.stderr,
                      flush=True)
            if config.save_every and self.step % config.save_every == 0 and self.step < config.max_steps:
                self.save_state()
        self.save_state()
        if self.step < config.max_steps:
            return self.state_dir / "model"
        final = self.output / "model"
        if self.rank == 0:
            save_checkpoint(self.model, final)
        if self.distributed:
            dist.barrier()
        return final

    # ---------------------------------------------------------------------------------------------- resuming

    def save_state(self) -> None:
        """Model, optimizer, scheduler, RNG and step in ``output_dir/state`` (``model/`` and ``trainer.pt``),
        written atomically (:func:`pyterrier_setenc.atomic.atomic_folder`)."""
        if self.rank == 0:
            with atomic_folder(self.state_dir) as staging:
                save_checkpoint(self.model, staging / "model")
                torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                            "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(), "step": self.step,
                            "elapsed": self.elapsed}, staging / "trainer.pt")
        if self.distributed:
            dist.barrier()

    def load_state(self) -> None:
        from pyterrier_setenc.checkpoint import read_state_dict

        state = torch.load(self.state_dir / "trainer.pt", map_location="cpu", weights_only=True)
        weights = read_state_dict(self.state_dir / "model")
        own = self.model.state_dict()
        mapped = {name: weights[name.removeprefix("backbone.").removeprefix("head.")] for name in own}
        self.model.load_state_dict(mapped)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        self.step = int(state["step"])
        self.elapsed = float(state.get("elapsed", 0.0))
        if self.rank == 0:
            print(f"resumed from {self.state_dir} at step {self.step}", file=sys.stderr, flush=True)


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
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key] = yaml.safe_load(value)
    return overrides


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fine-tune a Set-Encoder or mono cross-encoder from a YAML config.")
    parser.add_argument("config", help="a YAML file (see training/configs)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    args = parser.parse_args(argv)
    config = TrainConfig.from_yaml(args.config, parse_overrides(args.set))
    trainer = Trainer(config)
    final = trainer.train()
    if trainer.rank == 0:
        print(f"saved {final}", file=sys.stderr)
    if trainer.distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
