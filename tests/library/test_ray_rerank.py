"""Re-ranking through Ray Data (pyterrier_setenc.ray_rerank) on a local two-CPU cluster.

The golden values are the in-process re-rankers' own outputs on the same real DL19 lists (the slice in tests/data):
the Ray path must return the same frame, with the lists cut into many blocks by the reader. In one job a wrapper ends
its worker process on the first call (Ray must restart it and retry the call) and refuses any list that reaches it
in pieces."""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path

import pandas as pd
import pyterrier as pt
import pytest

from pyterrier_setenc import load_reranker
from pyterrier_setenc.io import read_rerank, read_run, write_run
from pyterrier_setenc.ray_rerank import EXTRA, RayReRanker, RayRunError, merge_shards

from agreement import check_scores, config_depth, depth
from builders import FIXTURES, one_thread

QUERIES = 4  # real 100-passage DL19 lists per test
BLOCKS = 37  # the reader cuts the 400 rows into blocks of 10 or 11 rows: every list lies in several blocks


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the loader below runs in the workers
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def lists(dl19) -> pd.DataFrame:
    qids = sorted(dl19["qid"].unique())[:QUERIES]
    frame = dl19[dl19["qid"].isin(qids)][["qid", "query", "docno", "text"]].reset_index(drop=True)
    assert frame.groupby("qid").size().eq(100).all()
    return frame


class DiesOnceChecksLists(pt.Transformer):
    """Wraps a re-ranker: the first call of all (the one that creates ``marker``) ends its worker process; every
    other call refuses a query whose list is not whole (``list_size`` rows), then scores with the re-ranker."""

    def __init__(self, reranker: pt.Transformer, marker: str, list_size: int):
        self.reranker, self.marker, self.list_size = reranker, marker, list_size

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            pass
        else:
            os._exit(1)
        sizes = inp.groupby("qid").size()
        if (sizes != self.list_size).any():
            raise ValueError(f"split lists reached a worker: {sizes[sizes != self.list_size].to_dict()}")
        return self.reranker.transform(inp)


def dies_once_loader(model, marker: str, list_size: int, **options) -> pt.Transformer:
    return DiesOnceChecksLists(load_reranker(model, **options), marker, list_size)


def in_process(path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    with one_thread():
        return load_reranker(path, verbose=False).transform(frame)


@pytest.mark.parametrize("fixture", ["mono", "listconranker"])
def test_frame_equals_the_in_process_reranker(ray_cluster, lists, fixture):
    path = FIXTURES / fixture
    expected = in_process(path, lists)
    got = RayReRanker(path, workers=2, blocks=BLOCKS, verbose=False).transform(lists)
    assert got.columns.tolist() == expected.columns.tolist()
    assert got[["qid", "docno", "rank"]].equals(expected[["qid", "docno", "rank"]])
    check_scores(got["score"], expected["score"], depth(load_reranker(path)), what=fixture)


def test_a_file_scored_on_ray_equals_the_in_process_run_though_a_worker_dies(ray_cluster, lists, tmp_path):
    path = FIXTURES / "setenc-int"
    source = tmp_path / "rerank.jsonl.gz"
    with gzip.open(source, "wt", encoding="utf-8") as file:
        for row in lists.to_dict("records"):
            file.write(json.dumps(row) + "\n")
    expected = in_process(path, lists)
    marker = tmp_path / "died"
    shard_dir = tmp_path / "out"
    scored = RayReRanker(path, workers=2, blocks=BLOCKS, partitions=3, loader=dies_once_loader, marker=str(marker),
                         list_size=100, shard_dir=shard_dir, verbose=False)(read_rerank(source))
    assert marker.exists()  # one worker process did end on its first call, and its call was retried
    run = write_run(tmp_path / "run.txt", scored, "setenc-int")
    got = read_run(run)  # refuses a docno twice in a query's ranking
    assert len(got) == len(lists)
    assert set(zip(got["qid"], got["docno"])) == set(zip(lists["qid"], lists["docno"]))
    joined = expected.merge(got, on=["qid", "docno"], suffixes=("", "_ray"), validate="one_to_one")
    check_scores(joined["score_ray"], joined["score"], config_depth(path), what="ray run from a file")
    assert not list(shard_dir.glob(".*"))  # no shard folder left


def shards(folder: Path, *runs: list[tuple[str, str, float]]) -> Path:
    for number, rows in enumerate(runs):
        write_run(folder / f"shard-{number}.txt", pd.DataFrame(rows, columns=["qid", "docno", "score"]), "shard")
    return folder


def test_merge_refuses_anything_but_each_pair_once(tmp_path):
    expected = pd.DataFrame({"qid": ["1", "1", "2"], "docno": ["a", "b", "c"]})
    good = shards(tmp_path / "good", [("1", "a", 0.5), ("1", "b", 0.25)], [("2", "c", 1.0)])
    assert merge_shards(good, expected).sort_values("docno")["score"].tolist() == [0.5, 0.25, 1.0]
    cases = {
        "missing": ([("1", "a", 0.5), ("1", "b", 0.25)], [], "1 of 3 candidates of 1 queries have no score"),
        "twice": ([("1", "a", 0.5), ("1", "b", 0.25)], [("2", "c", 1.0), ("1", "a", 0.5)], "scored in 2 pieces"),
        "extra": ([("1", "a", 0.5), ("1", "b", 0.25), ("1", "z", 0.1)], [("2", "c", 1.0)], "not in the input"),
    }
    for name, (first, second, message) in cases.items():
        folder = shards(tmp_path / name, first, second) if second else shards(tmp_path / name, first)
        with pytest.raises(RayRunError, match=message):
            merge_shards(folder, expected)


def test_int8_actors_take_no_gpu():
    """int8 runs on the CPU only: on a cluster with GPUs its actors must not reserve one (the
    re-ranker would refuse to start on it), and asking for GPUs with int8 is refused at once."""
    gpus = {"CPU": 8.0, "GPU": 2.0}
    assert RayReRanker(FIXTURES / "mono", workers=2).default_gpus(gpus) == 1.0
    assert RayReRanker(FIXTURES / "mono", workers=2).default_gpus({"CPU": 8.0}) == 0.0
    assert RayReRanker(FIXTURES / "mono", workers=2, int8=True).default_gpus(gpus) == 0.0
    assert RayReRanker(FIXTURES / "mono", workers=2, device="cpu").default_gpus(gpus) == 0.0
    with pytest.raises(ValueError, match="int8=True runs on the CPU only.*num_gpus=1"):
        RayReRanker(FIXTURES / "mono", workers=2, num_gpus=1, int8=True)


def test_without_ray_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(ModuleNotFoundError) as error:
        RayReRanker(FIXTURES / "mono", workers=2)
    # the package is not on PyPI: the message says how to add the extra to a clone, not a PyPI install
    assert EXTRA in str(error.value) and 'pip install -e ".[ray]"' in EXTRA and "pyterrier-setenc[" not in EXTRA


def test_tirex_entry_point_with_ray_workers_writes_the_in_process_run(ray_cluster, tmp_path):
    from pyterrier_setenc.tirex import main

    from builders import SLICE

    source, model = SLICE / "tirex-sample", str(FIXTURES / "setenc-int")
    with one_thread():
        assert main(["--input", str(source), "--output", str(tmp_path / "local"), "--model", model]) == 0
    assert main(["--input", str(source), "--output", str(tmp_path / "ray"), "--model", model,
                 "--ray-workers", "2"]) == 0
    expected, got = read_run(tmp_path / "local" / "run.txt"), read_run(tmp_path / "ray" / "run.txt")
    assert got[["qid", "docno", "rank"]].equals(expected[["qid", "docno", "rank"]])
    # the entry point batches the lists its own way on each side (which lists share a bucket), so float32 sums run
    # in another order: float32's tolerance, not bit equality
    check_scores(got["score"], expected["score"], config_depth(model), what="TIREx on Ray")
    assert sorted(path.name for path in (tmp_path / "ray").iterdir()) == ["ir-metadata.yml", "run.txt"]


def test_tirex_entry_point_without_ray_names_the_extra(monkeypatch, tmp_path, capsys):
    from pyterrier_setenc.tirex import main

    from builders import SLICE

    monkeypatch.setitem(sys.modules, "ray", None)
    code = main(["--input", str(SLICE / "tirex-sample"), "--output", str(tmp_path), "--model",
                 str(FIXTURES / "setenc-int"), "--ray-workers", "2"])
    assert code == 1 and EXTRA in capsys.readouterr().err
    assert not (tmp_path / "run.txt").exists()


def test_a_bad_row_raises_the_re_rankers_own_error(ray_cluster, lists):
    bad = lists[lists["qid"] == lists["qid"].iloc[0]].reset_index(drop=True)
    bad.loc[5, "query"] = "   "
    with pytest.raises(ValueError) as in_process_error:
        load_reranker(FIXTURES / "mono", verbose=False).transform(bad)
    with pytest.raises(ValueError) as ray_error:
        RayReRanker(FIXTURES / "mono", workers=2, verbose=False).transform(bad)
    assert str(ray_error.value) == str(in_process_error.value) and "query" in str(ray_error.value)


def test_pipelines_options_score_the_checkpoints_on_ray():
    from pipelines.common import ExperimentOptions, base_parser
    from pipelines.models import resolve_models

    args = base_parser("pipelines", "test", "out").parse_args(
        ["--model", f"small={FIXTURES / 'mono'}", "--ray-workers", "3", "--ray-address", "auto", "--quiet"])
    [model] = resolve_models(args.model, ExperimentOptions.from_args(args))
    assert model.name == "small" and isinstance(model.transformer, RayReRanker)
    assert (model.transformer.workers, model.transformer.address) == (3, "auto")
    assert model.transformer.model == str(FIXTURES / "mono")


def test_tirex_entry_point_names_a_cluster_that_is_not_there(tmp_path, capsys, monkeypatch):
    """``--ray-address auto`` without a running cluster (Ray's own answer) ends before the model
    loads, naming the option; the earlier run.txt stays as it was and no metadata is written."""
    import ray

    from pyterrier_setenc.tirex import main

    from builders import SLICE

    if ray.is_initialized():
        ray.shutdown()

    def init(address=None, **options):  # what Ray raises where no cluster runs ("auto" joins any found on the machine)
        assert address == "auto"
        raise ConnectionError("Could not find any running Ray instance. Please specify the one to connect to by "
                              "setting `--address` flag or `RAY_ADDRESS` environment variable.")

    monkeypatch.setattr(ray, "init", init)
    (tmp_path / "run.txt").write_text("1 Q0 d 1 1.0 earlier\n")
    code = main(["--input", str(SLICE / "tirex-sample"), "--output", str(tmp_path), "--model",
                 str(FIXTURES / "setenc-int"), "--ray-workers", "2", "--ray-address", "auto"])
    message = capsys.readouterr().err
    assert code == 1 and "--ray-address 'auto': no running Ray cluster was found" in message, message
    assert "Traceback" not in message
    assert os.listdir(tmp_path) == ["run.txt"] and (tmp_path / "run.txt").read_text() == "1 Q0 d 1 1.0 earlier\n"
