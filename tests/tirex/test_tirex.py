"""The TIREx entry point ``python -m pyterrier_setenc.tirex`` and the Docker image's definition (``tira/``).

Golden values come from independent sources: the ``tira`` client's own loader (``all_lines_to_pandas``), format
check (``check_format(..., "run.txt")``) and run normalisation (``normalize_run``), and the scores of the in-process
re-rankers. No Docker engine runs in the tests: they read ``tira/Dockerfile`` and run its entrypoint command in a
shell the way ``tira-run`` does; ``tira/check-image.sh`` (in ``.ci/run``) builds the image with podman and runs it.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyterrier as pt
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from tira.check_format import CONF_MINIMUM_QUERIES, _fmt, check_format, lines_if_valid
from tira.io_utils import all_lines_to_pandas
from tira.third_party_integrations import extract_to_be_executed_notebook_from_command_or_none
from tira.third_party_integrations import normalize_run as tira_normalize_run

from pyterrier_setenc import SetEncoderReRanker
from pyterrier_setenc.tirex import main, rerank_file
from pyterrier_setenc.tolerance import score_tolerance

from agreement import check_scores, config_depth, depth
from builders import FIXTURES, REPO, SLICE, build_hf_cross_encoder, lock_pins

SAMPLE = SLICE / "tirex-sample" / "rerank.jsonl.gz"
DOCKERFILE = REPO / "tira" / "Dockerfile"
TIREX_COMMAND = "python -m pyterrier_setenc.tirex --input $inputDataset --output $outputDir --model /model"
ONE_QUERY = {CONF_MINIMUM_QUERIES: 1}  # the sample has one query; tira's check wants 3 unless told otherwise
MODELS = ["hf-cross-encoder", "set-encoder"] + (["setenc-int"] if (FIXTURES / "setenc-int").is_dir() else [])


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory) -> Path:
    return build_hf_cross_encoder(tmp_path_factory.mktemp("tirex") / "hf")


@pytest.fixture
def model_path(request, hf_model, set_encoder_path) -> Path:
    return {"hf-cross-encoder": hf_model, "set-encoder": set_encoder_path}.get(request.param,
                                                                              FIXTURES / str(request.param))


@pytest.fixture(scope="module")
def dl19_input(tmp_path_factory, dl19) -> Path:
    """A TIREx input folder made from the first three DL19 queries' BM25 top-100, with all of TIREx's fields."""
    folder = tmp_path_factory.mktemp("dl19-tirex")
    frame = dl19[dl19["qid"].isin(sorted(dl19["qid"].unique())[:3])]
    with gzip.open(folder / "rerank.jsonl.gz", "wt", encoding="utf-8") as file:
        for row in frame.itertuples():
            file.write(json.dumps({
                "qid": row.qid, "query": row.query,
                "original_query": {"query_id": row.qid, "text": row.query},
                "docno": row.docno, "text": row.text,
                "original_document": {"doc_id": row.docno, "text": row.text},
                "rank": int(row.rank), "score": float(row.score)}) + "\n")
    return folder


def read_run(folder: Path, configuration: dict | None = None) -> pd.DataFrame:
    """The run in ``folder`` after tira's own format check, parsed by tira's run reader."""
    status, message = check_format(folder, "run.txt", configuration)
    assert status == _fmt.OK, message
    return pd.DataFrame(lines_if_valid(folder, "run.txt", configuration))


def in_process_scores(model: Path, rerank_input: Path, batch_size: int = 128) -> pd.DataFrame:
    """Scores of :class:`SetEncoderReRanker` on the candidates as tira's loader reads them."""
    frame = all_lines_to_pandas(rerank_input, load_default_text=True)
    scored = SetEncoderReRanker(str(model), batch_size=batch_size)(frame[["qid", "query", "docno", "text"]])
    return scored[["qid", "docno", "score"]]


def assert_run_matches(run: pd.DataFrame, expected: pd.DataFrame, tag: str, model: Path) -> None:
    """``run`` (tira's parse of run.txt) holds ``expected``'s scores (``model``'s, within float32 rounding) and is
    ordered as tira normalises them."""
    merged = run.merge(expected, on=["qid", "docno"], suffixes=("", "_expected"), validate="one_to_one")
    assert len(merged) == len(expected) == len(run)
    check_scores(merged["score"], merged["score_expected"], config_depth(model), what=tag)
    golden = tira_normalize_run(run[["qid", "docno", "score"]].copy(), tag)
    assert run["qid"].tolist() == golden["qid"].astype(str).tolist()
    assert run["docno"].tolist() == golden["docno"].tolist()
    assert run["rank"].tolist() == golden["rank"].tolist()
    assert set(run["system"]) == {tag} and set(run["q0"]) == {"Q0"}


def run_module(args: list[str], env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "pyterrier_setenc.tirex", *args], capture_output=True, text=True,
                          env=environment, cwd=kwargs.pop("cwd", REPO), timeout=300, **kwargs)


def test_sample_from_the_command_line(tmp_path, hf_model):
    """TIREx's own sample (integer docnos, original_query/original_document) re-ranked by a separate process."""
    result = run_module(["--input", str(SAMPLE.parent), "--output", str(tmp_path / "out"), "--model", str(hf_model),
                         "--tag", "mono-tiny"])
    assert result.returncode == 0, result.stderr
    run = read_run(tmp_path / "out", ONE_QUERY)
    assert sorted(run["docno"]) == sorted(str(line["docno"]) for line in sample_lines())
    assert run["rank"].tolist() == list(range(1, 11))
    assert_run_matches(run, in_process_scores(hf_model, SAMPLE), "mono-tiny", hf_model)


def entrypoint_command() -> str:
    """The command TIRA runs: the Dockerfile's exec-form ENTRYPOINT joined by spaces (as tira's
    ``extract_entrypoint`` does)."""
    return " ".join(json.loads(instructions(DOCKERFILE)["ENTRYPOINT"][-1]))


def test_dockerfile_command_as_tira_runs_it(tmp_path, set_encoder_path, dl19_input):
    """The image's command in ``sh -c`` with the variables tira-run sets, the baked model swapped for a tiny one."""
    output = tmp_path / "output"
    output.mkdir()
    command = entrypoint_command().replace(" /model", " " + shlex.quote(str(set_encoder_path)))
    command = command.replace("python ", shlex.quote(sys.executable) + " ", 1)  # the image's python is on its PATH
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "inputDataset": str(dl19_input), "outputDir": str(output),
                   "TIRA_INPUT_DATASET": str(dl19_input), "TIRA_OUTPUT_DIR": str(output),
                   "SETENC_TAG": "webis/set-encoder-base"}
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=environment, cwd=tmp_path,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    run = read_run(output)
    assert run.groupby("qid").size().tolist() == [100, 100, 100]
    assert_run_matches(run, in_process_scores(set_encoder_path, dl19_input / "rerank.jsonl.gz"),
                       "webis-set-encoder-base", set_encoder_path)


@pytest.mark.parametrize("model_path", MODELS, indirect=True)
def test_dl19_in_process_matches_the_reranker(tmp_path, model_path, dl19_input):
    assert main(["--input", str(dl19_input), "--output", str(tmp_path), "--model", str(model_path),
                 "--batch-size", "64", "--tag", "t"]) == 0
    expected = in_process_scores(model_path, dl19_input / "rerank.jsonl.gz", batch_size=64)
    assert_run_matches(read_run(tmp_path), expected, "t", model_path)


def test_environment_variables_and_unexpanded_placeholders(tmp_path, monkeypatch, hf_model):
    """Without options, folders come from TIRA_INPUT_DATASET/TIRA_OUTPUT_DIR, the model from SETENC_MODEL and the
    tag from SETENC_TAG; a literal ``$inputDataset`` (the exec-form entrypoint run outside TIRA) falls back too."""
    monkeypatch.setenv("TIRA_INPUT_DATASET", str(SAMPLE.parent))
    monkeypatch.setenv("TIRA_OUTPUT_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("SETENC_MODEL", str(hf_model))
    monkeypatch.setenv("SETENC_TAG", "webis/monoelectra-base")
    monkeypatch.delenv("inputDataset", raising=False)
    monkeypatch.delenv("outputDir", raising=False)
    assert main([]) == 0
    assert set(read_run(tmp_path / "a", ONE_QUERY)["system"]) == {"webis-monoelectra-base"}
    monkeypatch.setenv("TIRA_OUTPUT_DIR", str(tmp_path / "b"))
    monkeypatch.delenv("SETENC_TAG")
    assert main(["--input", "$inputDataset", "--output", "${outputDir}"]) == 0
    assert set(read_run(tmp_path / "b", ONE_QUERY)["system"]) == {"hf"}  # the model folder's name
    assert main(["--input", str(SAMPLE), "--output", str(tmp_path / "c")]) == 0  # the file itself
    assert len(read_run(tmp_path / "c", ONE_QUERY)) == 10


def test_a_shipped_checkpoint_by_its_python_name(tmp_path, capsys, monkeypatch, no_network):
    """``--model pyterrier_setenc.embedded.SET_ENCODER`` re-ranks with the shipped Set-Encoder, offline, and the tag
    is its folder's name (also when the image's SETENC_TAG gives the Python name); an unknown shipped name is
    refused before anything is written."""
    from pyterrier_setenc import embedded

    assert main(["--input", str(SAMPLE), "--output", str(tmp_path / "out"),
                 "--model", "pyterrier_setenc.embedded.SET_ENCODER"]) == 0
    assert_run_matches(read_run(tmp_path / "out", ONE_QUERY), in_process_scores(embedded.SET_ENCODER, SAMPLE),
                       "set-encoder-minilm-l6", embedded.SET_ENCODER)
    capsys.readouterr()
    assert main(["--input", str(SAMPLE), "--output", str(tmp_path / "bad"),
                 "--model", "pyterrier_setenc.embedded.LARGE"]) == 1
    message = capsys.readouterr().err
    assert "ships no checkpoint 'LARGE'" in message and "Traceback" not in message, message
    assert not (tmp_path / "bad").exists()
    # the image's environment: SETENC_MODEL=/model, SETENC_TAG=$MODEL; the tag is the shipped folder's name
    shutil.copytree(embedded.SET_ENCODER, tmp_path / "model")
    monkeypatch.setenv("SETENC_MODEL", str(tmp_path / "model"))
    monkeypatch.setenv("SETENC_TAG", "pyterrier_setenc.embedded.SET_ENCODER")
    assert main(["--input", str(SAMPLE), "--output", str(tmp_path / "image")]) == 0
    assert_run_matches(read_run(tmp_path / "image", ONE_QUERY), in_process_scores(embedded.SET_ENCODER, SAMPLE),
                       "set-encoder-minilm-l6", embedded.SET_ENCODER)


def sample_lines() -> list[dict]:
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as file:
        return [json.loads(line) for line in file]


def write_lines(path: Path, lines: list) -> None:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as file:
        file.write(text)


def edited(index: int, **changes) -> list[dict]:
    lines = sample_lines()
    for key, value in changes.items():
        if value is None:
            lines[index].pop(key)
        else:
            lines[index][key] = value
    return lines


def make_bad_input(case: str, folder: Path) -> tuple[Path, list[str]]:
    """An input folder for ``case`` and the phrases the error message must hold."""
    gz = folder / "rerank.jsonl.gz"
    plain = folder / "rerank.jsonl"
    if case == "missing-field":
        write_lines(gz, edited(2, text=None))
        return folder, [str(gz), "line 3", "missing field", "'text'"]
    if case == "missing-qid":
        write_lines(plain, edited(0, qid=None))
        return folder, [str(plain), "line 1", "'qid'"]
    if case == "empty-gzip":
        write_lines(gz, [])
        return folder, [str(gz), "is empty"]
    if case == "empty-file":
        plain.write_bytes(b"")
        return folder, [str(plain), "is empty"]
    if case == "blank-lines":
        plain.write_text("\n \n")
        return folder, [str(plain), "is empty"]
    if case == "truncated-gzip":
        data = SAMPLE.read_bytes()
        gz.write_bytes(data[: len(data) // 2])
        return folder, [str(gz), "truncated"]
    if case == "not-gzip":
        gz.write_text(json.dumps(sample_lines()[0]) + "\n")
        return folder, [str(gz), "corrupt"]
    if case == "bad-json":
        write_lines(plain, [sample_lines()[0], '{"qid": "1", "query":'])
        return folder, [str(plain), "line 2", "not valid JSON"]
    if case == "not-an-object":
        write_lines(plain, [sample_lines()[0], "[1, 2]"])
        return folder, [str(plain), "line 2", "not a JSON object"]
    if case == "repeated-docno":
        write_lines(gz, edited(4, docno=sample_lines()[1]["docno"]))
        return folder, [str(gz), "occurs more than once", "lines [2, 5]"]
    if case == "two-query-texts":
        write_lines(gz, edited(3, query="another query"))
        return folder, [str(gz), "more than one query text"]
    if case == "empty-query":
        write_lines(gz, edited(3, query="  "))
        return folder, [str(gz), "line 4", "query"]
    if case == "docno-with-space":
        write_lines(gz, edited(1, docno="a b"))
        return folder, [str(gz), "line 2", "whitespace"]
    if case == "bool-docno":  # tira's loader would make it "True"
        write_lines(gz, edited(1, docno=True))
        return folder, [str(gz), "line 2", "docno must be a JSON string or integer, got true"]
    if case == "float-qid":  # "1.0", which matches no qrels
        write_lines(gz, edited(0, qid=1.0))
        return folder, [str(gz), "line 1", "qid must be a JSON string or integer, got 1.0"]
    if case == "list-docno":  # "[1]"
        write_lines(gz, edited(5, docno=[1]))
        return folder, [str(gz), "line 6", "docno must be a JSON string or integer, got a JSON array"]
    if case == "surrogate-text":  # JSON's "\ud800": not text; pandas' string columns cannot even hold it
        write_lines(gz, edited(3, text="lobster \ud800 shell"))
        return folder, [str(gz), "line 4", "text holds a lone surrogate"]
    if case == "docno-8172-and-string-8172":  # one passage twice (two passages to a re-ranker before: now refused)
        write_lines(gz, edited(5, docno="8172"))
        return folder, [str(gz), "docno '8172' for qid '1' occurs more than once (lines [1, 6])"]
    if case == "nul-query":  # no word piece: refused like an empty query
        lines = sample_lines()
        for line in lines:
            line["query"] = "\x00\x00"
        write_lines(gz, lines)
        return folder, [str(gz), "line(s) [1]: 10 row(s)", "'query' with no characters a tokenizer keeps", "qid='1'"]
    if case == "control-character-query":
        lines = sample_lines()
        for line in lines:
            line["query"] = "\x07\u200b\x1b"
        write_lines(gz, lines)
        return folder, [str(gz), "'query' with no characters a tokenizer keeps"]
    if case == "no-input-file":
        (folder / "other.txt").write_text("x")
        return folder, [str(folder), "no rerank.jsonl.gz or rerank.jsonl", "other.txt"]
    if case == "no-folder":
        return folder / "missing", [str(folder / "missing"), "does not exist"]
    raise ValueError(case)


BAD_INPUTS = ["missing-field", "missing-qid", "empty-gzip", "empty-file", "blank-lines", "truncated-gzip", "not-gzip",
              "bad-json", "not-an-object", "repeated-docno", "two-query-texts", "empty-query", "docno-with-space",
              "bool-docno", "float-qid", "list-docno", "surrogate-text", "docno-8172-and-string-8172",
              "nul-query", "control-character-query", "no-input-file", "no-folder"]


def test_tirex_and_the_rerankers_read_mixed_ids_alike(tmp_path):
    """qid 1 beside "1" and docnos of both types in one input: TIREx's reader and a re-ranker given the same rows
    as a frame see one query with the same passages, and give the same scores; docno 8172 beside "8172" both refuse."""
    from pyterrier_setenc.io import InputFileError, read_rerank

    lines = edited(0, qid=1)
    lines[3]["docno"] = str(lines[3]["docno"])
    write_lines(tmp_path / "rerank.jsonl", lines)
    reranker = SetEncoderReRanker(FIXTURES / "setenc-int", verbose=False)
    rerank_file(tmp_path, tmp_path / "out", reranker, tag="mixed")
    run = read_run(tmp_path / "out", ONE_QUERY).set_index("docno")["score"].astype(float)
    direct = reranker(pd.DataFrame(lines)[["qid", "query", "docno", "text"]])
    assert direct["qid"].unique().tolist() == ["1"]
    assert run.loc[direct["docno"]].tolist() == direct["score"].tolist()
    lines[5]["docno"] = str(lines[0]["docno"])
    write_lines(tmp_path / "rerank.jsonl", lines)
    with pytest.raises(InputFileError, match=f"docno '{lines[0]['docno']}' for qid '1' occurs more than once"):
        read_rerank(tmp_path / "rerank.jsonl")
    with pytest.raises(ValueError, match=f"docno '{lines[0]['docno']}' occurs more than once for qid '1'"):
        reranker(pd.DataFrame(lines)[["qid", "query", "docno", "text"]])


# --- symlinked, full, read-only and shared output folders ---------------------------------------------------------

def test_an_output_folder_that_is_a_symlink_is_followed(tmp_path):
    (tmp_path / "disk").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "disk")
    assert rerank_file(SAMPLE, tmp_path / "out", LengthScorer(), tag="len") == tmp_path / "out" / "run.txt"
    assert (tmp_path / "out").is_symlink() and sorted(os.listdir(tmp_path / "disk")) == ["ir-metadata.yml", "run.txt"]


class NoScoring(pt.Transformer):
    def transform(self, inp):
        raise AssertionError("scored although the output cannot be written")


@pytest.mark.parametrize("case,make,words", [
    ("dangling symlink", lambda tmp: (tmp / "out").symlink_to(tmp / "gone"),
     "output folder {tmp}/out is a symbolic link to {tmp}/gone, which does not exist; make that folder or remove "
     "the link"),
    ("symlink to a file", lambda tmp: ((tmp / "f").write_text("x"), (tmp / "out").symlink_to(tmp / "f")),
     "output {tmp}/out is a symbolic link to the file {tmp}/f; it must be a folder"),
], ids=["dangling symlink", "symlink to a file"])
def test_a_symlink_that_cannot_be_the_output_is_refused_first(tmp_path, capsys, case, make, words):
    make(tmp_path)
    with pytest.raises(OSError, match=re.escape(words.format(tmp=tmp_path))):
        rerank_file(SAMPLE, tmp_path / "out", NoScoring(), tag="len")
    assert main(["--input", str(tmp_path / "missing"), "--output", str(tmp_path / "out"), "--model", "none"]) == 1
    message = capsys.readouterr().err
    assert words.format(tmp=tmp_path) in message and "Traceback" not in message


FULL_OR_READ_ONLY = [  # (errno, where the write fails, the message; "{out}": the output folder)
    ("ENOSPC", "write", "{out}/run.txt could not be written (ENOSPC: No space left on device; the file system is "
                        "full)"),
    ("EROFS", "replace", "{out}/run.txt could not be written (EROFS: Read-only file system; the file system is "
                         "read-only)"),
    # no file can be made at all: found by the check of the output folder, before anything is read or scored
    ("EACCES", "create", "output folder {out} cannot be written (PermissionError: Permission denied)"),
]


@pytest.mark.parametrize("code,at,words", FULL_OR_READ_ONLY, ids=[f"{c}-{a}" for c, a, _ in FULL_OR_READ_ONLY])
def test_a_full_or_read_only_output_names_the_path_and_keeps_the_earlier_run(tmp_path, monkeypatch, capsys, code, at,
                                                                             words):
    from filesystem import CODES, fail_writes

    output = tmp_path / "out"
    output.mkdir()
    (output / "run.txt").write_text("1 Q0 d 1 1.0 earlier\n")
    words = words.format(out=output)
    failed = fail_writes(monkeypatch, lambda path: path == output / "run.txt", code, at)
    with pytest.raises(OSError, match=re.escape(words)) as caught:
        rerank_file(SAMPLE, output, LengthScorer() if at != "create" else NoScoring(), tag="len")
    assert failed[0] == output / "run.txt" and caught.value.errno == CODES[code]
    assert os.listdir(output) == ["run.txt"] and (output / "run.txt").read_text() == "1 Q0 d 1 1.0 earlier\n"
    monkeypatch.setattr("pyterrier_setenc.tirex.RerankerSettings.load", lambda self, model, **kwargs: LengthScorer())
    assert main(["--input", str(SAMPLE), "--output", str(output), "--model", "any", "--tag", "len"]) == 1
    message = capsys.readouterr().err
    assert f"error: {words}" in message and "Traceback" not in message


def test_two_runs_into_one_output_folder_do_not_both_write(tmp_path):
    """A run started while another works in the folder ends at once with an error; the first one's run.txt is
    written once, complete."""
    import threading

    from pyterrier_setenc.atomic import OutputPathError

    started, release = threading.Event(), threading.Event()

    class SlowScorer(LengthScorer):
        def transform(self, inp):
            started.set()
            release.wait(60)
            return super().transform(inp)

    results = {}

    def first():
        results["first"] = rerank_file(SAMPLE, tmp_path / "out", SlowScorer(), tag="first")

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert started.wait(60)
        with pytest.raises(OutputPathError, match=re.escape(
                f"output folder {tmp_path / 'out'}: another run holds its lock and is writing run.txt there right "
                "now")):
            rerank_file(SAMPLE, tmp_path / "out", NoScoring(), tag="second")
    finally:
        release.set()
        thread.join(60)
    assert results["first"] == tmp_path / "out" / "run.txt"
    assert sorted(os.listdir(tmp_path / "out")) == ["ir-metadata.yml", "run.txt"]  # the lock is gone with the run
    assert {line.split()[-1] for line in (tmp_path / "out" / "run.txt").read_text().splitlines()} == {"first"}
    rerank_file(SAMPLE, tmp_path / "out", LengthScorer(), tag="third")  # and the folder is free again


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_ends_with_a_clear_message_and_no_run(case, tmp_path, capsys, hf_model):
    folder = tmp_path / "input"
    folder.mkdir()
    source, phrases = make_bad_input(case, folder)
    output = tmp_path / "output"
    output.mkdir()
    (output / "run.txt").write_text("1 Q0 d 1 1.0 earlier\n")  # an earlier run survives a failed one unchanged
    assert main(["--input", str(source), "--output", str(output), "--model", str(hf_model)]) == 1
    message = capsys.readouterr().err
    for phrase in phrases:
        assert phrase in message
    assert "Traceback" not in message
    assert os.listdir(output) == ["run.txt"] and (output / "run.txt").read_text() == "1 Q0 d 1 1.0 earlier\n"


def test_bad_input_from_the_command_line(tmp_path, hf_model):
    source, _ = make_bad_input("truncated-gzip", tmp_path)
    result = run_module(["--input", str(source), "--output", str(tmp_path / "out"), "--model", str(hf_model)])
    assert result.returncode != 0
    assert "truncated" in result.stderr and str(source / "rerank.jsonl.gz") in result.stderr
    assert not (tmp_path / "out" / "run.txt").exists()


def test_missing_settings_and_bad_model(tmp_path, monkeypatch, capsys):
    for variable in ("TIRA_INPUT_DATASET", "TIRA_OUTPUT_DIR", "inputDataset", "outputDir", "SETENC_MODEL"):
        monkeypatch.delenv(variable, raising=False)
    assert main(["--output", str(tmp_path / "out")]) == 1
    assert "no input folder: pass --input DIR or set TIRA_INPUT_DATASET" in capsys.readouterr().err
    assert main(["--input", "$inputDataset", "--output", str(tmp_path / "out")]) == 1
    assert "'$inputDataset', a variable that is not set" in capsys.readouterr().err
    if not Path("/model").is_dir():
        assert main(["--input", str(SAMPLE.parent), "--output", str(tmp_path / "out")]) == 1
        assert "no model: pass --model" in capsys.readouterr().err
    (tmp_path / "not-a-model").mkdir()
    assert main(["--input", str(SAMPLE.parent), "--output", str(tmp_path / "out"),
                 "--model", str(tmp_path / "not-a-model")]) == 1
    assert "has no config.json" in capsys.readouterr().err
    assert main(["--input", str(SAMPLE.parent), "--output", str(tmp_path / "out"), "--tag", "a b",
                 "--model", str(tmp_path / "not-a-model")]) == 1
    assert "without whitespace" in capsys.readouterr().err
    assert not (tmp_path / "out" / "run.txt").exists()


class LengthScorer(pt.Transformer):
    """Scores a passage by its length (``nan`` for the word ``nan``): a stand-in re-ranker without a model."""

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        score = inp["text"].map(lambda text: float("nan") if text == "nan" else float(len(text)))
        return inp.assign(score=score)


def test_passages_without_text_are_scored_as_empty_passages(tmp_path):
    """The re-rankers' rule for passages without text (empty or JSON null): scored as the empty passage, with one
    warning; expected scores are the model's for the same list with "" in their place."""
    from pyterrier_setenc import EmptyTextWarning

    lines = sample_lines()
    lines[2]["text"], lines[6]["text"] = "", None
    write_lines(tmp_path / "rerank.jsonl", lines)
    reranker = SetEncoderReRanker(FIXTURES / "setenc-int", verbose=False)
    with pytest.warns(EmptyTextWarning, match="2 passage\\(s\\)"):
        rerank_file(tmp_path, tmp_path / "out", reranker, tag="empty")
    run = read_run(tmp_path / "out", ONE_QUERY)
    assert len(run) == len(lines)
    texts = [line["text"] or "" for line in lines]
    expected = reranker.module.score_lists([lines[0]["query"]], [texts])[0].double().numpy()
    got = run.set_index("docno").loc[[str(line["docno"]) for line in lines], "score"].astype(float).to_numpy()
    check_scores(got, expected, depth(reranker), what="empty passages")


def test_failures_leave_no_run_and_no_temporary_file(tmp_path, monkeypatch):
    lines = sample_lines()
    lines[0]["text"] = "nan"
    write_lines(tmp_path / "rerank.jsonl", lines)
    with pytest.raises(ValueError, match="1 score\\(s\\) are not finite"):
        rerank_file(tmp_path, tmp_path / "out", LengthScorer(), tag="len")
    assert os.listdir(tmp_path / "out") == []

    def broken_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        rerank_file(SAMPLE, tmp_path / "out", LengthScorer(), tag="len")
    assert os.listdir(tmp_path / "out") == []


def test_scoring_errors_name_the_input_line(tmp_path):
    """An error of the scoring step that names a row by qid and docno is given that row's line of the input."""
    lines = sample_lines()
    lines[6]["text"] = "nan"
    write_lines(tmp_path / "rerank.jsonl", lines)
    earlier = "1 Q0 d 1 1.0 earlier\n"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "run.txt").write_text(earlier)
    with pytest.raises(ValueError) as caught:
        rerank_file(tmp_path, tmp_path / "out", LengthScorer(), tag="len")
    assert str(caught.value).startswith(f"{tmp_path / 'rerank.jsonl'}, line(s) [7]: 1 score(s) are not finite")
    assert f"docno='{lines[6]['docno']}'" in str(caught.value)
    assert os.listdir(tmp_path / "out") == ["run.txt"] and (tmp_path / "out" / "run.txt").read_text() == earlier


def test_the_output_is_checked_first_and_nothing_is_touched_before_every_check(tmp_path, capsys, hf_model):
    """A bad output folder is reported before a missing input or model; a bad tag, input or model leaves an
    earlier run.txt as it was (the model check comes after the input's, the expensive one last)."""
    (tmp_path / "a-file").write_text("x")
    for output in (tmp_path / "a-file", tmp_path / "a-file" / "below"):
        assert main(["--input", str(tmp_path / "missing"), "--output", str(output), "--model", "no-model"]) == 1
        message = capsys.readouterr().err
        assert f"output {tmp_path / 'a-file'}" in message or f"output folder {output}" in message, message
        assert "missing" not in message and "Traceback" not in message
    output = tmp_path / "out"
    output.mkdir()
    earlier = "1 Q0 d 1 1.0 earlier\n"
    (output / "run.txt").write_text(earlier)
    cases = [(["--input", str(SAMPLE), "--model", str(hf_model), "--tag", "a b"], "without whitespace"),
             (["--input", str(tmp_path / "missing"), "--model", str(tmp_path / "no-model")], "does not exist"),
             (["--input", str(SAMPLE), "--model", str(tmp_path / "no-model")], "no-model")]
    for arguments, phrase in cases:
        assert main([*arguments, "--output", str(output)]) == 1
        message = capsys.readouterr().err
        assert phrase in message, message
        assert os.listdir(output) == ["run.txt"] and (output / "run.txt").read_text() == earlier


KILL_HOOK = """
import os, sys, time
rename = os.replace
def replace_slowly(source, target):  # the temporary file is complete: say so and wait to be killed
    print("RENAMING", file=sys.stderr, flush=True)
    time.sleep(600)
    rename(source, target)
os.replace = replace_slowly
from pyterrier_setenc.tirex import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_run_leaves_the_earlier_or_the_complete_new_result(tmp_path):
    """SIGKILL at several moments of a run (while starting, 0.5 s, 1 s and 2 s in; with the new run complete in its
    temporary file, before the rename; after the end): the folder holds the complete earlier run.txt or the
    complete new one, besides at most a temporary file; ir-metadata.yml, where there is one, describes the run.txt
    beside it (its SHA-256), and the next successful run leaves only run.txt and ir-metadata.yml."""
    model = FIXTURES / "setenc-int"
    arguments = ["--input", str(SAMPLE.parent), "--model", str(model), "--tag", "t"]
    reference = tmp_path / "reference"
    assert main([*arguments, "--output", str(reference)]) == 0
    new = (reference / "run.txt").read_text()
    earlier = "1 Q0 d 1 1.0 earlier\n"
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    points = (0.5, 1.0, 2.0, "before-rename", "finished")
    processes = {}
    try:
        for point in points:  # all at once: the timed kills land while the others run
            output = tmp_path / f"out-{point}"
            output.mkdir()
            (output / "run.txt").write_text(earlier)
            command = [sys.executable, "-c", KILL_HOOK] if point == "before-rename" else \
                [sys.executable, "-m", "pyterrier_setenc.tirex"]
            processes[point] = subprocess.Popen([*command, *arguments, "--output", str(output)], cwd=REPO,
                                                env=environment, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.PIPE if point == "before-rename" else
                                                subprocess.DEVNULL, text=True)
        started = time.monotonic()
        for point in (0.5, 1.0, 2.0):
            time.sleep(max(0.0, started + point - time.monotonic()))
            processes[point].kill()  # SIGKILL
        assert any("RENAMING" in line for line in processes["before-rename"].stderr), "it ended before its rename"
        processes["before-rename"].kill()
        assert processes["finished"].wait(timeout=300) == 0
        processes["finished"].kill()
    finally:
        for process in processes.values():
            process.kill()
            process.wait(timeout=60)
            if process.stderr:
                process.stderr.close()
    outcomes = {}
    for point in points:
        output = tmp_path / f"out-{point}"
        names = sorted(os.listdir(output))
        assert "run.txt" in names
        assert all(re.fullmatch(r"\.(run\.txt|ir-metadata\.yml)\.\d+\.[0-9a-f]{8}\.tmp", name)
                   for name in names if name not in ("run.txt", "ir-metadata.yml"))
        content = (output / "run.txt").read_text()
        if "ir-metadata.yml" in names:  # written after run.txt: it names the run beside it
            import hashlib

            import yaml

            digest = yaml.safe_load((output / "ir-metadata.yml").read_text())["results"]["run.txt"]["sha256"]
            assert digest == hashlib.sha256((output / "run.txt").read_bytes()).hexdigest()
        assert content == earlier or same_run(content, new, model), content[:200]
        outcomes[point] = "earlier" if content == earlier else "new"
        if point == "before-rename":
            assert len(names) == 2 and content == earlier  # the complete new run waits beside it, never half
            assert same_run((output / names[0]).read_text(), new, model)
    assert outcomes["finished"] == "new" and "ir-metadata.yml" in os.listdir(tmp_path / "out-finished")
    output = tmp_path / "out-before-rename"
    assert main([*arguments, "--output", str(output)]) == 0
    assert sorted(os.listdir(output)) == ["ir-metadata.yml", "run.txt"]
    assert same_run((output / "run.txt").read_text(), new, model)


def same_run(text: str, reference: str, model: Path) -> bool:
    """Whether ``text`` is the complete ``reference`` run: the same lines but for float32 rounding of the scores
    (another process sums in another order when MKL gives it fewer threads on a loaded machine)."""
    lines, expected = [line.split() for line in text.splitlines()], [line.split() for line in reference.splitlines()]
    if len(lines) != len(expected) or any(a[:4] + a[5:] != b[:4] + b[5:] for a, b in zip(lines, expected)):
        return False
    scores, golden = [float(a[4]) for a in lines], [float(b[4]) for b in expected]
    return max(abs(a - b) for a, b in zip(scores, golden)) <= score_tolerance(scores + golden, config_depth(model))


def instructions(path: Path) -> dict[str, list[str]]:
    """A Dockerfile's instructions by keyword, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines()
                                          if not line.lstrip().startswith("#")))
    found: dict[str, list[str]] = {}
    for line in filter(str.strip, text.splitlines()):
        keyword, _, argument = line.strip().partition(" ")
        found.setdefault(keyword.upper(), []).append(" ".join(argument.split()))
    return found


def pip_installs(runs: list[str]) -> list[list[str]]:
    """The arguments of each ``pip install`` in the RUN instructions."""
    return [shlex.split(part)[2:] for run in runs for part in run.split("&&") if part.strip().startswith("pip install")]


def stages(path: Path) -> list[tuple[str, dict[str, list[str]]]]:
    """A Dockerfile's build stages: (the FROM argument, the stage's instructions by keyword); the ARGs before the
    first FROM are the stage ``""``."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines()
                                          if not line.lstrip().startswith("#")))
    found: list[tuple[str, dict[str, list[str]]]] = [("", {})]
    for line in filter(str.strip, text.splitlines()):
        keyword, _, argument = line.strip().partition(" ")
        argument = " ".join(argument.split())
        if keyword.upper() == "FROM":
            found.append((argument, {}))
        else:
            found[-1][1].setdefault(keyword.upper(), []).append(argument)
    return found


def copy_sources(copy: str) -> list[str]:
    """The sources of a ``COPY`` from the build context (none for ``COPY --from=STAGE``)."""
    tokens = copy.split()
    return [] if tokens[0].startswith("--from=") else tokens[:-1]


def test_dockerfile_is_pinned_and_offline_at_run_time():
    found = instructions(DOCKERFILE)
    assert set(found) <= {"FROM", "ARG", "ENV", "RUN", "COPY", "ENTRYPOINT"}
    runs = found["RUN"]
    # every package is pinned by the lock file (requirements/lock.txt), copied into the image before any install
    lock = lock_pins()
    image_lock = next(copy.split()[-1] for copy in found["COPY"] if copy_sources(copy) == ["requirements/lock.txt"])
    installs = pip_installs(runs)
    text = DOCKERFILE.read_text()
    assert installs and text.index("COPY requirements/lock.txt") < text.index("pip install -c")
    for args in installs:
        assert "-c" in args and args[args.index("-c") + 1] == image_lock, args
    options_with_value = {"-c", "--constraint", "--index-url", "--extra-index-url", "-r", "--requirement"}
    requirements = [token for args in installs for previous, token in zip([""] + args, args)
                    if not token.startswith(("-", "$")) and previous not in options_with_value]
    assert "/tmp/pyterrier-setenc[tira]" in requirements
    # PyTorch: the lock's version; the CPU build from PyTorch's CPU index (a build argument), or PyPI's CUDA build
    torch_run = next(run for run in runs if '"$torch"' in run)
    assert f"cpu) torch=torch=={lock['torch']}+cpu source=\"--extra-index-url $TORCH_INDEX\"" in torch_run
    assert f'cuda) torch=torch==={lock["torch"]} source=""' in torch_run
    assert "TORCH_INDEX=https://download.pytorch.org/whl/cpu" in found["ARG"]
    # an offline build: with WHEELHOUSE set every pip install reads the wheelhouse alone
    assert "WHEELHOUSE=" in found["ARG"]
    for run in (run for run in runs if "pip install" in run):
        assert "--no-index --find-links $WHEELHOUSE" in run, run
    others = [token for token in requirements if token != "/tmp/pyterrier-setenc[tira]"]
    assert all(re.fullmatch(r"[\w.-]+(==[\w.+]+)?", token) for token in others), others
    for token in others:  # a version given in the Dockerfile is the lock's; without one the lock's applies
        name, _, version = token.partition("==")
        assert canonicalize_name(name) in lock, name
        assert version.split("+")[0] in ("", lock[canonicalize_name(name)]), token
    # the lock pins what the image installs: the package's dependencies and its tira extra
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in map(Requirement, project["dependencies"] + project["optional-dependencies"]["tira"]):
        assert canonicalize_name(requirement.name) in lock, requirement
    # the model is fetched at build time, then the network is off: at run time nothing is downloaded
    download = next(i for i, run in enumerate(runs) if "download_model(" in run)
    assert '"$MODEL"' in runs[download] and "'/opt/model'" in runs[download]
    offline = " ".join(found["ENV"])
    assert "HF_HUB_OFFLINE=1" in offline and "TRANSFORMERS_OFFLINE=1" in offline and "SETENC_MODEL=/model" in offline
    load = next(i for i, run in enumerate(runs) if "load_reranker('/model')" in run)
    assert download < load and "ln -s /opt/model /model" in runs[download + 1:load]
    command = entrypoint_command()
    assert command == TIREX_COMMAND
    assert extract_to_be_executed_notebook_from_command_or_none(command) is None  # tira runs it unchanged
    assert text.index("download_model(") < text.index("HF_HUB_OFFLINE=1") < text.index("ENTRYPOINT")


def test_dockerfile_stages_store_the_checkpoint_once_and_pick_the_torch_build():
    """The build stage installs and fetches; the image copies its /opt (environment and checkpoint) once; the last
    stage is the CPU or the CUDA image by the build argument TORCH (cpu by default)."""
    (_, global_args), *rest = stages(DOCKERFILE)
    named = {source.split(" AS ")[1]: (source.split(" AS ")[0], body) for source, body in rest if " AS " in source}
    assert global_args == {"ARG": ["TORCH=cpu"]}
    assert list(named) == ["build", "image", "image-cuda", "image-cpu"]
    assert rest[-1] == ("image-${TORCH}", {})
    build, image = named["build"][1], named["image"][1]
    # the sources (and the shipped checkpoints in them) are copied into the build stage only
    assert all(copy_sources(copy) for copy in build["COPY"])
    assert image["COPY"] == ["--from=build /opt /opt"]
    assert named["image-cpu"][0] == named["image-cuda"][0] == "image"
    cuda = " ".join(json.loads(named["image-cuda"][1]["ENTRYPOINT"][0]))
    assert cuda == TIREX_COMMAND + " --dtype auto"  # the GPU when there is one (the default device), in auto precision
    assert "RUN" not in named["image-cuda"][1]  # a builder that builds every stage builds it for TORCH=cpu too
    torch_run = next(run for run in build["RUN"] if '"$torch"' in run)
    assert "bool(torch.version.cuda) == (sys.argv[1] == 'cuda')" in torch_run and torch_run.endswith('"$TORCH"')
    cpu = " ".join(json.loads(named["image-cpu"][1]["ENTRYPOINT"][0]))
    assert cpu == TIREX_COMMAND  # float32, the published scores


def test_dockerfile_copies_every_file_the_build_needs():
    """What pyproject.toml names (its readme) is copied, and .dockerignore lets every copied path through."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    sources = [source for copy in instructions(DOCKERFILE)["COPY"] for source in copy_sources(copy)]
    assert project["readme"] in sources
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything is left out, then the sources let in
    for source in sources:
        assert (REPO / source).exists(), source
        assert f"!{source}" in ignore, source


def base_python_check(version: tuple[int, int, int]) -> subprocess.CompletedProcess:
    """The Dockerfile's check of the base image's Python, run as if this interpreter were ``version``."""
    check = next(run for run in instructions(DOCKERFILE)["RUN"] if "sys.version_info" in run)
    code = shlex.split(check)[2]
    assert shlex.split(check)[:2] == ["python", "-c"]
    fake = f"import sys; sys.version_info = {version + ('final', 0)!r}\n"
    return subprocess.run([sys.executable, "-c", fake + code], capture_output=True, text=True, timeout=60)


def test_dockerfile_base_python_can_install_the_lock():
    """The base image's Python satisfies every locked package's Requires-Python (read from the installed packages'
    metadata, the lock being this environment's), and the build's own check refuses exactly the versions that
    cannot install the lock."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    needs = {}
    for name in lock_pins():
        try:
            needs[name] = SpecifierSet(distribution(name).metadata.get("Requires-Python") or "")
        except PackageNotFoundError:
            continue
    assert len(needs) >= len(lock_pins()) * 0.9  # the lock is this environment's
    bases = {source.split()[0] for source, _ in stages(DOCKERFILE)[1:] if source.startswith("python:")}
    assert len(bases) == 1, bases
    version = re.fullmatch(r"python:(3\.11\.\d+)-slim-bookworm", bases.pop()).group(1)
    refused = {name: spec for name, spec in needs.items() if not spec.contains(version)}
    assert not refused, f"python:{version} cannot install {refused}"
    # the lowest 3.11 that every locked package accepts, found by trying each patch release
    lowest = next(patch for patch in range(30) if all(spec.contains(f"3.11.{patch}") for spec in needs.values()))
    assert Version(version) >= Version(f"3.11.{lowest}")
    assert base_python_check((3, 11, lowest)).returncode == 0
    if lowest > 0:
        refused = base_python_check((3, 11, lowest - 1))
        assert refused.returncode == 1 and f"needs 3.11.{lowest} or a later 3.11" in refused.stderr, refused
    assert base_python_check((3, 12, 0)).returncode == 1  # the lock's wheels are for 3.11


def test_tira_folder_does_not_shadow_the_tira_client():
    import tira

    assert not (REPO / "tira" / "__init__.py").exists()
    assert REPO / "tira" not in Path(tira.__file__).resolve().parents  # the client, not the repository's folder
    result = subprocess.run([sys.executable, "-c", "import tira.check_format, sys; print(tira.__file__)"],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0 and str(REPO / "tira") not in result.stdout, result


def test_download_model_fetches_the_files_a_checkpoint_needs(tmp_path, monkeypatch, hf_model):
    import huggingface_hub

    from pyterrier_setenc import CheckpointError
    from pyterrier_setenc.tirex import download_model

    calls = []

    def fake_snapshot_download(repo_id, local_dir, allow_patterns):
        calls.append((repo_id, allow_patterns))
        shutil.copytree(source, local_dir)
        return local_dir

    source = hf_model
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    assert download_model("org/model", tmp_path / "model") == tmp_path / "model"
    assert calls[0][0] == "org/model" and "model.safetensors" in calls[0][1] and "config.json" in calls[0][1]
    source = tmp_path / "unsupported"
    source.mkdir()
    (source / "config.json").write_text(json.dumps({"model_type": "t5", "architectures": ["T5Model"]}))
    with pytest.raises(CheckpointError, match="not supported|supported are"):
        download_model("org/t5", tmp_path / "t5")


@pytest.mark.parametrize("name", ["pyterrier_setenc.embedded.SET_ENCODER", "pyterrier_setenc.embedded.MONO"])
def test_download_model_copies_a_shipped_checkpoint_without_network(tmp_path, monkeypatch, no_network, name):
    import huggingface_hub

    from pyterrier_setenc import embedded, load_reranker
    from pyterrier_setenc.tirex import download_model

    def refuse(*args, **kwargs):
        raise AssertionError("the hub was asked for a checkpoint shipped in the package")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    source = {"pyterrier_setenc.embedded.SET_ENCODER": embedded.SET_ENCODER,
              "pyterrier_setenc.embedded.MONO": embedded.MONO}[name]
    target = tmp_path / "model"
    assert download_model(name, target) == target
    # every file of the shipped folder, the model card with its licence included, byte for byte
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in source.iterdir())
    assert "README.md" in {p.name for p in target.iterdir()}
    for file in source.iterdir():
        assert (target / file.name).read_bytes() == file.read_bytes(), file.name
    # the image's check: the copy loads as the same kind of re-ranker
    assert type(load_reranker(str(target), verbose=False)) is type(load_reranker(source, verbose=False))


def test_download_model_copies_a_local_folder_and_refuses_bad_names(tmp_path, monkeypatch, hf_model):
    import huggingface_hub

    from pyterrier_setenc import CheckpointError
    from pyterrier_setenc.tirex import download_model

    def refuse(*args, **kwargs):
        raise AssertionError("the hub was asked for a local folder")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    (hf_model / "optimizer.pt").write_bytes(b"not part of a checkpoint")  # a training leftover stays behind
    try:
        download_model(str(hf_model), tmp_path / "model")
    finally:
        (hf_model / "optimizer.pt").unlink()
    assert (tmp_path / "model" / "config.json").read_bytes() == (hf_model / "config.json").read_bytes()
    assert not (tmp_path / "model" / "optimizer.pt").exists()
    with pytest.raises(ValueError, match=r"ships no checkpoint 'BIG'.*embedded\.SET_ENCODER"):
        download_model("pyterrier_setenc.embedded.BIG", tmp_path / "big")
    with pytest.raises(CheckpointError, match="not a checkpoint folder.*missing"):
        download_model(str(tmp_path / "no-such-folder"), tmp_path / "none")
    with pytest.raises(CheckpointError, match="not a checkpoint folder.*a file"):
        download_model(str(hf_model / "config.json"), tmp_path / "file")
    assert not (tmp_path / "none").exists() and not (tmp_path / "file").exists()
    unsupported = tmp_path / "t5"
    unsupported.mkdir()
    (unsupported / "config.json").write_text(json.dumps({"model_type": "t5", "architectures": ["T5Model"]}))
    with pytest.raises(CheckpointError, match="not supported|supported are"):
        download_model(str(unsupported), tmp_path / "t5-copy")
    assert not (tmp_path / "t5-copy").exists()  # refused before anything is copied


def test_download_model_names_a_hub_failure(tmp_path, monkeypatch):
    import huggingface_hub

    from pyterrier_setenc import CheckpointError
    from pyterrier_setenc.tirex import download_model

    def offline(*args, **kwargs):
        raise OSError("connection refused")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(CheckpointError, match="'org/missing' is neither a local folder.*connection refused"):
        download_model("org/missing", tmp_path / "model")


def reranker_scores(model: Path, rerank_input: Path, **options) -> pd.DataFrame:
    """Scores of the re-ranker :func:`pyterrier_setenc.load_reranker` fits to ``model``, built with ``options``, on
    the candidates as tira's loader reads them."""
    from pyterrier_setenc import load_reranker

    frame = all_lines_to_pandas(rerank_input, load_default_text=True)
    scored = load_reranker(str(model), verbose=False, **options)(frame[["qid", "query", "docno", "text"]])
    return scored[["qid", "docno", "score"]]


@pytest.mark.parametrize("option, settings", [(["--int8"], {"int8": True, "device": "cpu"}),
                                              (["--dtype", "bfloat16"], {"dtype": "bfloat16"})])
def test_numerics_options_reach_the_reranker(tmp_path, hf_model, option, settings):
    """``--int8`` / ``--dtype bfloat16`` give the scores of the re-ranker built with int8=True / dtype=bfloat16
    (the golden values), which differ from float32's, so the option was not dropped on the way."""
    assert main(["--input", str(SAMPLE.parent), "--output", str(tmp_path), "--model", str(hf_model), "--tag", "t",
                 *option]) == 0
    run = read_run(tmp_path, ONE_QUERY)
    assert_run_matches(run, reranker_scores(hf_model, SAMPLE, **settings), "t", hf_model)
    float32 = reranker_scores(hf_model, SAMPLE).set_index("docno")["score"]
    assert (run.set_index("docno")["score"].astype(float) - float32.loc[run["docno"]]).abs().max() > 1e-4


def test_numerics_options_reach_the_ray_actors(tmp_path, monkeypatch, hf_model):
    """With --ray-workers the options go to the actors' re-rankers (a stand-in pool scores in this process). int8
    scales activations per matrix product, so the golden re-ranker has the same batch size."""
    import pyterrier_setenc.ray_rerank as ray_rerank

    class InProcessPool(pt.Transformer):
        def __init__(self, model, **options):
            self.options = options
            self.reranker = __import__("pyterrier_setenc").load_reranker(model, **{
                key: value for key, value in options.items() if key not in ("workers", "address", "shard_dir")})

        def transform(self, inp):
            return self.reranker(inp)

    monkeypatch.setattr(ray_rerank, "RayReRanker", InProcessPool)
    assert main(["--input", str(SAMPLE.parent), "--output", str(tmp_path), "--model", str(hf_model), "--tag", "t",
                 "--int8", "--batch-size", "4", "--ray-workers", "2"]) == 0
    assert_run_matches(read_run(tmp_path, ONE_QUERY), reranker_scores(hf_model, SAMPLE, int8=True, batch_size=4), "t",
                       hf_model)


@pytest.mark.parametrize("model, option, phrase", [
    ("listconranker", ["--int8"], "--int8 quantizes cross-encoders only; {model} is a ListConRanker checkpoint"),
    ("fake-listconranker", ["--int8"], "--int8 quantizes cross-encoders only; {model} is a ListConRanker checkpoint"),
    ("hf", ["--int8", "--dtype", "bfloat16"], "--int8 quantizes float32 models; it cannot go with --dtype bfloat16"),
])
def test_numerics_options_a_model_cannot_take_are_refused(tmp_path, capsys, hf_model, model, option, phrase):
    """Refused with the option and the model named, before the model loads (a folder that only looks like a
    ListConRanker is refused the same way, not with a loading error), leaving an earlier run.txt as it was."""
    if model == "fake-listconranker":
        path = tmp_path / "fake-listconranker"
        path.mkdir()
        (path / "list_transformer.pt").write_bytes(b"")
    else:
        path = hf_model if model == "hf" else FIXTURES / model
    output = tmp_path / "out"
    output.mkdir()
    (output / "run.txt").write_text("1 Q0 d 1 1.0 earlier\n")
    assert main(["--input", str(SAMPLE.parent), "--output", str(output), "--model", str(path), *option]) == 1
    message = capsys.readouterr().err
    assert phrase.format(model=path) in message, message
    assert "Traceback" not in message
    assert os.listdir(output) == ["run.txt"] and (output / "run.txt").read_text() == "1 Q0 d 1 1.0 earlier\n"


def test_numerics_options_for_a_built_reranker_are_refused(tmp_path):
    from pyterrier_setenc.settings import RerankerSettings, SettingsError

    with pytest.raises(SettingsError, match="apply to a checkpoint"):
        rerank_file(SAMPLE, tmp_path, LengthScorer(), tag="t", settings=RerankerSettings(int8=True))
    assert not (tmp_path / "run.txt").exists()
