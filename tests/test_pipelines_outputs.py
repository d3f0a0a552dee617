"""The experiments tell the truth and lose nothing: the first stage's tail below the re-ranked top k, row names
(``--model NAME=PATH``), no dagger for an undefined p-value, numerics options, ListConRanker in every command, output
folders that always hold one complete result (also when a run crashes or is killed), stored model outputs reused by
a rerun, and bad data files or options reported with the file, line or option."""

from __future__ import annotations

import gzip
import json
import os
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

from conftest import FIXTURES, REPO, SLICE
from pipelines import output as output_module
from pyterrier_setenc import io as io_module
from pipelines.common import resolve_models, with_tail
from pipelines.data import DataFormatError, load_benchmark
from pipelines.dl import table1
from pipelines.evaluation import aggregate, compact, experiment
from pipelines.output import OutputError, verify_result
from pyterrier_setenc.settings import RerankerSettings

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

    from pyterrier_setenc.numerics import Int8Linear

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
    import pyterrier_setenc.precision as precision

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
    assert writes == 8  # probe, the stored output and its key, two runs, two tables, the manifest

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
