"""The benchmark's pieces: the FLOP count against a hand computation, and a worker run whose scores equal
in-process scores."""

import json
import subprocess
import sys

import torch

from benchmarks.flops import model_flops
from pyterrier_setenc import CrossEncoder

from conftest import FIXTURES, REPO


def test_flops_by_hand():
    config = {"hidden_size": 4, "intermediate_size": 8, "num_hidden_layers": 2}
    # per token and layer: 2 * (4*4*4 + 2*4*8) = 256; attention of a sequence of length L with p partners:
    # 4 * 4 * L * (L + p)
    assert model_flops(config, [3], listwise=False) == 2 * (3 * 256 + 16 * 3 * 3)
    assert model_flops(config, [3, 2], listwise=True) == 2 * (5 * 256 + 16 * 3 * 4 + 16 * 2 * 3)
    assert model_flops(config, [3, 2], listwise=False) == 2 * (5 * 256 + 16 * 3 * 3 + 16 * 2 * 2)


def test_interleaved_worker_scores_equal_in_process_scores(tmp_path, dl19):
    queries = dl19["query"].unique()[:2].tolist()
    lists = [dl19[dl19["query"] == q]["text"].tolist()[:30] for q in queries]
    (tmp_path / "lists.json").write_text(json.dumps({"queries": queries, "lists": lists}))
    subprocess.run([sys.executable, "-m", "benchmarks.worker", str(FIXTURES / "setenc-int"),
                    str(tmp_path / "lists.json"), str(tmp_path / "out.json"),
                    "--systems", "set-encoder,mono,set-encoder-int8", "--threads", "1"], cwd=REPO, check=True)
    report = json.loads((tmp_path / "out.json").read_text())
    model = CrossEncoder.from_pretrained(FIXTURES / "setenc-int")
    for system, listwise in (("set-encoder", True), ("mono", False)):
        model.listwise = listwise
        for query, docs, scores in zip(queries, lists, report["runs"][system]["scores"]):
            assert (torch.tensor(scores) - model.score_lists([query], [docs])[0]).abs().max() <= 1e-5, system
        assert len(report["runs"][system]["seconds"]) == 2
    assert report["runs"]["set-encoder-int8"]["scores"] != report["runs"]["set-encoder"]["scores"]
    assert report["peak_rss_gib"] > 0 and report["matmul_gflops"] > 0
