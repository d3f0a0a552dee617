"""An output_dir belongs to one training run: a second trainer on it fails naming the folder and the holder; a start
with other settings refuses, listing each (old -> new), unless the change is asked for; a finished run says so; a
damaged saved state fails naming the file; a failed save (read-only or full file system) names the path and leaves
the earlier state intact. On the tiny backbone and data of test_training_trainer."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_training_trainer import assert_same_weights, config, setup, weights  # noqa: F401 (setup: a fixture)

from training.config import TrainConfig
from training.run import DamagedStateError, RunLock, RunLockedError, RunMismatchError, RunWriteError
from training.trainer import Trainer

from builders import REPO

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"}


def snapshot(folder: Path) -> dict[str, bytes]:
    """The files of ``folder`` but the lock (which names its latest holder)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "trainer.lock"}


@pytest.fixture(scope="module")
def half_run(setup):  # noqa: F811
    """A run stopped at step 2 of 4 (its state saved), kept as a template to copy."""
    trainer = Trainer(config(setup, "template"))
    trainer.train(until=2)
    return trainer.output


def copy_of(template: Path, setup, name: str) -> Path:  # noqa: F811
    target = setup[0] / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(template, target)
    return target


def log_steps(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------------- other settings

# (changed settings, lines the refusal must list as "setting: old -> new")
REFUSED = [
    (dict(learning_rate=2e-3), ["learning_rate: 0.001 -> 0.002"]),
    (dict(seed=4, loss="ranknet"), ["seed: 3 -> 4", 'loss: "info_nce" -> "ranknet"']),
    (dict(max_steps=6), ["max_steps: 4 -> 6"]),
    (dict(data=[dict(kind="hard_negatives", candidates="cands.rerank.jsonl.gz", qrels="qrels.txt", list_size=5)]),
     ["data[0].list_size: 4 -> 5"]),
    (dict(kind="mono"), ['kind: "set-encoder" -> "mono"', "cannot change within a run"]),
]


@pytest.mark.parametrize("changes,lines", REFUSED, ids=[",".join(c) for c, _ in REFUSED])
def test_a_start_with_other_settings_refuses_listing_each(setup, half_run, changes, lines):  # noqa: F811
    folder = copy_of(half_run, setup, "refused")
    before = snapshot(folder)
    with pytest.raises(RunMismatchError) as caught:
        Trainer(config(setup, "refused", **changes))
    message = str(caught.value)
    assert str(folder) in message and all(line in message for line in lines), message
    assert len(caught.value.differences) == len(lines) - ("cannot change within a run" in lines)
    assert snapshot(folder) == before  # nothing written: not the tokenizer, the state, the log or run.json


def test_free_settings_and_moved_data_paths_continue(setup, half_run):  # noqa: F811
    """threads, log_every, save_every may change; the same data file through another relative path is the same."""
    folder = copy_of(half_run, setup, "free")
    trainer = Trainer(config(setup, "free", threads=2, log_every=2, save_every=1,
                             data_root=str(folder / "..")))
    assert trainer.step == 2 and not trainer.changes
    trainer.close()


def test_a_change_asked_for_takes_effect_from_the_resumed_step(setup, half_run):  # noqa: F811
    """learning_rate 1e-3 -> 2e-3 at step 2 of 4 with one warm-up step: the step after resuming runs at
    2e-3 * (4 - 2) / (4 - 1) (the linear decay, by hand), not at the stored 1e-3 * 2/3."""
    folder = copy_of(half_run, setup, "changed")
    trainer = Trainer(config(setup, "changed", learning_rate=2e-3), allow_changes=["learning_rate"])
    assert trainer.train() == folder / "model"
    log = log_steps(folder)
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert log[2]["lr"] == pytest.approx(2e-3 * 2 / 3, rel=1e-12)
    assert log[3]["lr"] == pytest.approx(2e-3 * 1 / 3, rel=1e-12)
    record = json.loads((folder / "run.json").read_text())
    assert record["changes"] == [{"at_step": 2, "settings": {"learning_rate": [1e-3, 2e-3]}}]
    assert record["settings"]["learning_rate"] == 2e-3 and record["step"] == 4
    # the stored settings are now the new ones: a start with them is the same run
    assert Trainer(config(setup, "changed", learning_rate=2e-3)).finished


def test_a_finished_run_says_so_and_trains_further_only_when_asked(setup, half_run, capfd):  # noqa: F811
    folder = copy_of(half_run, setup, "finished")
    Trainer(config(setup, "finished")).train()
    before = snapshot(folder)
    capfd.readouterr()
    again = Trainer(config(setup, "finished"))
    assert again.finished and again.train() == folder / "model"
    assert "finished at step 4" in capfd.readouterr().err
    assert snapshot(folder) == before  # nothing trained, nothing rewritten
    with pytest.raises(RunMismatchError, match="max_steps: 4 -> 6"):
        Trainer(config(setup, "finished", max_steps=6))
    further = Trainer(config(setup, "finished", max_steps=6), allow_changes=["max_steps"])
    assert not further.finished
    further.train()
    log = log_steps(folder)
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert log[4]["lr"] == pytest.approx(1e-3 * (6 - 4) / (6 - 1), rel=1e-12)  # new schedule from step 4, by hand


def test_a_state_saved_without_stored_settings_is_resumed_and_its_settings_stored(setup, half_run, capfd):  # noqa: F811
    """A folder from before settings were stored (no run.json): the start's settings are taken as the run's."""
    folder = copy_of(half_run, setup, "legacy")
    (folder / "run.json").unlink()
    trainer = Trainer(config(setup, "legacy"))
    assert trainer.step == 2 and "no run.json" in capfd.readouterr().err
    trainer.close()
    with pytest.raises(RunMismatchError, match="seed: 3 -> 4"):
        Trainer(config(setup, "legacy", seed=4))


def test_unknown_names_in_allow_changes_are_refused(setup):  # noqa: F811
    with pytest.raises(ValueError, match="learning_rat"):
        Trainer(config(setup, "unknown-change"), allow_changes=["learning_rat"])


def test_resumed_run_drops_log_lines_after_the_saved_state(setup, half_run):  # noqa: F811
    """Steps run after the last save (a killed trainer) are run again: their log lines go."""
    folder = copy_of(half_run, setup, "relog")
    with open(folder / "log.jsonl", "a") as file:
        file.write(json.dumps({"step": 3, "loss": 9.9}) + "\n" + '{"step": 4, "lo')
    Trainer(config(setup, "relog")).train()
    assert [r["step"] for r in log_steps(folder)] == [1, 2, 3, 4] and log_steps(folder)[2]["loss"] != 9.9


# -------------------------------------------------------------------------------------------------------- lock

HOLDER = """
import sys, time
from training.run import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_second_trainer_on_a_held_folder_fails_naming_it_and_the_holder(setup):  # noqa: F811
    folder = setup[0] / "locked"
    folder.mkdir(exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError) as caught:
            Trainer(config(setup, "locked"))
        assert str(folder) in str(caught.value) and f"process {holder.pid}" in str(caught.value)
        assert not (folder / "run.json").exists() and not (folder / "tokenizer").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    Trainer(config(setup, "locked", max_steps=1)).train()  # a killed holder leaves no stale lock


def test_the_lock_is_held_from_the_start_until_train_returns(setup):  # noqa: F811
    trainer = Trainer(config(setup, "held", max_steps=2))
    with pytest.raises(RunLockedError, match="held"):
        RunLock(trainer.output).acquire()
    trainer.train()
    RunLock(trainer.output).acquire().release()


def test_two_trainer_processes_on_one_folder_do_not_interleave(setup):  # noqa: F811
    """Two processes started together on one output_dir: one trains, the other fails naming the folder; the log
    holds each step once."""
    root, backbone = setup
    settings = dict(output_dir=str(root / "two"), backbone=str(backbone), kind="set-encoder", query_length=8,
                    doc_length=16, data=[dict(kind="hard_negatives", candidates="cands.rerank.jsonl.gz",
                                              qrels="qrels.txt", list_size=4)], data_root=str(root),
                    loss="info_nce", learning_rate=1e-3, warmup_steps=1, max_steps=6, seed=3, threads=1)
    path = root / "two.yaml"
    path.write_text(json.dumps(settings))
    command = [sys.executable, "-m", "training.trainer", str(path)]
    processes = [subprocess.Popen(command, cwd=REPO, env=ENV, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
    assert [code for code, _ in results].count(0) >= 1, results
    for code, err in results:  # the other found the folder in use, or (started late) the run finished
        assert (code == 1 and "RunLockedError" in err and str(root / "two") in err) or \
            (code == 0 and ("saved" in err or "finished at step 6" in err)), results
    assert [r["step"] for r in log_steps(root / "two")] == [1, 2, 3, 4, 5, 6]


# ----------------------------------------------------------------------------------------------- damaged state


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # inside the last tensor's data
    path.write_bytes(bytes(data))


def without_digests(damage):
    def apply(path: Path) -> None:
        state = path.parent if path.parent.name == "state" else path.parent.parent
        (state / "digests.json").unlink()
        damage(path)
    return apply


# (file under output_dir, how it is damaged, the file the message must name)
DAMAGED = [
    ("state/trainer.pt", truncate, "state/trainer.pt"),
    ("state/trainer.pt", without_digests(truncate), "state/trainer.pt"),  # a state saved before digests were kept
    ("state/trainer.pt", lambda p: p.write_bytes(b"not a zip"), "state/trainer.pt"),
    ("state/trainer.pt", Path.unlink, "state/trainer.pt"),
    ("state/model/model.safetensors", truncate, "state/model/model.safetensors"),
    ("state/model/model.safetensors", flip_byte, "state/model/model.safetensors"),  # safetensors has no checksum
    ("state/model/model.safetensors", without_digests(truncate), "state/model"),
    ("state/digests.json", lambda p: p.write_text("{"), "state/digests.json"),
    ("run.json", lambda p: p.write_text("[]"), "run.json"),
]


@pytest.mark.parametrize("name,damage,named", DAMAGED,
                         ids=[f"{n}-{getattr(d, '__name__', 'x')}-{i}" for i, (n, d, _) in enumerate(DAMAGED)])
def test_a_damaged_state_fails_naming_the_file_and_what_to_do(setup, half_run, name, damage, named):  # noqa: F811
    folder = copy_of(half_run, setup, "damaged")
    damage(folder / name)
    with pytest.raises(DamagedStateError) as caught:
        Trainer(config(setup, "damaged"))
    message = str(caught.value)
    assert str(folder / named) in message, message
    assert "restore" in message.lower() or "delete" in message.lower(), message
    assert len(message) < 1000  # no dump of the file


# -------------------------------------------------------------------------------------------- failing writes


def test_a_read_only_output_folder_fails_naming_the_path_and_keeps_the_state(setup, half_run):  # noqa: F811
    folder = copy_of(half_run, setup, "read-only")
    before = snapshot(folder)
    trainer = Trainer(config(setup, "read-only"))
    folder.chmod(0o555)
    try:
        probe = folder / "probe"
        try:
            probe.write_text("x")
        except PermissionError:
            pass
        else:
            probe.unlink()
            pytest.skip("this user writes into read-only folders (root): see the file-size-limit test")
        with pytest.raises(RunWriteError) as caught:
            trainer.train()
        assert str(folder) in str(caught.value) and "step 2" in str(caught.value), caught.value
    finally:
        folder.chmod(0o755)
        trainer.close()
    after = snapshot(folder)
    assert {k: v for k, v in after.items() if k != "log.jsonl"} == \
        {k: v for k, v in before.items() if k != "log.jsonl"}


LIMITED = """
import json, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, like a full disk
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from training.config import TrainConfig
from training.trainer import Trainer
Trainer(TrainConfig(**json.loads(sys.argv[1]))).train()
"""


def test_a_save_past_the_space_left_fails_naming_the_path_and_keeps_the_state(setup, half_run):  # noqa: F811
    """A file-size limit (RLIMIT_FSIZE, which binds root too) stands in for a full disk: the state save at step 4
    fails naming the state folder; the state of step 2 is intact and a later start resumes from it exactly."""
    folder = copy_of(half_run, setup, "full")
    before = snapshot(folder / "state")
    settings = config(setup, "full").to_dict()
    result = subprocess.run([sys.executable, "-c", LIMITED, json.dumps(settings), str(1 << 20)], cwd=REPO, env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("training.run.RunWriteError") and str(folder / "state") in last, last
    assert "step 4" in last and "the state of step 2 there is unchanged" in last, last
    assert snapshot(folder / "state") == before
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]  # no staging folder left behind
    resumed = Trainer(config(setup, "full")).train()
    straight = Trainer(config(setup, "full-straight")).train()
    assert_same_weights(weights(straight), weights(resumed))


def test_the_model_written_at_the_end_survives_a_failed_final_save(setup, half_run, monkeypatch):  # noqa: F811
    """When the final model cannot be written the state is saved; the next start writes the model without
    training."""
    import training.trainer as trainer_module

    folder = copy_of(half_run, setup, "final")

    def fail(model, target, *args, **kwargs):
        if Path(target) == folder / "model":
            raise OSError(28, "No space left on device")
        return original(model, target, *args, **kwargs)

    original = trainer_module.save_checkpoint
    monkeypatch.setattr(trainer_module, "save_checkpoint", fail)
    with pytest.raises(RunWriteError, match=str(folder / "model")):
        Trainer(config(setup, "final")).train()
    monkeypatch.setattr(trainer_module, "save_checkpoint", original)
    trainer = Trainer(config(setup, "final"))
    assert trainer.step == 4 and not trainer.finished
    assert trainer.train() == folder / "model" and (folder / "model" / "model.safetensors").is_file()
    assert [r["step"] for r in log_steps(folder)] == [1, 2, 3, 4]  # nothing trained again


def test_config_from_to_dict_round_trips(setup):  # noqa: F811
    original = config(setup, "x")
    assert TrainConfig(**original.to_dict()) == original


def test_two_processes_take_a_change_asked_for_alike(setup):  # noqa: F811
    """``torchrun`` with two CPU processes, stopped at step 2 and continued with a new learning rate and max_steps:
    the model equals one process that sees both processes' lists and makes the same change (every process applies
    the change, not only the one that checks the stored settings)."""
    root, backbone = setup
    single = root / "change-single"
    Trainer(config(setup, "change-single", lists_per_step=2, max_steps=2)).train()
    Trainer(config(setup, "change-single", lists_per_step=2, max_steps=4, learning_rate=3e-3),
            allow_changes=["max_steps", "learning_rate"]).train()
    settings = config(setup, "change-ddp", max_steps=2).to_dict()
    path = root / "change-ddp.yaml"
    path.write_text(json.dumps(settings))
    for extra in ([], ["--set", "max_steps=4", "--set", "learning_rate=3e-3", "--allow-change",
                       "max_steps,learning_rate"]):
        result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                                 "2", "-m", "training.trainer", str(path), *extra], cwd=REPO, env=ENV,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
    assert_same_weights(weights(single / "model"), weights(root / "change-ddp" / "model"), atol=2e-5)
