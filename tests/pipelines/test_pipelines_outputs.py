"""The experiments tell the truth and lose nothing: the first stage's tail below the re-ranked top k, row names
(``--model NAME=PATH``), no dagger for an undefined p-value, numerics options, ListConRanker in every command, output
folders that always hold one complete result (also when a run crashes or is killed), stored model outputs reused by
a rerun, and bad data files or options reported with the file, line or option."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyterrier as pt
import pytest
from ir_measures import nDCG

from pipelines import output as output_module
from pipelines.common import with_tail
from pipelines.data import DataFormatError, load_benchmark
from pipelines.dl import table1
from pipelines.evaluation import aggregate, compact, experiment
from pipelines.models import resolve_models
from pipelines.output import OutputError, verify_result
from pyterrier_setenc import io as io_module
from pyterrier_setenc.settings import RerankerSettings

from builders import FIXTURES, REPO, SLICE
from filesystem import CODES

QUIET = RerankerSettings(verbose=False)
SETENC = FIXTURES / "setenc-int"
MONO = FIXTURES / "mono"
LISTCON = FIXTURES / "listconranker"



class FirstStageOrder(pt.Transformer):
    """A re-ranker that keeps the first stage's order (score = -rank)."""

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        return pt.model.add_ranks(inp.assign(score=-inp["rank"].astype(float)))


# --- the first stage's tail ------------------------------------------------------------------------------------------

def test_tail_follows_the_reranked_top_k_by_hand():
    first = pd.DataFrame({"qid": ["1"] * 5 + ["2"] * 2, "docno": ["d1", "d2", "d3", "d4", "d5", "e1", "e2"],
                          "score": [5.0, 4.0, 3.0, 2.0, 1.0, 2.0, 1.0], "rank": [0, 1, 2, 3, 4, 0, 1]})
    # the model re-ranked the top 3 of q1 (reversing them) and both candidates of q2
    reranked = pd.DataFrame({"qid": ["1"] * 3 + ["2"] * 2, "docno": ["d3", "d2", "d1", "e2", "e1"],
                             "score": [0.9, 0.5, 0.1, 7.0, 6.0], "rank": [0, 1, 2, 0, 1]})
    out = with_tail(reranked, first).sort_values(["qid", "rank"])
    q1 = out[out["qid"] == "1"]
    assert q1["docno"].tolist() == ["d3", "d2", "d1", "d4", "d5"] and q1["rank"].tolist() == [0, 1, 2, 3, 4]
    # PyTerrier's concatenation: the tail's scores are shifted to start just below the last re-ranked score (0.1):
    # d4: 2.0 - 2.0 + 0.1 - 0.0001, d5: 1.0 - 2.0 + 0.1 - 0.0001
    assert q1["score"].tolist()[3:] == pytest.approx([0.0999, -0.9001])
    assert out[out["qid"] == "2"]["docno"].tolist() == ["e2", "e1"]
    # nothing below the re-ranked candidates: the re-ranked frame itself
    assert with_tail(first, first) is first


def test_table1_below_depth_compares_like_with_like(tmp_path):
    result = table1("dl19", {"same order": FirstStageOrder()}, data_dir=SLICE, depth=20, queries=5, output=None,
                    verbose=False)
    run, first = result.runs["same order"], result.runs["bm25"]
    assert (run.groupby("qid").size() == 100).all()  # the top 20, then the first stage's ranks 20..99
    ordered = run.sort_values(["qid", "rank"])
    assert ordered["docno"].tolist() == first.sort_values(["qid", "rank"])["docno"].tolist()
    # a re-ranker that keeps the order has the first stage's figures, deep measures included (up to how tied BM25
    # scores are ordered: by docno in trec_eval, by rank here), and no dagger; cut to its top 20 it would lose most of
    # its nDCG@100 (the spurious significance this avoids)
    rows = result.table.set_index("name")
    assert rows.loc["same order", "nDCG@100"] == pytest.approx(rows.loc["bm25", "nDCG@100"], abs=2e-3)
    cut = aggregate(run[run["rank"] < 20], load_benchmark("dl19", SLICE, queries=5).qrels, nDCG @ 100)
    assert cut < rows.loc["bm25", "nDCG@100"] - 0.1
    assert "\u2020" not in "".join(result.display.astype(str).to_numpy().ravel())


def test_no_dagger_where_the_p_value_is_undefined():
    topics = pd.DataFrame({"qid": ["1"], "query": ["a"]})
    qrels = pd.DataFrame({"qid": ["1", "1"], "docno": ["a", "b"], "label": [1, 0]})
    good = pd.DataFrame({"qid": ["1", "1"], "docno": ["a", "b"], "score": [2.0, 1.0], "rank": [0, 1]})
    bad = good.assign(score=[1.0, 2.0], rank=[1, 0])
    # pyterrier itself marks the one-query difference as rejected although its p-value is NaN
    raw = pt.Experiment([good, bad], topics, qrels, [nDCG @ 10], baseline=0, correction="holm", names=["a", "b"])
    assert bool(raw.loc[1, "nDCG@10 reject"]) and pd.isna(raw.loc[1, "nDCG@10 p-value corrected"])
    table = experiment({"a": good, "b": bad}, topics, qrels, [nDCG @ 10], baseline=0)
    assert not table.loc[1, "nDCG@10 reject"]
    assert compact(table, [nDCG @ 10])["nDCG@10"].tolist() == ["1.0000", "0.6309"]  # 1/log2(3), no dagger


# --- row names and numerics -----------------------------------------------------------------------------------------

def test_models_named_on_the_command_line_or_after_the_checkpoint(tmp_path):
    for parent in ("set-encoder-run", "mono-run"):
        shutil.copytree(SETENC, tmp_path / parent / "model")
    models = resolve_models([f"ours={SETENC}", tmp_path / "set-encoder-run" / "model",
                             str(tmp_path / "mono-run" / "model"), str(MONO)], QUIET)
    assert [m.name for m in models] == ["ours", "set-encoder-run/model", "mono-run/model", "mono"]
    assert models[0].identity["checkpoint"] == str(SETENC.resolve())
    with pytest.raises(ValueError, match=r"same row name 'setenc-int'.*--model NAME=PATH"):
        resolve_models([SETENC, SETENC], QUIET)
    with pytest.raises(ValueError, match="'bm25'"):
        resolve_models([f"bm25={SETENC}"], QUIET, reserved=["bm25"])
    with pytest.raises(ValueError, match="non-empty name"):
        resolve_models([f"={SETENC}"], QUIET)


def test_dtype_and_int8_reach_the_rerankers():
    import torch

    from pyterrier_setenc._engine.numerics import Int8Linear

    bf16 = resolve_models([SETENC], RerankerSettings(dtype="bfloat16", verbose=False))[0]
    int8 = resolve_models([MONO], RerankerSettings(int8=True, verbose=False))[0]
    assert bf16.transformer.dtype == torch.bfloat16 and bf16.identity["dtype"] == "bfloat16"
    quantized = [m for m in int8.transformer.module.modules() if isinstance(m, Int8Linear)]
    assert quantized and int8.identity["int8"] is True
    with pytest.raises(ValueError, match="--int8 quantizes cross-encoders only.*ListConRanker"):
        resolve_models([LISTCON], RerankerSettings(int8=True, verbose=False))
    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16, float16, auto"):
        RerankerSettings(dtype="half")


@pytest.mark.parametrize("instructions,expected", [(True, "bfloat16"), (False, "float32")])
def test_dtype_auto_is_stored_as_what_ran(monkeypatch, instructions, expected):
    """``--dtype auto`` runs this machine's choice, and the identity of stored outputs names that type, so that
    outputs of another machine's choice are not reused."""
    import pyterrier_setenc._engine.precision as precision

    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda: instructions)
    model = resolve_models([SETENC], RerankerSettings(dtype="auto", device="cpu", verbose=False))[0]
    assert model.identity["dtype"] == expected and str(model.transformer.dtype) == f"torch.{expected}"


# --- ListConRanker in every command ----------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["dl19", "depth", "permutation"])
def test_listconranker_runs_in_every_command_without_extra_flags(command, tmp_path):
    from importlib import import_module

    args = ["--data-dir", str(SLICE), "--model", str(LISTCON), "--queries", "2", "--output", str(tmp_path / "out"),
            "--quiet"]
    if command == "dl19":
        result = import_module("pipelines.dl").main("dl19", args + ["--depth", "10"])
    elif command == "depth":
        result = import_module("pipelines.depth").main(args + ["--depths", "10"])
    else:
        result = import_module("pipelines.permutation").main(args + ["--depth", "10", "--seeds", "0"])
    assert "listconranker" in result.table["name"].tolist()
    verify_result(tmp_path / "out")


# --- output folders -------------------------------------------------------------------------------------------------

@pytest.fixture
def calls(monkeypatch):
    """Counts the queries each re-ranker class scores (to see what a rerun reuses)."""
    from pyterrier_setenc import MonoReRanker, SetEncoderReRanker

    counts = {"SetEncoderReRanker": 0, "MonoReRanker": 0}
    for cls in (SetEncoderReRanker, MonoReRanker):
        original = cls.transform

        def counted(self, inp, original=original, name=cls.__name__):
            counts[name] += inp["qid"].nunique()
            return original(self, inp)

        monkeypatch.setattr(cls, "transform", counted)
    return counts


def small_table1(folder: Path, models, **kwargs):
    settings = dict(data_dir=SLICE, queries=2, depth=10, output=folder, verbose=False)
    return table1("dl19", models, **{**settings, **kwargs})


def test_each_model_is_stored_when_done_and_reused_after_a_crash(tmp_path, calls, monkeypatch):
    from pyterrier_setenc import MonoReRanker

    out = tmp_path / "out"
    first = small_table1(out, [SETENC])
    earlier = verify_result(out)
    assert calls == {"SetEncoderReRanker": 2, "MonoReRanker": 0}

    def crash(self, inp):
        raise RuntimeError("the second model crashed")

    original = MonoReRanker.transform
    monkeypatch.setattr(MonoReRanker, "transform", crash)
    with pytest.raises(RuntimeError, match="crashed"):
        small_table1(out, [SETENC, MONO], queries=3)
    assert verify_result(out) == earlier  # the earlier result is untouched
    stored = tmp_path / ".out.partial" / "cache" / "setenc-int.run"
    assert stored.is_file() and calls["SetEncoderReRanker"] == 5  # 3 new queries scored and stored before the crash

    monkeypatch.setattr(MonoReRanker, "transform", original)
    again = small_table1(out, [SETENC, MONO], queries=3)
    assert calls["SetEncoderReRanker"] == 5, "the stored output of the first model was not reused"
    assert not (tmp_path / ".out.partial").exists()
    manifest = verify_result(out)
    assert sorted(manifest["settings"]["models"]) == ["mono", "setenc-int"] and manifest["settings"]["queries"] == 3
    # a rerun with the same settings reuses everything and gives the same result
    small_table1(out, [SETENC, MONO], queries=3)
    assert calls == {"SetEncoderReRanker": 5, "MonoReRanker": 3}
    pd.testing.assert_frame_equal(small_table1(None, [SETENC, MONO], queries=3).table, again.table)  # computed
    assert calls == {"SetEncoderReRanker": 8, "MonoReRanker": 6}
    # other settings (the batch size is part of the key) compute again
    small_table1(out, [SETENC], batch_size=7)
    assert calls["SetEncoderReRanker"] == 10
    assert first.table.shape[0] == 2


def test_the_folder_holds_the_earlier_or_the_new_result_whatever_write_fails(tmp_path, monkeypatch):
    from pyterrier_setenc import load_reranker

    # loaded once; given as objects their outputs are stored (without a key) but never reused, so every call makes
    # the same writes
    setenc, mono = load_reranker(str(SETENC), verbose=False), load_reranker(str(MONO), verbose=False)
    out = tmp_path / "out"
    small_table1(out, {"a": setenc, "b": mono, "c": setenc})
    earlier = verify_result(out)
    quick = dict(queries=1, depth=5, correction=None)
    real = output_module.atomic_write
    count = {"writes": 0}

    def counting(*args, **kwargs):
        count["writes"] += 1
        return real(*args, **kwargs)

    def patch(write) -> None:  # the result folder's own files, and the runs written by pyterrier_setenc.io
        monkeypatch.setattr(output_module, "atomic_write", write)
        monkeypatch.setattr(io_module, "atomic_write", write)

    patch(counting)
    small_table1(tmp_path / "probe", {"a": setenc}, **quick)
    writes = count["writes"]
    assert writes == 10  # probe, the stored output and its key, two runs, two tables, the differences, the manifest

    for failing in range(1, writes + 1):
        count["writes"] = 0

        def failing_write(*args, failing=failing, **kwargs):
            count["writes"] += 1
            if count["writes"] == failing:
                raise OSError(28, "No space left on device")
            return real(*args, **kwargs)

        patch(failing_write)
        with pytest.raises((OSError, OutputError)):
            small_table1(out, {"a": setenc}, **quick)
        assert verify_result(out) == earlier, f"write {failing} failed and the earlier result changed"
    patch(real)
    small_table1(out, {"a": setenc}, **quick)
    manifest = verify_result(out)
    # the runs of b and c of the earlier call are gone with it: nothing stale beside the new table
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["a.run", "bm25.run"]
    assert manifest["settings"]["queries"] == 1


def test_leftover_temporary_files_are_removed_at_the_next_write(tmp_path):
    out = tmp_path / "out"
    staging = tmp_path / ".out.partial"
    (staging / "runs").mkdir(parents=True)
    (staging / "runs" / ".a.run.k1llq3d.tmp").write_text("half a run")  # what a killed atomic write leaves
    (staging / ".results.md.x8.tmp").write_text("half a table")
    small_table1(out, [SETENC])
    verify_result(out)
    assert not list(tmp_path.rglob("*.tmp")) and not staging.exists()


def test_output_folder_is_checked_before_any_work(tmp_path, monkeypatch):
    from pipelines.dl import main

    def no_work(*args, **kwargs):
        raise AssertionError("the experiment started before the output folder was checked")

    monkeypatch.setattr("pipelines.common.load_benchmark", no_work)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("mine")
    with pytest.raises(OutputError, match="cannot be written"):
        table1("dl19", [], data_dir=SLICE, output=blocker / "out")
    with pytest.raises(OutputError, match="is a file"):
        table1("dl19", [], data_dir=SLICE, output=blocker)
    with pytest.raises(OutputError, match="not an experiment's result"):
        table1("dl19", [], data_dir=SLICE, output=foreign)
    assert [p.name for p in foreign.iterdir()] == ["thesis.tex"]
    with pytest.raises(SystemExit) as exit_info:
        main("dl19", ["--data-dir", str(SLICE), "--output", str(blocker / "out"), "--quiet"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("point", ["cache/setenc-int.json", "results.csv"],
                         ids=["after-the-first-model", "while-the-result-is-written"])
def test_sigkill_keeps_the_earlier_or_the_new_result_and_the_finished_models(point, tmp_path, calls):
    out = tmp_path / "out"
    small_table1(out, [], queries=3)
    earlier = verify_result(out)
    command = [sys.executable, "-m", "pipelines.dl19", "--data-dir", str(SLICE), "--queries", "3", "--depth", "10",
               "--quiet", "--output", str(out), "--model", str(SETENC), "--model", str(MONO)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watched = tmp_path / ".out.partial" / point
    deadline = time.monotonic() + 240
    while not watched.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    result = verify_result(out)  # raises unless the folder is one complete result
    if point.startswith("cache"):
        assert watched.is_file(), "the run ended or timed out before the first model was stored"
        assert result == earlier
    else:  # killed just before or after the swap: the earlier result, or the new one, complete
        assert result == earlier or sorted(result["settings"]["models"]) == ["mono", "setenc-int"]
    small_table1(out, [SETENC, MONO], queries=3)
    assert calls["SetEncoderReRanker"] == 0, "the model finished before the kill was computed again"
    if not point.startswith("cache"):
        assert calls["MonoReRanker"] == 0
    assert sorted(verify_result(out)["settings"]["models"]) == ["mono", "setenc-int"]


# --- bad data files and options -------------------------------------------------------------------------------------

def data_copy(tmp_path: Path, files: dict[str, bytes | None]) -> Path:
    """A copy of the DL19 folder in which ``files`` (name -> content; None: as it is) replace the originals."""
    target = tmp_path / "data" / "trec-dl-2019"
    target.mkdir(parents=True)
    for name in ("topics.tsv", "qrels.txt", "bm25-top100.rerank.jsonl.gz"):
        shutil.copy(SLICE / "trec-dl-2019" / name, target / name)
    for name, content in files.items():
        if content is not None:
            (target / name).write_bytes(content)
    return tmp_path / "data"


def gz_lines(lines: list[str]) -> bytes:
    return gzip.compress("".join(line + "\n" for line in lines).encode())


def rerank_lines() -> list[str]:
    with gzip.open(SLICE / "trec-dl-2019" / "bm25-top100.rerank.jsonl.gz", "rt", encoding="utf-8") as file:
        return [line.rstrip("\n") for line in file][:30]


def corrupted(kind: str) -> tuple[str, bytes, str]:
    """(file, content, expected message) for one kind of damage."""
    lines = rerank_lines()
    topics = (SLICE / "trec-dl-2019" / "topics.tsv").read_text().splitlines()
    qrels = (SLICE / "trec-dl-2019" / "qrels.txt").read_text().splitlines()
    name = "bm25-top100.rerank.jsonl.gz"
    if kind == "truncated gzip":
        whole = (SLICE / "trec-dl-2019" / name).read_bytes()
        return name, whole[: len(whole) // 3], r"truncated or corrupt"
    if kind == "bad JSON line":
        return name, gz_lines(lines[:6] + ['{"qid": "1", "docno": '] + lines[6:]), r"line 7: not valid JSON"
    if kind == "JSON line without a field":
        row = json.loads(lines[3])
        del row["text"]
        return name, gz_lines(lines[:3] + [json.dumps(row)] + lines[4:]), r"line 4: missing field\(s\) \['text'\]"
    if kind == "bad score":
        row = json.loads(lines[1])
        row["score"] = "high"
        return name, gz_lines(lines[:1] + [json.dumps(row)] + lines[2:]), r"line 2: score must be a finite number"
    if kind == "bad qrels label":
        qid, it, docno, _ = qrels[9].split()
        return "qrels.txt", "\n".join(qrels[:9] + [f"{qid} {it} {docno} relevant"] + qrels[10:]).encode(), \
            r"qrels.txt, line 10: label 'relevant' is not an integer"
    if kind == "qrels line with 3 fields":
        return "qrels.txt", "\n".join(qrels[:2] + ["1 0 2"] + qrels[2:]).encode(), r"qrels.txt, line 3: a line has 4"
    if kind == "topics line without a tab":
        return "topics.tsv", "\n".join(topics[:4] + ["123 what is a query"] + topics[4:]).encode(), \
            r"topics.tsv, line 5: a topics line is qid<TAB>query, this one has no tab"
    if kind == "repeated qid in topics":
        return "topics.tsv", "\n".join(topics + [topics[0]]).encode(), \
            rf"topics.tsv: qid .* occurs more than once \(lines \[1, {len(topics) + 1}\]\)"
    raise AssertionError(kind)


KINDS = ["truncated gzip", "bad JSON line", "JSON line without a field", "bad score", "bad qrels label",
         "qrels line with 3 fields", "topics line without a tab", "repeated qid in topics"]


@pytest.mark.parametrize("kind", KINDS)
def test_damaged_data_files_are_named_with_file_and_line(kind, tmp_path):
    name, content, expected = corrupted(kind)
    data = data_copy(tmp_path, {name: content})
    with pytest.raises(DataFormatError, match=expected) as error:
        load_benchmark("dl19", data)
    assert str(data / "trec-dl-2019" / name) in str(error.value)


def test_damaged_run_and_command_line_message(tmp_path, capsys):
    from pipelines.dl import main

    run = [f"{row['qid']} Q0 {row['docno']} {i + 1} {100 - i} ref" for i, row in
           enumerate(map(json.loads, rerank_lines()))]
    broken = run[:4] + [run[4].replace(" 96 ref", " NaN-ish ref")] + run[5:]
    data = data_copy(tmp_path, {"reference.run": "\n".join(broken).encode()})
    with pytest.raises(SystemExit) as exit_info:
        main("dl19", ["--data-dir", str(data), "--reference-run", "reference", "--queries", "1",
                      "--output", str(tmp_path / "out"), "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "reference.run, line 5: score 'NaN-ish' is not a number" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, option", [
    (["--threads", "-1"], "--threads"), (["--threads", "two"], "--threads"), (["--queries", "0"], "--queries"),
    (["--batch-size", "0"], "--batch-size"), (["--correction", "nonsense"], "--correction"),
    (["--cache-dir", "FILE"], "--cache-dir"), (["--output", "FILE"], "--output"), (["--data-dir", "FILE"],
                                                                                   "--data-dir"),
    (["--dtype", "half"], "--dtype"), (["--depth", "-5"], "--depth")])
def test_bad_options_are_refused_naming_the_option(args, option, tmp_path, capsys):
    from pipelines.dl import main

    file = tmp_path / "a-file"
    file.write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        main("dl19", [str(file) if a == "FILE" else a for a in args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and "Traceback" not in err


def test_bad_values_in_the_python_api_name_the_argument(tmp_path):
    file = tmp_path / "a-file"
    file.write_text("x")
    with pytest.raises(ValueError, match="correction must be one of"):
        table1("dl19", [], data_dir=SLICE, correction="nonsense", output=None)
    with pytest.raises(ValueError, match="--cache-dir .*is a file"):
        load_benchmark("noveleval", SLICE, "bm25", cache_dir=file)


# --- symlinked, full and read-only outputs; one experiment at a time ----------------------------------------------

def _no_work(monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the experiment started before the output folder was checked")

    monkeypatch.setattr("pipelines.common.load_benchmark", no_work)


def test_an_output_folder_that_is_a_symlink_to_a_folder_is_followed(tmp_path):
    disk = tmp_path / "other-disk"
    (disk / "results").mkdir(parents=True)
    link = tmp_path / "out"
    link.symlink_to(disk / "results")
    small_table1(link, [SETENC])
    small_table1(link, [SETENC])  # and again, over the complete result
    assert link.is_symlink() and os.readlink(link) == str(disk / "results")
    manifest = verify_result(disk / "results")
    assert list(manifest["settings"]["models"]) == ["setenc-int"] and verify_result(link) == manifest
    assert sorted(p.name for p in disk.iterdir()) == ["results"] and sorted(p.name for p in tmp_path.iterdir()) == \
        ["other-disk", "out"]  # no staging folder or lock left anywhere


LINKS = [  # (case, how the output is made a link, words the message must contain)
    ("dangling symlink", lambda tmp: (tmp / "out").symlink_to(tmp / "gone"),
     "out: is a symbolic link to {tmp}/gone, which does not exist; make that folder or remove the link"),
    ("symlink to a file", lambda tmp: ((tmp / "f").write_text("x"), (tmp / "out").symlink_to(tmp / "f")),
     "out: is a symbolic link to the file {tmp}/f, not a folder"),
    ("parent a dangling symlink", lambda tmp: (tmp / "parent").symlink_to(tmp / "gone"),
     "cannot be written: {tmp}/parent is a symbolic link to {tmp}/gone, which does not exist"),
]


@pytest.mark.parametrize("case,make,words", LINKS, ids=[row[0] for row in LINKS])
def test_a_symlink_that_cannot_be_the_output_is_refused_before_any_work(tmp_path, monkeypatch, case, make, words):
    make(tmp_path)
    _no_work(monkeypatch)
    output = tmp_path / ("parent/out" if case.startswith("parent") else "out")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(OutputError, match=re.escape(words.format(tmp=tmp_path))):
        table1("dl19", [], data_dir=SLICE, output=output)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing made


WRITE_FAILURES = [  # (case, the file whose write fails, errno, where in the write)
    ("disk full while the first model is stored", "cache/setenc-int.run", "ENOSPC", "write"),
    ("disk full while a table is written", "results.csv", "ENOSPC", "write"),
    ("read-only while the manifest is moved into place", "manifest.json", "EROFS", "replace"),
    ("no permission for a run", "runs/bm25.run", "EACCES", "create"),
]


@pytest.mark.parametrize("case,name,code,at", WRITE_FAILURES, ids=[row[0] for row in WRITE_FAILURES])
def test_a_write_that_fails_names_the_file_and_keeps_the_earlier_result(tmp_path, monkeypatch, calls, case, name,
                                                                        code, at):
    from pyterrier_setenc.atomic import OutputPathError

    from filesystem import fail_writes

    out = tmp_path / "out"
    small_table1(out, [], queries=3)
    earlier = verify_result(out)
    failed = fail_writes(monkeypatch, lambda path: path.as_posix().endswith(f".out.partial/{name}"), code, at)
    with pytest.raises(OutputPathError, match=re.escape(f"{tmp_path / '.out.partial' / name} could not be written "
                                                        f"({code}: ")) as caught:
        small_table1(out, [SETENC, MONO], queries=3)
    assert failed and caught.value.errno == CODES[code]
    assert verify_result(out) == earlier
    failed.stop()  # the file system works again
    scored = dict(calls)
    small_table1(out, [SETENC, MONO], queries=3)
    if name != "cache/setenc-int.run":  # the models finished before the failure are stored and reused
        assert calls["SetEncoderReRanker"] == scored["SetEncoderReRanker"]
    assert sorted(verify_result(out)["settings"]["models"]) == ["mono", "setenc-int"]


def test_a_failed_store_says_which_outputs_are_kept(tmp_path, monkeypatch):
    from pyterrier_setenc.atomic import OutputPathError

    from filesystem import fail_writes

    fail_writes(monkeypatch, lambda path: path.name == "mono.run", "ENOSPC")
    with pytest.raises(OutputPathError, match=r"mono\.run could not be written \(ENOSPC: No space left on device; "
                                              r"the file system is full\); the outputs already stored "
                                              r"\(cache/setenc-int\) stay in .*\.out\.partial and are reused"):
        small_table1(tmp_path / "out", [SETENC, MONO])


def test_the_command_line_ends_with_the_message_when_the_disk_is_full(tmp_path, monkeypatch, capsys):
    from pipelines.dl import main

    from filesystem import fail_writes

    fail_writes(monkeypatch, lambda path: path.name == "results.md", "ENOSPC")
    with pytest.raises(SystemExit) as exit_info:
        main("dl19", ["--data-dir", str(SLICE), "--queries", "1", "--depth", "5", "--output", str(tmp_path / "out"),
                      "--quiet", "--model", str(MONO)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert f"{tmp_path / '.out.partial' / 'results.md'} could not be written (ENOSPC" in err


def test_a_second_experiment_on_the_folder_is_refused_while_the_first_holds_it(tmp_path):
    from pipelines.output import ResultFolder

    out = tmp_path / "out"
    small_table1(out, [], queries=2)
    earlier = verify_result(out)
    first = ResultFolder(out).open()
    with pytest.raises(OutputError, match=rf"another experiment \(process {os.getpid()}\) is writing to this folder "
                                          rf"right now \(it holds {re.escape(str(tmp_path / '.out.lock'))}\)"):
        small_table1(out, [SETENC], queries=2)
    first.close()
    assert verify_result(out) == earlier and not (tmp_path / ".out.lock").exists()


def test_an_experiment_opening_while_another_commits_is_not_swept_away(tmp_path, monkeypatch):
    """The second experiment opens in the moment the first has swapped its result in and is about to clean up: it
    is refused (the lock is held until the clean-up ends), and once the first is done it opens and keeps its staging
    folder (before, the first one's clean-up removed the second one's staging folder)."""
    from pipelines.output import ResultFolder

    out = tmp_path / "out"
    second = ResultFolder(out)
    tried = []
    real = output_module.replace_folder

    def swap_then_open(complete, folder):
        real(complete, folder)
        with pytest.raises(OutputError, match="another experiment"):
            second.open()
        tried.append(True)
        return folder

    monkeypatch.setattr(output_module, "replace_folder", swap_then_open)
    small_table1(out, [], queries=2)
    assert tried
    verify_result(out)
    second.open()
    second.store("cache/model", pd.DataFrame({"qid": ["1"], "docno": ["d"], "score": [1.0], "rank": [0]}), "k", {})
    small_table1_done = (tmp_path / ".out.partial" / "cache" / "model.run").is_file()
    second.close()
    assert small_table1_done


# --- stored outputs are checked before they are reused ------------------------------------------------------------

def _change_a_digit(path: Path) -> None:
    text = path.read_text()
    position = text.index(" stored") - 1  # the last digit of the first score
    path.write_text(text[:position] + str((int(text[position]) + 1) % 10) + text[position + 1:])


STORED = [  # (case, where the stored output is, which file is damaged, how)
    ("a digit of a run in the result", "out", "cache/setenc-int.run", _change_a_digit),
    ("a run in the result cut short", "out", "cache/setenc-int.run",
     lambda path: path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))),
    ("the record of a run in the result", "out", "cache/setenc-int.json",
     lambda path: path.write_text(path.read_text().replace('"model"', '"model" ', 1))),
    ("a digit of a run left by a crash", ".out.partial", "cache/setenc-int.run", _change_a_digit),
]


@pytest.mark.parametrize("case,folder,name,damage", STORED, ids=[row[0] for row in STORED])
def test_a_damaged_stored_output_is_computed_again_with_a_warning(tmp_path, monkeypatch, calls, case, folder, name,
                                                                  damage):
    from pipelines.output import StoredOutputWarning

    out = tmp_path / "out"
    small_table1(out, [SETENC])
    fresh = (out / "cache" / "setenc-int.run").read_text()
    if folder == ".out.partial":  # a crash after the model was stored
        from pyterrier_setenc import MonoReRanker

        counted = MonoReRanker.transform
        monkeypatch.setattr(MonoReRanker, "transform", lambda self, inp: (_ for _ in ()).throw(RuntimeError("crash")))
        with pytest.raises(RuntimeError, match="crash"):
            small_table1(out, [SETENC, MONO], queries=3)
        monkeypatch.setattr(MonoReRanker, "transform", counted)
    damaged = tmp_path / folder / name
    damage(damaged)
    scored = calls["SetEncoderReRanker"]
    with pytest.warns(StoredOutputWarning, match=re.escape(str(damaged)) + ".*it is not reused, the model's output "
                                                                            "is computed again"):
        small_table1(out, [SETENC, MONO] if folder == ".out.partial" else [SETENC],
                     queries=3 if folder == ".out.partial" else 2)
    assert calls["SetEncoderReRanker"] > scored  # computed again, not taken as good
    verify_result(out)  # the new manifest records the recomputed file
    if folder == "out":
        assert (out / "cache" / "setenc-int.run").read_text() == fresh


def test_a_folder_written_as_a_unit_follows_a_symlink_and_names_a_dangling_one(tmp_path):
    """``atomic_folder`` (checkpoints, trained models) treats links like the output folders do."""
    from pyterrier_setenc.atomic import OutputPathError, atomic_folder

    (tmp_path / "disk" / "model").mkdir(parents=True)
    (tmp_path / "model").symlink_to(tmp_path / "disk" / "model")
    with atomic_folder(tmp_path / "model") as staging:
        (staging / "config.json").write_text("{}")
    assert (tmp_path / "model").is_symlink() and os.listdir(tmp_path / "disk" / "model") == ["config.json"]
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputPathError, match=re.escape(f"{tmp_path / 'gone'} is a symbolic link to "
                                                        f"{tmp_path / 'nowhere'}, which does not exist")), \
            atomic_folder(tmp_path / "gone" / "model"):
        raise AssertionError("not reached")
