"""The I/O module (``pyterrier_setenc.io``): readers and writers of the TIREx, TREC and JSONL files.

Golden values come from independent readers: the ``tira`` client's loader (``all_lines_to_pandas``) and run
normalisation (``normalize_run``) for TIREx files, ``ir_measures``' TREC readers for qrels and runs, and values
written out by hand from the files' text for topics and documents. Every bad-input row asserts the error type and
that its message names the file, the line and the problem.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import ir_measures
import numpy as np
import pandas as pd
import pytest
from tira.io_utils import all_lines_to_pandas
from tira.third_party_integrations import normalize_run as tira_normalize_run

from pyterrier_setenc.io import (
    InputFileError,
    document_text,
    normalize_run,
    read_docs,
    read_qrels,
    read_rerank,
    read_run,
    read_topics,
    write_rerank,
    write_run,
)

from builders import DATA, SLICE, requires_data

SAMPLE = SLICE / "tirex-sample" / "rerank.jsonl.gz"
LINE = {"qid": "1", "query": "wing flutter", "docno": "d1", "text": "a wing"}


def write_text(path: Path, text: str) -> Path:
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as file:
            file.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, rows: list) -> Path:
    return write_text(path, "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))


# --- rerank.jsonl -------------------------------------------------------------------------------------------------

def test_reader_agrees_with_the_tira_loader():
    ours = read_rerank(SAMPLE)
    theirs = all_lines_to_pandas(SAMPLE, load_default_text=True)
    columns = ["qid", "query", "docno", "text", "score"]
    pd.testing.assert_frame_equal(ours[columns], theirs[columns])
    assert (ours["rank"] + 1).tolist() == theirs["rank"].tolist()  # PyTerrier's ranks: 0-based
    assert ours["docno"].iloc[0] == "8172" and ours["line"].tolist() == list(range(1, 11))
    assert "original_document" not in ours.columns


def test_integer_ids_are_read_in_decimal_and_strings_as_they_are(tmp_path):
    """The id rule: a JSON integer is its decimal text (as tira's ``str()`` gives it), a string stays as written."""
    path = jsonl(tmp_path / "rerank.jsonl", [{**LINE, "qid": 7, "docno": -12}, {**LINE, "qid": 7, "docno": "007"},
                                             {**LINE, "qid": "08", "docno": 12345678901234567890}])
    frame = read_rerank(path)
    assert frame["qid"].tolist() == ["7", "7", "08"]
    assert frame["docno"].tolist() == ["-12", "007", "12345678901234567890"]
    theirs = all_lines_to_pandas(path, load_default_text=True)  # tira agrees wherever the rule accepts an id
    assert frame["docno"].tolist() == theirs["docno"].tolist()


# (field, JSON value) -> phrase of the message; tira's loader would write these as True, 1.0, [1], None, ...
BAD_IDS = [
    ("docno", "true", "got true"), ("docno", "1.0", "got 1.0"), ("docno", "[1]", "got a JSON array"),
    ("qid", "null", "got null"), ("qid", '{"id": 1}', "got a JSON object"), ("docno", '""', "empty"),
    ("docno", '"a b"', "whitespace"), ("qid", '"1\\t"', "whitespace"), ("docno", '"d\\ud800"', "lone surrogate"),
]


@pytest.mark.parametrize("field,value,phrase", BAD_IDS)
def test_ids_that_are_not_strings_or_integers_are_refused(tmp_path, field, value, phrase):
    fields = {**{key: json.dumps(text) for key, text in LINE.items()}, field: value}
    line = "{" + ", ".join(f'"{key}": {text}' for key, text in fields.items()) + "}"
    path = jsonl(tmp_path / "rerank.jsonl.gz", [LINE, line])
    with pytest.raises(InputFileError) as caught:
        read_rerank(path)
    message = str(caught.value)
    assert message.startswith(f"{path}, line 2: {field} ") and phrase in message, message


BAD_RERANK_LINES = [
    ('{"qid": "1", "qid": "2", "query": "q", "docno": "d2", "text": "t"}', "occur more than once in one object"),
    ({**LINE, "docno": "d2", "score": float("nan")}, "score must be a finite number"),
    ({**LINE, "docno": "d2", "rank": True}, "rank must be an integer"),
    ({**LINE, "docno": "d2", "rank": 1.5}, "rank must be an integer"),
    ({**LINE, "docno": "d2", "query": 3}, "query 3 is missing, empty or not a string"),
    ({**LINE, "docno": "d2", "text": ["a"]}, "text must be a string, got list"),
    ('"just a string"', "not a JSON object"),
    ('{"qid": "1"', "not valid JSON"),
]


@pytest.mark.parametrize("line,phrase", BAD_RERANK_LINES)
def test_bad_rerank_lines_name_the_line(tmp_path, line, phrase):
    path = jsonl(tmp_path / "rerank.jsonl", [LINE, "", line])  # a blank line still counts
    with pytest.raises(InputFileError, match=f"^{path}, line 3: .*{phrase}".replace("(", "\\(").replace(")", "\\)")):
        read_rerank(path)


def test_lines_that_are_not_utf8_are_named(tmp_path):
    path = tmp_path / "rerank.jsonl"
    path.write_bytes(json.dumps(LINE).encode() + b"\n" + json.dumps({**LINE, "docno": "d2"}).encode()
                     + b"\n" + b'{"qid": "1", "query": "caf\xe9"}\n')
    with pytest.raises(InputFileError, match=f"^{path}, line 3: not UTF-8 text"):
        read_rerank(path)


def test_missing_files_and_folders_are_named(tmp_path):
    for reader in (read_rerank, read_qrels, read_run, read_topics, read_docs):
        with pytest.raises(InputFileError, match=f"^{tmp_path / 'nothing.txt'} does not exist$"):
            reader(tmp_path / "nothing.txt")
        with pytest.raises(InputFileError, match=f"^{tmp_path} is a folder, not a file$"):
            reader(tmp_path)


# --- qrels, runs, topics -------------------------------------------------------------------------------------------

def test_qrels_agree_with_ir_measures():
    path = SLICE / "trec-dl-2019" / "qrels.txt"
    ours = read_qrels(path)
    theirs = pd.DataFrame(ir_measures.read_trec_qrels(str(path)))
    assert ours.columns.tolist() == ["qid", "docno", "label"] and ours["label"].dtype == "int64"
    assert ours["qid"].tolist() == theirs["query_id"].tolist()
    assert ours["docno"].tolist() == theirs["doc_id"].tolist()
    assert ours["label"].tolist() == theirs["relevance"].tolist()


def test_runs_agree_with_ir_measures_and_round_trip(tmp_path):
    path = write_text(tmp_path / "a.run", "q1 Q0 d3 1 2.5 x\n\nq1 Q0 d1 2 -1e-3 x\nq2 Q0 d1 1 7 x\n")
    ours = read_run(path)
    theirs = pd.DataFrame(ir_measures.read_trec_run(str(path)))
    assert ours["qid"].tolist() == theirs["query_id"].tolist() == ["q1", "q1", "q2"]
    assert ours["docno"].tolist() == theirs["doc_id"].tolist()
    assert ours["score"].tolist() == theirs["score"].tolist() == [2.5, -0.001, 7.0]
    assert ours["rank"].tolist() == [0, 1, 0]  # PyTerrier's ranks: 0-based
    written = write_run(tmp_path / "b.run", ours, "y")
    assert written.read_text() == "q1 Q0 d3 1 2.5 y\nq1 Q0 d1 2 -0.001 y\nq2 Q0 d1 1 7.0 y\n"  # by hand
    pd.testing.assert_frame_equal(read_run(written), ours)


def test_one_rank_rule_for_runs_read_and_written(tmp_path):
    """Ties by descending docno (trec_eval's and TIREx's order), whatever the file's ranks and line order say;
    queries by numeric qid. Expected orders written by hand."""
    path = write_text(tmp_path / "ties.run", "10 Q0 a 1 1.0 x\n10 Q0 c 2 1.0 x\n9 Q0 b 7 0.5 x\n10 Q0 b 3 2.0 x\n")
    run = read_run(path)
    assert list(zip(run["qid"], run["docno"], run["rank"])) == [("9", "b", 0), ("10", "b", 0), ("10", "c", 1),
                                                                ("10", "a", 2)]
    written = write_run(tmp_path / "out.run", run.sample(frac=1, random_state=3), "t")
    assert written.read_text() == "9 Q0 b 1 0.5 t\n10 Q0 b 1 2.0 t\n10 Q0 c 2 1.0 t\n10 Q0 a 3 1.0 t\n"
    pd.testing.assert_frame_equal(read_run(written), run)


def test_rerank_files_keep_the_first_stage_order(tmp_path):
    rows = [{"qid": "q2", "query": "b", "docno": "x", "text": "t", "rank": 2, "score": 1.0},
            {"qid": "q1", "query": "a", "docno": "y", "text": "t", "rank": 1, "score": 5.0},
            {"qid": "q2", "query": "b", "docno": "z", "text": "t", "rank": 1, "score": 3.0}]
    frame = read_rerank(jsonl(tmp_path / "r.jsonl", rows))
    assert list(zip(frame["qid"], frame["docno"], frame["rank"])) == [("q2", "z", 0), ("q2", "x", 1), ("q1", "y", 0)]
    unranked = read_rerank(jsonl(tmp_path / "u.jsonl", [{k: v for k, v in row.items() if k not in ("rank", "score")}
                                                         for row in rows]))
    assert list(zip(unranked["docno"], unranked["rank"], unranked["score"])) == [("x", 0, -1.0), ("z", 1, -2.0),
                                                                                  ("y", 0, -1.0)]
    written = write_rerank(tmp_path / "w.rerank.jsonl.gz", rows)
    again = read_rerank(written)
    pd.testing.assert_frame_equal(again.drop(columns="line"), frame.drop(columns="line"))
    with pytest.raises(ValueError, match="row 1 .* misses \\['text'\\]"):
        write_rerank(tmp_path / "bad.jsonl", [{"qid": "1", "query": "q", "docno": "d"}])


def test_topics_as_written_in_the_file(tmp_path):
    path = write_text(tmp_path / "topics.tsv", "264014\thow long is life cycle of flea \n\n104861\ta\tb\r\n")
    frame = read_topics(path)
    assert frame.values.tolist() == [["264014", "how long is life cycle of flea"], ["104861", "a\tb"]]
    assert read_topics(SLICE / "trec-dl-2019" / "topics.tsv").shape == (10, 2)
    (tmp_path / "bom.tsv").write_bytes("\ufeff7\tq\n".encode("utf-8"))  # a byte-order mark is not part of the qid
    assert read_topics(tmp_path / "bom.tsv")["qid"].tolist() == ["7"]


BAD_TEXT_FILES = [  # reader, content, message (after "FILE, line N: " or "FILE: ")
    (read_qrels, "1 0 d1 1\n1 0 d2\n", "line 2: a line has 4 fields (qid 0 docno label), this one 3"),
    (read_qrels, "1 0 d1 1\n1 0 d2 high\n", "line 2: label 'high' is not an integer"),
    (read_qrels, "1 0 d1 1\n1 0 d1 2\n", "docno 'd1' for qid '1' occurs more than once (lines [1, 2])"),
    (read_qrels, "\n \n", "is empty, there are no judgments"),
    (read_run, "1 Q0 d1 1 2.0 t\n1 Q0 d2 1 nan t\n", "line 2: score 'nan' is not a finite number"),
    (read_run, "1 Q0 d1 1.5 2.0 t\n", "line 1: rank '1.5' is not an integer"),
    (read_run, "1 Q0 d1 1 2.0\n", "line 1: a line has 6 fields (qid Q0 docno rank score tag), this one 5"),
    (read_run, "1 Q0 d1 1 2 t\n1 Q0 d1 2 1 t\n", "docno 'd1' for qid '1' occurs more than once in the run"),
    (read_topics, "1\tq\n2 q\n", "line 2: a topics line is qid<TAB>query, this one has no tab"),
    (read_topics, "1\tq\n2\t \n", "line 2: the query of qid '2' is empty"),
    (read_topics, "1\tq\n1\tr\n", "qid '1' occurs more than once (lines [1, 2])"),
    (read_topics, "a b\tq\n", "line 1: qid 'a b' is empty or holds whitespace"),
]


@pytest.mark.parametrize("reader,content,message", BAD_TEXT_FILES)
def test_bad_text_files_name_the_file_and_line(tmp_path, reader, content, message):
    path = write_text(tmp_path / "file.txt", content)
    with pytest.raises(InputFileError) as caught:
        reader(path)
    text = str(caught.value)
    assert text.startswith(f"{path}, {message}" if message.startswith("line") else f"{path}: {message}"), text


def test_truncated_gzip_is_named(tmp_path):
    whole = jsonl(tmp_path / "whole.jsonl.gz", [{**LINE, "docno": f"d{i}", "text": f"text {i} " * 50}
                                                for i in range(200)]).read_bytes()
    path = tmp_path / "docs.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputFileError, match=f"^{path}: cannot be read to its end, the gzip file is truncated"):
        read_docs(path)


# --- documents -----------------------------------------------------------------------------------------------------

def test_document_text_joins_title_and_text_once():
    # Cranfield document 1 (its abstract restates the title) and two made-up cases
    title = "experimental investigation of the aerodynamics of a wing in a slipstream ."
    text = title + " an experimental study of a wing in a propeller slipstream was made"
    assert document_text(title, text) == text
    assert document_text("A title", "a body") == "A title a body"
    assert document_text(None, "a body") == document_text("", "a body") == "a body"
    assert document_text("A title", "") == "A title"


def test_docs_reader(tmp_path):
    path = jsonl(tmp_path / "docs.jsonl.gz", [{"docno": "1", "title": "T", "text": "body"}, {"docno": 2, "text": "x"},
                                              {"docno": "3", "title": "", "text": ""}])
    assert read_docs(path) == {"1": "T body", "2": "x", "3": ""}
    assert read_docs(path, wanted=["2", "9"]) == {"2": "x"}
    repeated = jsonl(tmp_path / "again.jsonl", [{"docno": "1", "text": "a"}, {"docno": 1, "text": "b"}])
    with pytest.raises(InputFileError, match="docno '1' occurs more than once \\(lines \\[1, 2\\]\\)"):
        read_docs(repeated)
    untyped = jsonl(tmp_path / "untyped.jsonl", [{"docno": "1", "text": 5}])
    with pytest.raises(InputFileError, match="line 1: text and title must be strings"):
        read_docs(untyped)


def test_ir_datasets_documents_follow_the_same_rule():
    from ir_datasets.datasets.cord19 import Cord19Doc
    from ir_datasets.datasets.cranfield import CranfieldDoc

    from pyterrier_setenc.io import irds_document_text

    joined = CranfieldDoc("1", "A title", "a body", "an author", "a journal")
    assert irds_document_text(joined) == joined.default_text() == "A title a body"  # ir_datasets' own join
    title = "experimental investigation of the aerodynamics of a wing in a slipstream ."
    restated = CranfieldDoc("1", title, title + " an experimental study", "", "")
    assert irds_document_text(restated) == title + " an experimental study"  # the title once, as read_docs has it
    no_text_field = Cord19Doc("c1", "A title", "doi", "2020", "an abstract")
    assert irds_document_text(no_text_field) == no_text_field.default_text()


@requires_data
def test_the_offline_data_passes_the_strict_readers():
    """Every format of ``../shared/data`` read strictly; the counts are the README's."""
    assert len(read_topics(DATA / "trec-dl-2019" / "topics.tsv")) == 43
    assert read_qrels(DATA / "cranfield" / "qrels.txt")["label"].min() == -1  # Cranfield's codes are kept
    assert read_rerank(DATA / "trec-dl-2019" / "bm25-top100.rerank.jsonl.gz")["qid"].nunique() == 43
    assert read_run(DATA / "trec-dl-2019" / "rankgpt35-bm25-top100.run")["qid"].nunique() == 43
    docs = read_docs(DATA / "cranfield" / "docs.jsonl.gz")
    assert len(docs) == 1400 and docs["1"].startswith("experimental investigation of the aerodynamics of a wing")
    assert docs["1"].count("experimental investigation of the aerodynamics") == 1


# --- writing runs --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("qids", [["2", "10", "1"], ["q2", "q10", "q1"]])
def test_normalisation_matches_tira(qids):
    """Ordering, ranks and the 1,000-passage cut agree with tira's ``normalize_run`` (with ties in the scores)."""
    rng = np.random.default_rng(0)
    sizes = [1200, 5, 1000]
    frame = pd.DataFrame({
        "qid": np.repeat(qids, sizes),
        "docno": [f"d{i}" for size in sizes for i in range(size)],
        "score": np.round(rng.normal(size=sum(sizes)), 1),  # many ties: broken by docno, descending
    })
    ours = normalize_run(frame, "tag", 1000)  # TIREx's depth
    golden = tira_normalize_run(frame.copy(), "tag")
    assert ours.groupby("qid", sort=False).size().to_dict() == {qids[2]: 1000, qids[1]: 5, qids[0]: 1000}
    assert ours["qid"].tolist() == golden["qid"].astype(str).tolist()
    for column in ("docno", "rank", "score"):
        assert ours[column].tolist() == golden[column].tolist()


def test_normalisation_keeps_qid_text():
    frame = pd.DataFrame({"qid": ["010", "010", "9"], "docno": ["a", "b", "c"], "score": [1.0, 2.0, 0.5]})
    run = normalize_run(frame, "t")
    assert run.values.tolist() == [["9", "Q0", "c", 1, 0.5, "t"], ["010", "Q0", "b", 1, 2.0, "t"],
                                   ["010", "Q0", "a", 2, 1.0, "t"]]


BAD_RUNS = [  # frame changes, tag -> message
    ({"score": [1.0, float("nan")]}, "t", "1 score(s) are not finite, e.g. nan for qid='1' docno='b'"),
    ({"docno": ["a", "b c"]}, "t", "docno 'b c' is empty or holds whitespace"),
    ({"qid": ["1", ""]}, "t", "qid '' is empty or holds whitespace"),
    ({"qid": [True, True]}, "t", "is a bool, not a string"),
    ({"docno": pd.Series(["a", 1.5], dtype=object)}, "t", "docno 1.5 is a float, not a string"),
    ({}, "my tag", "tag 'my tag' must be non-empty and without whitespace"),
]


@pytest.mark.parametrize("changes,tag,message", BAD_RUNS)
def test_bad_runs_are_refused_and_the_earlier_file_kept(tmp_path, changes, tag, message):
    target = write_text(tmp_path / "x.run", "earlier\n")
    frame = pd.DataFrame({"qid": ["1", "1"], "docno": ["a", "b"], "score": [1.0, 2.0], **changes})
    with pytest.raises(ValueError) as caught:
        write_run(target, frame, tag)
    assert message in str(caught.value)
    assert os.listdir(tmp_path) == ["x.run"] and target.read_text() == "earlier\n"


def test_integer_ids_of_a_frame_are_written_in_decimal(tmp_path):
    frame = pd.DataFrame({"qid": np.array([3, 3]), "docno": [10, "x"], "score": [1.0, 2.0]})
    assert write_run(tmp_path / "r", frame, "t").read_text() == "3 Q0 x 1 2.0 t\n3 Q0 10 2 1.0 t\n"
