"""``pyterrier-setenc rerank --ray-workers N``: the command on a local two-CPU Ray cluster writes the run the command
writes without Ray, and bad Ray options end with a message that names the option.

The golden run is the command's own run without Ray (itself checked against the re-ranker's frame API in
tests/library/test_rerank_command.py), computed with torch on one thread like each actor; scores are compared within
float32's tolerance (:func:`agreement.check_scores`), everything else exactly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pyterrier_setenc.io import read_run
from pyterrier_setenc.rerank_command import main

from agreement import check_scores, config_depth
from builders import FIXTURES, SLICE, one_thread

RERANK = SLICE / "trec-dl-2019" / "bm25-top100.rerank.jsonl.gz"
MODEL = FIXTURES / "setenc-int"
DEPTH = 8


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def first_stage(tmp_path_factory) -> Path:
    """The first three DL19 BM25 lists of the slice as a rerank.jsonl.gz."""
    import gzip
    import json

    folder = tmp_path_factory.mktemp("ray-command")
    with gzip.open(RERANK, "rt", encoding="utf-8") as source:
        rows = [json.loads(line) for line in source]
    qids = sorted({str(row["qid"]) for row in rows})[:3]
    path = folder / "rerank.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as target:
        target.writelines(json.dumps(row) + "\n" for row in rows if str(row["qid"]) in qids)
    return path


def command(first_stage: Path, output: Path, *options: str) -> list[str]:
    return [str(first_stage), "--model", str(MODEL), "--depth", str(DEPTH), "--quiet", "--output", str(output),
            *options]


def test_ray_workers_write_the_run_written_without_ray(ray_cluster, first_stage, tmp_path):
    with one_thread():
        assert main(command(first_stage, tmp_path / "local.run")) == 0
    assert main(command(first_stage, tmp_path / "ray.run", "--ray-workers", "2")) == 0
    expected, got = read_run(tmp_path / "local.run"), read_run(tmp_path / "ray.run")
    assert len(got) == len(expected) == 300  # three lists of 100: the re-ranked top 8 and the tail
    assert got[["qid", "docno", "rank"]].equals(expected[["qid", "docno", "rank"]])
    check_scores(got["score"], expected["score"], config_depth(MODEL), what="rerank command on Ray")
    # nothing beside the run but its manifest: no shard folder, no temporary file
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["local.run", "local.run.manifest.json", "ray.run", "ray.run.manifest.json"])


def test_the_manifest_names_the_ray_settings(ray_cluster, first_stage, tmp_path):
    import json

    assert main(command(first_stage, tmp_path / "ray.run", "--ray-workers", "2")) == 0
    manifest = json.loads((tmp_path / "ray.run.manifest.json").read_text())
    assert manifest["settings"]["ray_workers"] == 2 and manifest["model"]["class"] == "RayReRanker"


@pytest.mark.parametrize("options,phrase", [
    (["--ray-workers", "0"], "--ray-workers: must be at least 1, got 0"),
    (["--ray-workers", "two"], "--ray-workers"),
    (["--ray-address", "auto"], "--ray-address needs --ray-workers N"),
], ids=["zero-workers", "not-a-number", "address-without-workers"])
def test_bad_ray_options_are_named(first_stage, tmp_path, capsys, options, phrase):
    output = tmp_path / "out.run"
    output.write_text("earlier\n")
    try:
        code = main(command(first_stage, output, *options))
    except SystemExit as exit:  # argparse's own error
        code = exit.code
    assert code == 2
    message = capsys.readouterr().err
    assert phrase in message and "Traceback" not in message, message
    assert output.read_text() == "earlier\n"


def no_cluster(monkeypatch) -> None:
    """``ray.init(address="auto")`` as Ray answers it where no cluster runs. (A real ``auto`` cannot be relied on to
    find nothing: it joins any Ray cluster running on the machine, found among its processes.)"""
    import ray

    if ray.is_initialized():
        ray.shutdown()

    def init(address=None, **options):
        assert address == "auto"
        raise ConnectionError("Could not find any running Ray instance. Please specify the one to connect to by "
                              "setting `--address` flag or `RAY_ADDRESS` environment variable.")

    monkeypatch.setattr(ray, "init", init)


def test_a_cluster_that_is_not_there_is_named(first_stage, tmp_path, capsys, monkeypatch):
    """``--ray-address auto`` with no running cluster: an error naming the option and its value, before the model
    loads, the earlier output kept."""
    no_cluster(monkeypatch)
    output = tmp_path / "out.run"
    output.write_text("earlier\n")
    assert main(command(first_stage, output, "--ray-workers", "2", "--ray-address", "auto")) == 2
    message = capsys.readouterr().err
    assert "--ray-address 'auto': no running Ray cluster was found" in message, message
    assert "Traceback" not in message
    assert output.read_text() == "earlier\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.run"]


def test_without_ray_the_error_names_the_extra(first_stage, tmp_path, capsys, monkeypatch):
    from pyterrier_setenc.ray_rerank import EXTRA

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.data", None)
    output = tmp_path / "out.run"
    assert main(command(first_stage, output, "--ray-workers", "2")) == 2
    message = capsys.readouterr().err
    assert EXTRA in message and "Traceback" not in message, message
    assert not output.exists()
