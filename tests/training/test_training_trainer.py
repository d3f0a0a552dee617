"""The trainer on a tiny random BERT and a small hand-made data set: it learns, logs, resumes exactly, accumulates
gradients like a larger batch, and two processes with DDP (gloo, CPU) train exactly like one process that sees
both processes' lists."""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_training_checkpoint import frame

from pyterrier_setenc import SetEncoderReRanker
from training.trainer import TrainConfig, Trainer, linear_schedule

from builders import REPO, build_backbone

WORDS = ["lobster", "roll", "plant", "sugar", "river", "stone", "music", "train", "cloud", "bread", "paper", "glass"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny backbone and 6 queries with 8 candidates each; the relevant passage repeats the query's word."""
    root = tmp_path_factory.mktemp("train")
    backbone = build_backbone(root / "backbone")
    rows, qrels = [], []
    for q in range(6):
        word = WORDS[q]
        for d in range(8):
            text = f"{word} {word} is here" if d == 3 else f"{WORDS[(q + d + 1) % len(WORDS)]} and more words"
            rows.append(dict(qid=f"q{q}", query=f"{word}", docno=f"q{q}d{d}", text=text, rank=d + 1))
        qrels.append(f"q{q} 0 q{q}d3 1\n")
    with gzip.open(root / "cands.rerank.jsonl.gz", "wt") as file:
        file.writelines(json.dumps(row) + "\n" for row in rows)
    (root / "qrels.txt").write_text("".join(qrels))
    return root, backbone


def config(setup, out: str, **changes) -> TrainConfig:
    root, backbone = setup
    values = dict(output_dir=str(root / out), backbone=str(backbone), kind="set-encoder", query_length=8,
                  doc_length=16, data=[dict(kind="hard_negatives", candidates="cands.rerank.jsonl.gz",
                                            qrels="qrels.txt", list_size=4)],
                  data_root=str(root), loss="info_nce", learning_rate=1e-3, warmup_steps=1, max_steps=4, seed=3,
                  threads=1, gradient_checkpointing=True)
    values.update(changes)
    return TrainConfig(**values)


def weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


def assert_same_weights(a: dict, b: dict, atol: float = 0.0) -> None:
    """Equal weights; with ``atol`` the weights whose gradient is zero in exact arithmetic are left out (attention
    key biases: softmax ignores them; the last layer's output LayerNorm bias: it shifts all scores of a list alike,
    which listwise losses ignore). Their gradients are rounding noise, which Adam turns into steps of the learning
    rate's size."""
    assert set(a) == set(b)
    last = max(int(key.split(".")[2]) for key in a if key.startswith("encoder.layer."))
    for key in a:
        if atol and (key.endswith("attention.self.key.bias") or key == f"encoder.layer.{last}.output.LayerNorm.bias"):
            continue
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=key)


def test_schedule_warmup_then_linear_decay():
    factor = linear_schedule(warmup_steps=3, max_steps=10)
    assert [round(factor(s), 4) for s in range(11)] == [0.25, 0.5, 0.75, 1.0, 6 / 7, 5 / 7, 4 / 7, 3 / 7, 2 / 7, 1 / 7,
                                                        0.0] or [round(factor(s), 4) for s in range(11)] == [
        round(x, 4) for x in [0.25, 0.5, 0.75, 1.0, 6 / 7, 5 / 7, 4 / 7, 3 / 7, 2 / 7, 1 / 7, 0.0]]


def test_training_learns_logs_and_saves(setup):
    trainer = Trainer(config(setup, "learn", max_steps=12, lists_per_step=2, learning_rate=2e-3))
    folder = trainer.train()
    log = [json.loads(line) for line in (trainer.output / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 13))
    assert {"loss", "lr", "grad_norm", "epoch", "step_seconds"} <= set(log[0])
    first, last = sum(r["loss"] for r in log[:3]) / 3, sum(r["loss"] for r in log[-3:]) / 3
    assert last < first  # the relevant passage (the query word twice) is easy to learn
    reranked = SetEncoderReRanker(str(folder))(frame())
    assert len(reranked) == len(frame())


def test_resume_gives_the_same_model(setup):
    straight = Trainer(config(setup, "straight")).train()
    interrupted = Trainer(config(setup, "resumed"))
    interrupted.train(until=2)
    assert interrupted.step == 2 and (interrupted.output / "state" / "trainer.pt").is_file()
    resumed = Trainer(config(setup, "resumed"))
    assert resumed.step == 2
    final = resumed.train()
    assert_same_weights(weights(straight), weights(final))
    log = [json.loads(line)["step"] for line in (resumed.output / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4]


def test_accumulation_equals_a_larger_batch(setup):
    accumulated = Trainer(config(setup, "acc", accumulation_steps=2, gradient_checkpointing=False)).train()
    batched = Trainer(config(setup, "batch", lists_per_step=2)).train()
    assert_same_weights(weights(accumulated), weights(batched), atol=2e-5)


def test_mono_trains(setup):
    folder = Trainer(config(setup, "mono", kind="mono", max_steps=2)).train()
    assert json.loads((folder / "config.json").read_text())["model_type"] == "mono"


def test_config_errors(setup, tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        config(setup, "x", init_checkpoint="somewhere")
    with pytest.raises(ValueError, match="unknown loss"):
        config(setup, "x", loss="hinge")
    path = tmp_path / "c.yaml"
    path.write_text("output_dir: x\nbackbone: y\ndata: []\nlearning_rat: 1\n")
    with pytest.raises(ValueError, match="learning_rat"):
        TrainConfig.from_yaml(path)


def test_ddp_two_processes_train_like_one(setup):
    """``torchrun`` with two CPU processes (gloo): each process takes one list per step; the all-reduced gradient
    is the mean, so the model equals one process training on both lists per step."""
    root, backbone = setup
    single = Trainer(config(setup, "single", lists_per_step=2)).train()
    settings = dict(output_dir=str(root / "ddp"), backbone=str(backbone), kind="set-encoder", query_length=8,
                    doc_length=16, data=[dict(kind="hard_negatives", candidates="cands.rerank.jsonl.gz",
                                              qrels="qrels.txt", list_size=4)], data_root=str(root),
                    loss="info_nce", learning_rate=1e-3, warmup_steps=1, max_steps=4, seed=3, threads=1)
    path = root / "ddp.yaml"
    path.write_text(json.dumps(settings))  # JSON is YAML
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "-m", "training.trainer", str(path)], cwd=REPO, env=environment, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_weights(weights(single), weights(root / "ddp" / "model"), atol=2e-5)
    log = [json.loads(line) for line in (root / "ddp" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # only rank 0 logs


@pytest.mark.parametrize("path", sorted((REPO / "training" / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_parse(path):
    config = TrainConfig.from_yaml(path)
    assert config.data and config.max_steps >= 1
