"""Reading and writing the project's file formats, strictly: every problem in a file is an :class:`InputFileError`
that names the file, the line and what is wrong with it; runs are written atomically.

=======================  =====================================================  ==================================
format                   lines                                                  reader returns
=======================  =====================================================  ==================================
``rerank.jsonl(.gz)``    JSON objects with ``qid``, ``query``, ``docno``,       :func:`read_rerank`: a result frame
                         ``text`` (``rank``, ``score`` optional)
TREC qrels               ``qid 0 docno label``                                  :func:`read_qrels`: a frame
TREC run                 ``qid Q0 docno rank score tag``                        :func:`read_run`: a result frame;
                                                                                :func:`write_run` writes one
topics (``.tsv``,        ``qid<TAB>query``, or JSON objects with ``qid``,       :func:`read_topics`: a frame
``.jsonl(.gz)``)         ``query`` (or ``text``)
docs (``.jsonl(.gz)``,   JSON objects with ``docno``, ``text`` (``title``),     :func:`read_docs`: docno -> text
``.tsv(.gz)``)           or ``docno<TAB>text``
=======================  =====================================================  ==================================

This module is the project's only reader and writer of these formats: the TIREx entry point, Ray, ``pipelines``
(inputs, written runs and the stored model outputs it reuses), ``training`` and the benchmarks all use it.

**One convention for rankings.** Every result frame handed out (:func:`read_run`, :func:`read_rerank`) follows
PyTerrier's: ``rank`` is 0-based. A run is ranked by one rule, :func:`rank_results`: by descending score, ties by
descending docno (the order ``trec_eval`` and TIREx give ties), and it is written in that order, so a run read back
from :func:`write_run` is the frame that was written. A re-rank file keeps its first stage's order (its ``rank``
field, else the order of its lines).

Files ending in ``.gz`` are read as gzip, all files as UTF-8; blank lines are skipped. A JSON string with a lone
surrogate escape (``"\\ud800"``) is refused: it is not Unicode text, no tokenizer encodes it and pandas' string
columns cannot hold it.

Identifiers (``qid``, ``docno``) follow one rule in every reader: a JSON string, or a JSON integer written in
decimal (TIREx's own files have integer docnos: ``8172`` is read as ``"8172"``), that is non-empty, holds no
whitespace and can be written as UTF-8 (a TREC run cannot hold anything else). JSON ``true``, ``1.0``, ``[1]``,
``null`` and objects are refused, not converted: ``str()`` would turn them into ``True``, ``1.0`` and ``[1]``, ids
that match nothing in the qrels.

>>> import tempfile
>>> from pyterrier_setenc.io import read_rerank, read_run, write_run
>>> candidates = read_rerank("tests/data/trec-dl-2019/bm25-top100.rerank.jsonl.gz")  # the repository's data slice
>>> path = write_run(f"{tempfile.mkdtemp()}/bm25.run", candidates, tag="bm25")
>>> open(path).readline().split()  # queries by numeric qid, passages by descending score
['104861', 'Q0', '459676', '1', '15.396900177001953', 'bm25']
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_write

RERANK_FILES = ("rerank.jsonl.gz", "rerank.jsonl")
RERANK_FIELDS = ("qid", "query", "docno", "text")
TIREX_ONLY_FIELDS = ("original_query", "original_document")  # TIREx's copies of the query and passage records
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
RUN_COLUMNS = ["qid", "Q0", "docno", "rank", "score", "tag"]


class InputFileError(ValueError):
    """A file that is missing, cannot be read or breaks its format; the message names the file, the line and the
    problem."""


class MissingInputFileError(InputFileError, FileNotFoundError):
    """An input file that does not exist (both an :class:`InputFileError` and a :class:`FileNotFoundError`)."""


# --- lines ----------------------------------------------------------------------------------------------------------

def numbered_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """The non-blank lines of a text file (gzip when its name ends in ``.gz``) with their 1-based numbers, without
    the line break. Missing files, unreadable files, truncated or corrupt gzip and lines that are not UTF-8 are an
    :class:`InputFileError` naming the file (and the line)."""
    path = Path(path)
    if not path.exists():
        raise MissingInputFileError(f"{path} does not exist")
    if path.is_dir():
        raise InputFileError(f"{path} is a folder, not a file")
    try:
        with (gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")) as file:
            for number, raw in enumerate(file, start=1):
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")  # BOM dropped
                except UnicodeDecodeError as error:
                    raise InputFileError(f"{path}, line {number}: not UTF-8 text ({error})") from None
                if line.strip():
                    yield number, line
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise InputFileError(f"{path}: cannot be read to its end, the gzip file is truncated or corrupt "
                             f"({type(error).__name__}: {error})") from None
    except OSError as error:
        raise InputFileError(f"{path}: cannot be read ({type(error).__name__}: {error.strerror or error})") from None


def _refuse_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"the key(s) {repeated} occur more than once in one object")
    return dict(pairs)


def json_objects(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """The objects of a JSON-lines file with their line numbers; a line that is not valid JSON, not an object or
    repeats a key is an :class:`InputFileError`."""
    for number, line in numbered_lines(path):
        where = f"{path}, line {number}"
        try:
            value = json.loads(line, object_pairs_hook=_refuse_duplicate_keys)
        except ValueError as error:  # json.JSONDecodeError and repeated keys
            raise InputFileError(f"{where}: not valid JSON ({error})") from None
        if not isinstance(value, dict):
            raise InputFileError(f"{where}: not a JSON object: {line.strip()[:80]!r}")
        if SURROGATE_ESCAPE.search(line):  # a pair is one character; a lone half is not text
            field = _unencodable_field(value)
            if field:
                raise InputFileError(f"{where}: {field} holds a lone surrogate (a \\ud800-\\udfff escape without "
                                     "its pair), which is not Unicode text and cannot be encoded")
        yield number, value


def _unencodable_field(value: object, name: str = "") -> str | None:
    """The name of the first string in ``value`` (a parsed JSON value) that cannot be encoded as UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return name or "a key"
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _unencodable_field(key, f"the key {key!r}") if isinstance(key, str) else None
        found = found or _unencodable_field(item, f"{name}.{key}" if name else str(key))
        if found:
            return found
    return None


# --- identifiers ----------------------------------------------------------------------------------------------------

def id_problem(value: object) -> str | None:
    """Why ``value`` (a string as it will be written) is not a valid qid or docno, or ``None`` when it is."""
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not a string"
    if value == "" or re.search(r"\s", value):
        return "is empty or holds whitespace, which a TREC file cannot hold"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "holds a lone surrogate, which cannot be written as UTF-8"
    return None


def read_id(value: object, name: str, where: str) -> str:
    """A qid or docno read from JSON by the module's rule: a string, or an integer written in decimal."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    elif not isinstance(value, str):
        kind = "null" if value is None else json.dumps(value)[:40] if isinstance(value, (bool, float)) \
            else f"a JSON {'array' if isinstance(value, list) else 'object'}"
        raise InputFileError(f"{where}: {name} must be a JSON string or integer, got {kind}")
    problem = id_problem(value)
    if problem:
        raise InputFileError(f"{where}: {name} {value!r} {problem}")
    return value


def _text_id(value: str, name: str, where: str) -> str:
    problem = id_problem(value)
    if problem:
        raise InputFileError(f"{where}: {name} {value!r} {problem}")
    return value


def _refuse_repeats(frame: pd.DataFrame, keys: list[str], path: Path, what: str) -> None:
    repeated = frame[frame.duplicated(keys, keep=False)]
    if len(repeated):
        first = repeated.iloc[0]
        same = (repeated[keys] == first[keys]).all(axis=1)
        named = " for ".join(f"{key} {first[key]!r}" for key in reversed(keys))
        raise InputFileError(f"{path}: {named} occurs more than once {what}(lines {repeated[same]['line'].tolist()})")


# --- readers ---------------------------------------------------------------------------------------------------------

def find_rerank(location: str | os.PathLike) -> Path:
    """``location`` itself when it is a file, else its ``rerank.jsonl.gz`` (preferred) or ``rerank.jsonl``."""
    location = Path(location)
    if location.is_file():
        return location
    if not location.is_dir():
        raise InputFileError(f"input {location} does not exist")
    for name in RERANK_FILES:
        if (location / name).is_file():
            return location / name
    found = sorted(path.name for path in location.iterdir())
    raise InputFileError(f"input folder {location} has no {' or '.join(RERANK_FILES)} "
                         f"(it holds: {found or 'nothing'})")


def read_rerank(path: str | os.PathLike) -> pd.DataFrame:
    """The candidates of a TIREx ``rerank.jsonl(.gz)`` as a result frame in first-stage order: ``qid``, ``query``,
    ``docno``, ``text`` (a string, or ``None`` for JSON ``null``), ``rank`` (0-based: the order of the lines' 1-based
    ``rank`` fields, or of the lines themselves when a line has none), ``score`` (the lines' ``score``, or minus the
    1-based rank when a line has none), the lines' other fields (TIREx's ``original_query``/``original_document``
    dropped) and the ``line`` number. Queries keep the order in which they first occur.

    Every line needs the four fields; ids follow the module's rule; ``query`` is a non-empty string; ``rank``, when
    given, an integer and ``score`` a finite number; a docno occurs once in a query's list and a qid has one query
    text. Anything else is an :class:`InputFileError` that names the file and the line(s).

    >>> read_rerank("tests/data/tirex-sample/rerank.jsonl.gz")[["qid", "docno", "rank", "line"]].head(1)
      qid docno  rank  line
    0   1  8172     0     1
    """
    path = Path(path)
    rows = []
    for number, row in json_objects(path):
        where = f"{path}, line {number}"
        for name in TIREX_ONLY_FIELDS:
            row.pop(name, None)
        missing = [name for name in RERANK_FIELDS if name not in row]
        if missing:
            raise InputFileError(f"{where}: missing field(s) {missing}; every line needs {list(RERANK_FIELDS)}, "
                                 f"found {sorted(row)}")
        row["qid"] = read_id(row["qid"], "qid", where)
        row["docno"] = read_id(row["docno"], "docno", where)
        if not isinstance(row["query"], str) or not row["query"].strip():
            raise InputFileError(f"{where}: query {row['query']!r} is missing, empty or not a string")
        if row["text"] is not None and not isinstance(row["text"], str):
            raise InputFileError(f"{where}: text must be a string, got {type(row['text']).__name__}")
        rank, score = row.get("rank"), row.get("score")
        if rank is not None and (not isinstance(rank, int) or isinstance(rank, bool)):
            raise InputFileError(f"{where}: rank must be an integer, got {json.dumps(rank)[:40]}")
        if score is not None and (not isinstance(score, (int, float)) or isinstance(score, bool)
                                  or not math.isfinite(score)):
            raise InputFileError(f"{where}: score must be a finite number, got {json.dumps(score)[:40]}")
        row["line"] = number
        rows.append(row)
    if not rows:
        raise InputFileError(f"{path}: is empty, there are no candidates to re-rank")
    frame = pd.DataFrame(rows)
    _refuse_repeats(frame, ["qid", "docno"], path, "")
    queries = frame.groupby("qid", sort=False)["query"].nunique()
    if (queries > 1).any():
        qid = queries[queries > 1].index[0]
        raise InputFileError(f"{path}: qid {qid!r} has more than one query text "
                             f"(lines {frame[frame['qid'] == qid]['line'].tolist()[:10]})")
    return _first_stage_order(frame)


def _first_stage_order(frame: pd.DataFrame) -> pd.DataFrame:
    """A re-rank file's rows by query (first occurrence), then by 1-based ``rank`` (all lines have one) or line;
    ``rank`` made 0-based and ``score`` filled in (minus the 1-based rank) when a line has none."""
    ranked = "rank" in frame.columns and not frame["rank"].isna().any()
    position = frame["rank"] if ranked else frame.groupby("qid", sort=False).cumcount()
    order = np.lexsort((position.to_numpy(), pd.factorize(frame["qid"])[0]))
    frame = frame.iloc[order].reset_index(drop=True)
    frame["rank"] = frame.groupby("qid", sort=False).cumcount().astype("int64")
    if "score" not in frame.columns or frame["score"].isna().any():
        frame["score"] = -(frame["rank"] + 1).astype("float64")
    frame["score"] = frame["score"].astype("float64")
    return frame


def write_rerank(path: str | os.PathLike, rows: Iterable[Mapping[str, object]]) -> Path:
    """Writes candidate rows (``qid``, ``query``, ``docno``, ``text`` and any further fields, e.g. ``rank`` and
    ``score``) as a ``rerank.jsonl`` file, gzip when ``path`` ends in ``.gz`` (with no timestamp, so equal rows give
    equal bytes), atomically; :func:`read_rerank` reads it back. A row without the four fields is a ValueError.

    >>> import tempfile
    >>> path = write_rerank(f"{tempfile.mkdtemp()}/lists.rerank.jsonl.gz",
    ...                     [{"qid": "1", "query": "q", "docno": "d", "text": "t"}])
    >>> read_rerank(path)[["qid", "docno", "rank", "score"]].values.tolist()
    [['1', 'd', 0, -1.0]]
    """
    lines = []
    for number, row in enumerate(rows, start=1):
        missing = [name for name in RERANK_FIELDS if name not in row]
        if missing:
            raise ValueError(f"row {number} of {path} misses {missing}; a re-rank file needs {list(RERANK_FIELDS)}")
        lines.append((json.dumps(dict(row), ensure_ascii=False) + "\n").encode("utf-8"))

    def write(file) -> None:
        if str(path).endswith(".gz"):
            with gzip.GzipFile(fileobj=file, mode="wb", mtime=0) as packed:
                packed.writelines(lines)
        else:
            file.writelines(lines)

    return atomic_write(path, write, binary=True)


def candidate_lists(candidates: pd.DataFrame) -> tuple[dict[str, str], dict[str, list[str]], dict[str, str]]:
    """:func:`read_rerank`'s frame as plain mappings: queries ``{qid: query}``, the docnos of each qid in
    first-stage order and texts ``{docno: text}``, qids and docnos in the order they first occur.

    >>> candidates = read_rerank("tests/data/trec-dl-2019/bm25-top100.rerank.jsonl.gz")
    >>> queries, ranked, texts = candidate_lists(candidates)
    >>> len(queries), ranked["264014"][:2]
    (10, ['5611210', '6641238'])
    """
    ranked: dict[str, list[str]] = {}
    for qid, docno in zip(candidates["qid"], candidates["docno"]):
        ranked.setdefault(qid, []).append(docno)
    queries = dict(zip(candidates["qid"], candidates["query"]))
    texts = dict(zip(candidates["docno"], candidates["text"]))
    return queries, ranked, texts


def _fields(line: str, count: int, layout: str, where: str) -> list[str]:
    parts = line.split()
    if len(parts) != count:
        raise InputFileError(f"{where}: a line has {count} fields ({layout}), this one {len(parts)}: {line[:80]!r}")
    return parts


def _number(text: str, kind: type, name: str, where: str) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise InputFileError(f"{where}: {name} {text!r} is not {'an integer' if kind is int else 'a number'}") \
            from None
    if kind is float and not math.isfinite(value):
        raise InputFileError(f"{where}: {name} {text!r} is not a finite number")
    return value


def read_qrels(path: str | os.PathLike) -> pd.DataFrame:
    """TREC qrels (``qid 0 docno label``) as a frame with ``qid``, ``docno`` (strings) and ``label`` (integers,
    negative ones kept), in file order. A judgment given twice is an error.

    >>> read_qrels("tests/data/trec-dl-2019/qrels.txt").head(1)
          qid    docno  label
    0  104861  1017088      0
    """
    path = Path(path)
    rows = []
    for number, line in numbered_lines(path):
        where = f"{path}, line {number}"
        qid, _, docno, label = _fields(line, 4, "qid 0 docno label", where)
        rows.append((_text_id(qid, "qid", where), _text_id(docno, "docno", where),
                     _number(label, int, "label", where), number))
    if not rows:
        raise InputFileError(f"{path}: is empty, there are no judgments")
    frame = pd.DataFrame(rows, columns=["qid", "docno", "label", "line"]).astype({"label": "int64"})
    _refuse_repeats(frame, ["qid", "docno"], path, "")
    return frame.drop(columns="line")


def read_run(path: str | os.PathLike) -> pd.DataFrame:
    """A TREC run (``qid Q0 docno rank score tag``) as a result frame with ``qid``, ``docno`` (strings), ``score``
    (finite floats) and ``rank``, ranked and ordered by :func:`rank_results` (the file's ranks and line order are
    checked as integers but not used: ``trec_eval`` does not use them either). A docno twice in a query's ranking is
    an error.

    >>> import tempfile
    >>> path = f"{tempfile.mkdtemp()}/bm25.run"
    >>> _ = open(path, "w").write("264014 Q0 7 2 12.5 bm25\\n264014 Q0 684616 1 15.7806 bm25\\n")
    >>> read_run(path)
          qid   docno    score  rank
    0  264014  684616  15.7806     0
    1  264014       7  12.5000     1
    """
    path = Path(path)
    rows = []
    for number, line in numbered_lines(path):
        where = f"{path}, line {number}"
        qid, _, docno, rank, score, _ = _fields(line, 6, "qid Q0 docno rank score tag", where)
        rows.append((_text_id(qid, "qid", where), _text_id(docno, "docno", where),
                     _number(rank, int, "rank", where), _number(score, float, "score", where), number))
    if not rows:
        raise InputFileError(f"{path}: is empty, the run ranks nothing")
    frame = pd.DataFrame(rows, columns=["qid", "docno", "rank", "score", "line"])
    frame = frame.astype({"rank": "int64", "score": "float64"})
    _refuse_repeats(frame, ["qid", "docno"], path, "in the run ")
    return rank_results(frame[["qid", "docno", "score"]])


def read_topics(path: str | os.PathLike) -> pd.DataFrame:
    """Topics as a frame with string columns ``qid`` and ``query`` (surrounding whitespace removed), in file order:
    ``qid<TAB>query`` lines (a query may hold further tabs), or, for a ``.jsonl(.gz)`` file, JSON objects with
    ``qid`` and ``query`` (or ``text``). An empty query or a qid given twice is an error.

    >>> read_topics("tests/data/trec-dl-2019/topics.tsv").head(1)
          qid                           query
    0  264014  how long is life cycle of flea
    """
    path = Path(path)
    rows = []
    if _is_jsonl(path):
        for number, row in json_objects(path):
            where = f"{path}, line {number}"
            if "qid" not in row:
                raise InputFileError(f"{where}: every line needs 'qid' and 'query' (or 'text'), found {sorted(row)}")
            qid = read_id(row["qid"], "qid", where)
            query = row.get("query", row.get("text"))
            if not isinstance(query, str) or not query.strip():
                raise InputFileError(f"{where}: the query of qid {qid!r} is missing, empty or not a string")
            rows.append((qid, query.strip(), number))
    else:
        for number, line in numbered_lines(path):
            where = f"{path}, line {number}"
            if "\t" not in line:
                raise InputFileError(f"{where}: a topics line is qid<TAB>query, this one has no tab: {line[:80]!r}")
            qid, query = line.split("\t", 1)
            if not query.strip():
                raise InputFileError(f"{where}: the query of qid {qid!r} is empty")
            rows.append((_text_id(qid.strip(), "qid", where), query.strip(), number))
    if not rows:
        raise InputFileError(f"{path}: is empty, there are no topics")
    frame = pd.DataFrame(rows, columns=["qid", "query", "line"])
    _refuse_repeats(frame, ["qid"], path, "")
    return frame.drop(columns="line")


def _is_jsonl(path: Path) -> bool:
    return path.name.removesuffix(".gz").endswith(".jsonl")


def document_text(title: str | None, text: str) -> str:
    """A document's text, the one rule of the project for documents with a title: the title, then the text, joined
    by a space, as ``ir_datasets`` gives the default text of titled documents (Cranfield, BEIR); only a title that
    the text already begins with is not repeated (Cranfield's abstracts restate their title: 1,394 of its 1,398
    titled documents). The offline readers (:func:`iter_docs`, :func:`read_docs`), the BM25 indexes built from
    them and the documents read from ``ir_datasets`` (:func:`irds_document_text`) all use it."""
    if not title or text.startswith(title):
        return text
    return f"{title} {text}" if text else title


def irds_document_text(doc) -> str:
    """The text of an ``ir_datasets`` document: :func:`document_text` of its ``title`` and ``text`` where it has a
    ``text`` field, else its ``default_text()``."""
    if "text" in getattr(type(doc), "_fields", ()):
        return document_text(getattr(doc, "title", None), doc.text)
    return doc.default_text()


def iter_docs(path: str | os.PathLike) -> Iterator[dict[str, str]]:
    """The documents of ``docs.jsonl(.gz)`` (``docno``, ``text``, optionally ``title``) or of a ``.tsv(.gz)`` file
    (``docno<TAB>text``, the text may hold further tabs) in file order, as ``{"docno": ..., "text": ...}`` with the
    text of :func:`document_text` (title and text). A docno twice, a missing field or a text that is not a string is
    an :class:`InputFileError` naming the line."""
    path = Path(path)
    lines: dict[str, int] = {}
    if path.name.removesuffix(".gz").endswith(".tsv"):
        yield from _tsv_docs(path, lines)
        return
    for number, row in json_objects(path):
        where = f"{path}, line {number}"
        if "docno" not in row or "text" not in row:
            raise InputFileError(f"{where}: every line needs 'docno' and 'text', found {sorted(row)}")
        docno = read_id(row["docno"], "docno", where)
        title, text = row.get("title"), row["text"]
        if not isinstance(text, str) or not (title is None or isinstance(title, str)):
            raise InputFileError(f"{where}: text and title must be strings, got {type(text).__name__} and "
                                 f"{type(title).__name__}")
        if docno in lines:
            raise InputFileError(f"{path}: docno {docno!r} occurs more than once (lines {[lines[docno], number]})")
        lines[docno] = number
        yield {"docno": docno, "text": document_text(title, text)}
    if not lines:
        raise InputFileError(f"{path}: is empty, there are no documents")


def _tsv_docs(path: Path, lines: dict[str, int]) -> Iterator[dict[str, str]]:
    for number, line in numbered_lines(path):
        if "\t" not in line:
            raise InputFileError(f"{path}, line {number}: a docs line is docno<TAB>text, this one has no tab: "
                                 f"{line[:80]!r}")
        docno, text = line.split("\t", 1)
        docno = _text_id(docno, "docno", f"{path}, line {number}")
        if docno in lines:
            raise InputFileError(f"{path}: docno {docno!r} occurs more than once (lines {[lines[docno], number]})")
        lines[docno] = number
        yield {"docno": docno, "text": text}
    if not lines:
        raise InputFileError(f"{path}: is empty, there are no documents")


def read_docs(path: str | os.PathLike, wanted: Iterable[str] | None = None) -> dict[str, str]:
    """``docs.jsonl(.gz)`` as a mapping docno -> text (title and text, :func:`document_text`; see
    :func:`iter_docs`); with ``wanted``, only those docnos.

    >>> import json, tempfile
    >>> path = f"{tempfile.mkdtemp()}/docs.jsonl"
    >>> _ = open(path, "w").write(json.dumps({"docno": "1", "title": "Fleas", "text": "They jump far."}) + "\\n")
    >>> read_docs(path)
    {'1': 'Fleas They jump far.'}
    """
    wanted = None if wanted is None else set(wanted)
    return {doc["docno"]: doc["text"] for doc in iter_docs(path) if wanted is None or doc["docno"] in wanted}


# --- runs ------------------------------------------------------------------------------------------------------------

def check_tag(tag: str) -> str:
    """``tag`` when it can be a TREC run's last column (non-empty, no whitespace), else a ValueError."""
    if id_problem(tag):
        raise ValueError(f"tag {tag!r} must be non-empty and without whitespace (it is a TREC run's last column)")
    return tag


def tag_from_name(name: str) -> str:
    """A system tag from a name: characters other than letters, digits and ``._+-`` become ``-``."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", name).strip("-") or "pyterrier-setenc"


def default_tag(model) -> str:
    """A system tag from the model's name: a local folder's name, or a Hugging Face id with ``/`` as ``-``."""
    given = getattr(model, "model", model)  # a re-ranker's checkpoint as it was given
    name = str(getattr(given, "name", given))
    path = Path(name).expanduser()
    return tag_from_name(path.name if path.exists() else name)


def rank_results(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` (``qid``, ``docno``, ``score`` and any other columns) ranked by the project's one rule and sorted
    by it: queries by numeric qid when all qids are integers (else by text), passages by descending score, ties by
    descending docno; ``rank`` 0-based, as PyTerrier numbers ranks.

    >>> rank_results(pd.DataFrame({"qid": ["1", "1"], "docno": ["a", "b"], "score": [0.5, 0.5]}))
      qid docno  score  rank
    0   1     b    0.5     0
    1   1     a    0.5     1
    """
    frame = results.drop(columns="rank", errors="ignore")
    if len(frame) == 0:
        return frame.assign(rank=pd.Series(dtype="int64"))
    qids = frame["qid"].astype(str)
    try:
        query_order = qids.astype(int).to_numpy()
    except (ValueError, OverflowError):
        query_order = pd.factorize(qids, sort=True)[0]
    order = np.lexsort((-pd.factorize(frame["docno"].astype(str), sort=True)[0], -frame["score"].to_numpy(),
                        pd.factorize(qids, sort=True)[0], query_order))
    frame = frame.iloc[order].reset_index(drop=True)
    frame["rank"] = frame.groupby("qid", sort=False).cumcount().astype("int64")
    return frame


def normalize_run(results: pd.DataFrame, tag: str, depth: int | None = None) -> pd.DataFrame:
    """TREC run rows (``qid Q0 docno rank score tag``) from a frame with ``qid``, ``docno`` and ``score``, ordered
    as TIREx normalises runs (and ``trec_eval`` reads them): queries by numeric qid when all qids are integers (else
    by text), passages by descending score (ties: descending docno), ranks from 1, at most ``depth`` passages a
    query. Unlike TIREx, qids keep their text (``"007"`` stays ``"007"``). Scores that are not finite and ids a run
    cannot hold are a ValueError naming the qid and docno."""
    check_tag(tag)
    run = results[["qid", "docno", "score"]].copy()
    for name in ("qid", "docno"):
        run[name] = run[name].map(_decimal_if_integer)
        problems = run[name].map(id_problem)
        if problems.notna().any():
            row = run[problems.notna()].iloc[0]
            raise ValueError(f"{name} {row[name]!r} {problems[problems.notna()].iloc[0]} (qid={row['qid']!r} "
                             f"docno={row['docno']!r})")
    run["score"] = run["score"].astype("float64")
    bad = ~np.isfinite(run["score"].to_numpy())
    if bad.any():
        row = run[bad].iloc[0]
        raise ValueError(f"{int(bad.sum())} score(s) are not finite, e.g. {row['score']} for qid={row['qid']!r} "
                         f"docno={row['docno']!r}")
    run = rank_results(run)
    if depth is not None:
        run = run[run["rank"] < depth]
    run["rank"] = run["rank"] + 1
    run["Q0"] = "Q0"
    run["tag"] = tag
    return run[RUN_COLUMNS].reset_index(drop=True)


def _decimal_if_integer(value: object) -> object:
    integer = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    return str(value) if integer else value


def write_run(path: str | os.PathLike, results: pd.DataFrame, tag: str, depth: int | None = None) -> Path:
    """Writes ``results`` (``qid``, ``docno``, ``score``) as a TREC run in :func:`normalize_run`'s order, scores
    in full precision, atomically (:func:`pyterrier_setenc.atomic.atomic_write`): ``path`` is either the earlier
    file or the complete new one. Everything is checked before the file is touched.

    >>> import tempfile
    >>> candidates = read_rerank("tests/data/trec-dl-2019/bm25-top100.rerank.jsonl.gz")
    >>> folder = tempfile.mkdtemp()
    >>> write_run(f"{folder}/runs/bm25.run", candidates, tag="bm25", depth=1000).relative_to(folder)
    PosixPath('runs/bm25.run')
    """
    run = normalize_run(results, tag, depth)
    lines = [f"{qid} {q0} {docno} {rank} {float(score)!r} {name}\n"
             for qid, q0, docno, rank, score, name in run.itertuples(index=False, name=None)]
    return atomic_write(path, lambda file: file.writelines(lines))
