"""The experiments' command lines as a newcomer meets them: ``--help`` answers without loading torch, says what no
``--model`` gives and shows each default once; arguments and inputs are checked before any model loads; errors
name the way out; a rerun reuses every row's stored outputs and says so."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from builders import FIXTURES, REPO, SLICE

COMMANDS = ["dl19", "dl20", "depth", "permutation", "corpora"]
HEAVY = ("torch", "transformers", "pyterrier")  # top-level packages --help must not import


@pytest.mark.parametrize("command", [*COMMANDS, "saliency"])
def test_help_imports_neither_torch_nor_transformers_nor_pyterrier(command):
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", f"pipelines.{command}", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"usage: python -m pipelines.{command}" in done.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")}
    assert imported, "python -X importtime printed nothing"
    heavy = sorted(name for name in imported if name.split(".")[0] in HEAVY)
    assert not heavy, heavy


def option_helps(text: str) -> dict[str, str]:
    """The help of each option of an argparse help text, joined into one line."""
    blocks: dict[str, str] = {}
    current = None
    for line in text.split("options:", 1)[1].splitlines():
        match = re.match(r"  (-\S+)", line)
        if match:
            current = match.group(1).rstrip(",")
            blocks[current] = line
        elif current is not None:
            blocks[current] += " " + line.strip()
    return {option: " ".join(block.split()) for option, block in blocks.items()}


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_each_default_once_and_what_no_model_gives(command):
    from pipelines.cli import command_line

    helps = option_helps(command_line(command).format_help())
    assert {"--model", "--data-dir", "--queries", "--dtype", "--seed"} <= set(helps)
    for option, text in helps.items():
        assert "(default: [])" not in text and "(default: None)" not in text, (option, text)
        assert text.count("default") <= 1, (option, text)
    assert "no --model" in helps["--model"] and "three rows" in helps["--model"]
    assert "(default: 0)" in helps["--seed"]  # a default of 0 is a default


def test_parsers_name_what_the_experiments_use():
    """pipelines.cli repeats a few names so that building a parser imports nothing heavy; they must agree."""
    from pipelines import cli, collection, common, orderings

    assert (cli.DATA_DIR_ENV, cli.CACHE_DIR_ENV) == (collection.DATA_DIR_ENV, collection.CACHE_DIR_ENV)
    assert cli.UNJUDGED == orderings.UNJUDGED and common.CORRECTIONS is cli.CORRECTIONS


def test_notebook_functions_are_not_shadowed_by_their_modules():
    """``from pipelines import NAME`` gives the notebook function whether or not the experiment's module was imported
    before (``python -m pipelines.NAME``, a test): a function named like a module of the package would be replaced by
    the module once that is imported. The modules are listed from the folder, not from the package's code."""
    import pipelines

    modules = {path.stem for path in Path(pipelines.__file__).parent.glob("*.py")}
    assert not modules & set(pipelines.EXPORTS), "rename these functions"
    for name in ("table1", "depth_sweep", "candidate_orders", "corpora_table", "saliency_by_layer"):
        assert callable(getattr(pipelines, name)) and not isinstance(getattr(pipelines, name), type(pipelines)), name
    importlib.import_module("pipelines.permutation")
    importlib.import_module("pipelines.corpora")
    from pipelines import candidate_orders, corpora_table

    assert candidate_orders.__module__ == "pipelines.permutation" and corpora_table.__module__ == "pipelines.corpora"


@pytest.fixture
def no_model_loads(monkeypatch):
    """Loading any checkpoint or the teacher's weights fails the test."""
    from pyterrier_setenc.settings import RerankerSettings
    from training import teacher

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(RerankerSettings, "load", refuse)
    monkeypatch.setattr(teacher.BiEncoderTeacher, "__init__", refuse)


def run_main(command: str, argv: list[str]):
    from importlib import import_module

    if command in ("dl19", "dl20"):
        return import_module("pipelines.dl").main(command, argv)
    return import_module(f"pipelines.{command}").main(argv)


@pytest.mark.parametrize(("argv", "message"), [
    (["--data-dir", "{tmp}/missing"], "data folder .*missing.* does not exist"),
    (["--data-dir", str(SLICE), "--output", "{tmp}/file"], "is a file, not a folder"),
    (["--data-dir", str(SLICE), "--int8", "--dtype", "bfloat16"], "--int8 .* cannot go with --dtype bfloat16"),
    (["--data-dir", str(SLICE), "--model", "{tmp}/no/such/model"], "no such folder: .*no/such/model"),
    (["--data-dir", str(SLICE), "--model", "./checkpoints/mine"], "no such folder: .*checkpoints/mine"),
], ids=["data-dir", "output", "settings", "absolute-model", "relative-model"])
def test_bad_arguments_end_with_their_message_before_any_model_loads(tmp_path, capsys, no_model_loads, argv,
                                                                     message):
    (tmp_path / "file").write_text("not a folder")
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv] + ["--quiet", "--queries", "1"]
    if "--output" not in argv:
        argv += ["--output", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        run_main("dl19", argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert re.search(message, error), error
    assert "Repo id must be in the form" not in error and "Traceback" not in error


def test_without_a_data_folder_a_failed_download_says_to_pass_data_dir(tmp_path, monkeypatch, capsys,
                                                                       no_model_loads):
    """No --data-dir and no $SETENC_DATA_DIR: the online path (ir_datasets); when it fails, as without internet,
    one message with the way out instead of ir_datasets' traceback."""
    import pipelines.data

    def offline(*args, **kwargs):  # what ir_datasets raises without network
        raise RuntimeError("All download sources failed")

    monkeypatch.delenv("SETENC_DATA_DIR", raising=False)
    monkeypatch.setattr(pipelines.data, "load_online", offline)
    with pytest.raises(SystemExit) as exit_info:
        run_main("dl19", ["--output", str(tmp_path / "out"), "--quiet", "--cache-dir", str(tmp_path / "cache")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "pass --data-dir" in error.lower() and "$SETENC_DATA_DIR" in error and "All download sources failed" in error
    assert len(error.strip().splitlines()) == 1, error


def test_a_rerun_reuses_every_row_and_says_so(tmp_path, capsys):
    """The default rows (the shipped models and the teacher) on one query: the second run computes nothing."""
    argv = ["--data-dir", str(SLICE), "--queries", "1", "--depth", "10", "--seeds", "0", "--quiet",
            "--output", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    first = run_main("permutation", argv)
    printed = capsys.readouterr()
    rows = list(first.table["name"])[1:]  # below the input order: the models
    assert "teacher-minilm" in rows and len(rows) == 3
    assert "reused" not in printed.err
    files = [path for path in (tmp_path / "out").rglob("*") if path.is_file()]
    assert f"wrote {len(files)} files to {tmp_path / 'out'}" in printed.out

    from training import teacher

    def refuse(*args, **kwargs):
        raise AssertionError("the teacher was loaded although its outputs were stored")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(teacher.BiEncoderTeacher, "__init__", refuse)
        second = run_main("permutation", argv)
    err = capsys.readouterr().err
    orderings = len(first.table.columns) - 1  # original, shuffled-s0, ideal, reverse-ideal
    for row in rows:
        assert f"reused {orderings} of {orderings} stored outputs of {row} " in err, err
    assert first.table.equals(second.table)


def test_the_teacher_row_has_an_identity_without_loading_its_weights():
    from pipelines.models import TEACHER_ROW, default_models, resolve_models

    (teacher,) = [model for model in resolve_models({TEACHER_ROW: default_models(verbose=False)[TEACHER_ROW]})]
    assert teacher.identity is not None and teacher.identity["class"] == "TeacherReRanker"
    assert teacher.transformer._teacher is None  # not loaded yet


def test_a_mono_checkpoint_in_the_set_encoder_class_is_said_to_score_pointwise():
    from pyterrier_setenc import MonoReRanker, PointwiseCheckpointWarning, SetEncoderReRanker

    with pytest.warns(PointwiseCheckpointWarning, match="mono checkpoint.*pointwise.*MonoReRanker"):
        assert SetEncoderReRanker(FIXTURES / "mono", verbose=False).listwise is False
    with warnings.catch_warnings():
        warnings.simplefilter("error", PointwiseCheckpointWarning)
        SetEncoderReRanker(FIXTURES / "setenc-int", verbose=False)
        MonoReRanker(FIXTURES / "mono", verbose=False)


def test_a_missing_text_column_is_named_with_the_fix_and_nothing_else():
    import pandas as pd

    from pyterrier_setenc import MonoReRanker
    from pyterrier_setenc.reranker import InputColumnsError

    frame = pd.DataFrame({"qid": ["1"], "query": ["q"], "docno": ["d1"], "score": [1.0], "rank": [0]})
    with pytest.raises(InputColumnsError) as error:
        MonoReRanker(FIXTURES / "mono", verbose=False)(frame)
    message = str(error.value)
    assert "['text']" in message and "pt.text.get_text" in message
    assert "TransformerMode" not in message and message.endswith(".")


def test_significance_comes_with_the_number_of_queries_an_interval_and_a_caution(tmp_path):
    """Table 1 on 3 queries: the paired differences against BM25 with their confidence interval (recomputed here
    with scipy from ir_measures' per-query values), and a caution about so few queries."""
    import ir_measures
    import numpy as np
    from ir_measures import nDCG
    from scipy import stats

    from pipelines.dl import table1

    result = table1("dl19", [FIXTURES / "mono"], data_dir=SLICE, queries=3, output=tmp_path / "out", verbose=False)
    (paired,) = result.tables.values()
    row = paired.set_index("name").loc["mono"]
    assert row["queries"] == 3
    from pipelines.data import load_benchmark

    bench = load_benchmark("dl19", data_dir=SLICE, queries=3)
    judged = bench.qrels.rename(columns={"qid": "query_id", "docno": "doc_id", "label": "relevance"})

    def per_query(run):
        frame = run.rename(columns={"qid": "query_id", "docno": "doc_id"})
        return {m.query_id: m.value for m in ir_measures.iter_calc([nDCG @ 10], judged, frame)}

    base, model = per_query(result.runs["bm25"]), per_query(result.runs["mono"])
    diff = np.array([model[q] - base[q] for q in sorted(base)])
    low, high = stats.t.interval(0.95, len(diff) - 1, loc=diff.mean(), scale=stats.sem(diff))
    assert row["mean difference"] == pytest.approx(diff.mean(), abs=1e-12)
    assert (row["95% CI low"], row["95% CI high"]) == pytest.approx((low, high), abs=1e-9)
    assert row["d_z"] == pytest.approx(diff.mean() / diff.std(ddof=1), abs=1e-9)
    text = result.markdown()
    assert "Caution: 3 queries" in text and "95% CI low" in text
    assert "Caution: 3 queries" in (tmp_path / "out" / "differences.md").read_text()
