"""Every experiment of ``pipelines`` end to end from its command line, offline, with tiny random checkpoints on a few
queries: outputs exist and parse, figures that hold for any model hold, reruns are identical."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest

from pyterrier_setenc.io import read_run
from pyterrier_setenc.tolerance import score_tolerance

from agreement import config_depth
from builders import DATA, FIXTURES, REPO, SLICE, build_hf_cross_encoder, requires_data


@pytest.fixture(scope="module")
def setenc(set_encoder_path) -> Path:
    """The Set-Encoder test fixture if present, else a tiny random Set-Encoder in lightning-ir's layout."""
    fixture = FIXTURES / "setenc-int"
    return fixture if (fixture / "config.json").is_file() else set_encoder_path


@pytest.fixture(scope="module")
def mono(tmp_path_factory) -> Path:
    return build_hf_cross_encoder(tmp_path_factory.mktemp("mono") / "tiny-cross-encoder")


def common(tmp_path: Path, *models: Path, queries: int = 3, data: Path = DATA) -> list[str]:
    args = ["--data-dir", str(data), "--queries", str(queries), "--output", str(tmp_path / "out"), "--quiet",
            "--cache-dir", str(tmp_path / "cache")]
    for model in models:
        args += ["--model", str(model)]
    return args


def check_runs(folder: Path, expected: int) -> dict[str, pd.DataFrame]:
    runs = {path.relative_to(folder).as_posix(): read_run(path) for path in sorted(folder.rglob("*.run"))}
    assert len(runs) == expected, sorted(runs)
    for name, run in runs.items():
        assert len(run) > 0, name
        lines = (folder / name).read_text().splitlines()
        assert all(len(line.split()) == 6 and line.split()[1] == "Q0" for line in lines)
    assert not list(folder.parent.rglob("*.tmp")), "a temporary file was left behind"
    return runs


def check_png(path: Path) -> None:
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


@requires_data
def test_dl19_table1(tmp_path, setenc, mono, capsys):
    from pipelines.dl import main

    args = common(tmp_path, setenc, mono) + ["--depth", "20", "--reference-run", "rankgpt35-bm25-top100"]
    result = main("dl19", args)
    printed = capsys.readouterr().out
    assert "| bm25 |" in printed and "rankgpt35-bm25-top100" in printed
    out = tmp_path / "out"
    runs = check_runs(out / "runs", 4)
    names = [setenc.name, mono.name]
    for name in names:  # the models re-rank exactly the first stage's top 20; its ranks 20..99 follow in order
        run, first = runs[f"{name}.run"], runs["bm25.run"]
        assert (run.groupby("qid").size() == 100).all()
        top, reranked = first[first["rank"] < 20], run[run["rank"] < 20]
        assert set(zip(reranked["qid"], reranked["docno"])) == set(zip(top["qid"], top["docno"]))
        tail = run[run["rank"] >= 20].sort_values(["qid", "rank"])
        assert tail["docno"].tolist() == first[first["rank"] >= 20].sort_values(["qid", "rank"])["docno"].tolist()
        assert (out / "cache" / f"{name}.json").is_file()  # the model's own output, kept for a rerun
    assert json.loads((out / "manifest.json").read_text())["settings"]["depth"] == 20
    table = pd.read_csv(out / "results.csv")
    assert list(table["name"]) == ["bm25", *names, "rankgpt35-bm25-top100"]
    assert {"nDCG@10", "RR(rel=2)@10", "nDCG@100", "nDCG@10 p-value corrected"} <= set(table.columns)
    assert table["nDCG@10"].between(0, 1).all()
    assert (out / "results.md").read_text().count("\n|") >= 5
    assert result.table.shape[0] == 4


@requires_data
def test_dl20_accepts_a_stored_first_stage(tmp_path, mono):
    from pipelines.dl import main

    result = main("dl20", common(tmp_path, mono, queries=2) + ["--first-stage", "tasb", "--depth", "10",
                                                              "--correction", "bonferroni"])
    assert list(result.table["name"]) == ["tasb", mono.name]
    check_runs(tmp_path / "out" / "runs", 2)


def test_permutation(tmp_path, setenc, mono):
    from pipelines.permutation import main

    result = main(common(tmp_path, setenc, mono, data=SLICE) + ["--depth", "20", "--seeds", "0", "1"])
    out = tmp_path / "out"
    orderings = ["original", "shuffled-s0", "shuffled-s1", "ideal", "reverse-ideal"]
    runs = check_runs(out / "runs", 3 * len(orderings))
    table = pd.read_csv(out / "results.csv").set_index("name")
    assert list(table.columns) == orderings and list(table.index) == ["input order", setenc.name, mono.name]
    inputs = table.loc["input order"]
    assert inputs["ideal"] == inputs.max() and inputs["reverse-ideal"] == inputs.min()
    invariance = pd.read_csv(out / "invariance.csv")
    assert len(invariance) == 2 * (len(orderings) - 1)
    pointwise = invariance[invariance["model"] == mono.name]
    # a pointwise cross-encoder scores each pair alone, and the Set-Encoder's inter-passage attention has no
    # positions across passages: neither depends on the order, score changes are rounding only (batches and padding
    # differ between orders)
    for model in (setenc, mono):
        changes = invariance[invariance["model"] == model.name]["max abs score change"]
        scores = pd.concat([run["score"] for name, run in runs.items() if model.name in name])
        assert len(scores) and (changes <= score_tolerance(scores, config_depth(model))).all(), model.name
    assert (pointwise["Kendall tau"] > 0.99).all()
    for name in (setenc.name, mono.name):
        check_png(out / f"rank-change-{name}.png")
        matrix = pd.read_csv(out / f"rank-change-{name}.csv")
        assert set(matrix["ordering"]) == {"original", "shuffled", "ideal", "reverse-ideal"}
        sums = matrix.groupby(["ordering", "input_bin"])["proportion"].sum()
        assert sums.round(9).isin([0.0, 1.0]).all()
    check_png(out / "orderings.png")
    assert "invariance" in result.markdown()


def test_depth(tmp_path, setenc):
    from pipelines.depth import main

    result = main(common(tmp_path, setenc, queries=2, data=SLICE) + ["--depths", "10", "20"])
    out = tmp_path / "out"
    runs = check_runs(out / "runs", 3)
    bm25 = runs["bm25.run"]
    for k in (10, 20):  # the top k re-ranked, the first stage's list below it: always the whole 100
        run = runs[f"{setenc.name}@{k}.run"]
        assert (run.groupby("qid").size() == 100).all()
        top, reranked = bm25[bm25["rank"] < k], run[run["rank"] < k]
        assert set(zip(top["qid"], top["docno"])) == set(zip(reranked["qid"], reranked["docno"]))
        tail = run[run["rank"] >= k].sort_values(["qid", "rank"])
        assert tail["docno"].tolist() == bm25[bm25["rank"] >= k].sort_values(["qid", "rank"])["docno"].tolist()
    table = pd.read_csv(out / "results.csv")
    assert list(table.columns) == ["name", "k=10", "k=20"] and list(table["name"]) == ["bm25", setenc.name]
    assert table.loc[0, "k=10"] == table.loc[0, "k=20"]  # the first stage's row is the first stage itself
    check_png(out / "depth.png")
    assert result.table.shape == (2, 3)


@requires_data
def test_corpora(tmp_path, mono):
    from pipelines.corpora import main

    result = main(common(tmp_path, mono, queries=2) + ["--depth", "10"])
    out = tmp_path / "out"
    collections = ["vaswani", "cranfield", "nfcorpus", "noveleval", "dl19", "dl20"]
    check_runs(out / "runs", 2 * len(collections))
    table = pd.read_csv(out / "results.csv").set_index("name")
    assert list(table.columns) == collections + ["arithmetic mean", "geometric mean"]
    for _, row in table.iterrows():
        values = row[collections].astype(float)
        assert row["arithmetic mean"] == pytest.approx(values.mean())
        expected = 0.0 if (values == 0).any() else float(values.prod() ** (1 / len(values)))
        assert row["geometric mean"] == pytest.approx(expected)
    assert result.display.shape == (2, len(collections) + 3)


def test_reruns_are_identical(tmp_path, setenc):
    from pipelines import candidate_orders

    first = candidate_orders("dl19", [setenc], data_dir=SLICE, depth=10, seeds=(7,), queries=2, output=tmp_path / "a",
                        verbose=False)
    second = candidate_orders("dl19", [setenc], data_dir=SLICE, depth=10, seeds=(7,), queries=2, output=tmp_path / "b",
                         verbose=False)
    for path in sorted((tmp_path / "a").rglob("*.run")) + [tmp_path / "a" / "results.csv"]:
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes(), path
    pd.testing.assert_frame_equal(first.table, second.table)


@pytest.mark.parametrize("module", ["dl19", "dl20", "permutation", "depth", "corpora", "saliency"])
def test_help(module, capsys):
    from importlib import import_module

    main = import_module(f"pipelines.{module}").main if module not in ("dl19", "dl20") else \
        (lambda argv: import_module("pipelines.dl").main(module, argv))
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--model" in text and "--data-dir" in text and "--queries" in text


def test_module_entry_point_runs_without_warnings():
    done = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "pipelines.permutation", "--help"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: python -m pipelines.permutation" in done.stdout
