"""Live BM25 over a whole corpus with a PISA index that is built once and cached.

The index lives in ``CACHE/pisa/NAME-FINGERPRINT`` where the fingerprint is a hash of the corpus, so a changed
corpus gets a new index. It is built in a temporary folder beside it and renamed into place when complete, so an
interrupted build never leaves a broken index behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyterrier as pt

from pyterrier_setenc.io import iter_docs, read_docs

from .collection import AddText

BM25_K1 = 0.9
BM25_B = 0.4
INDEXED_TEXT = "title and text (pyterrier_setenc.io.document_text)"  # what an index holds of a document


def file_fingerprint(path: Path) -> str:
    """A hash of the file's bytes and of :data:`INDEXED_TEXT`: an index of another corpus, or built under another
    rule for a document's text, is not reused."""
    digest = hashlib.sha256(INDEXED_TEXT.encode() + b"\0")
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


@contextmanager
def output_to(log: Path) -> Iterator[None]:
    """The process's stdout and stderr (file descriptors 1 and 2, which PISA's C++ code writes to) appended to
    ``log`` for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(log, "ab") as file:
            os.dup2(file.fileno(), 1)
            os.dup2(file.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


def cached_pisa_index(name: str, fingerprint: str, docs: Callable[[], Iterable[dict[str, str]]], cache_dir: Path,
                      warmup_query: str = "index"):
    """The PISA index of a corpus under ``cache_dir``, built from ``docs()`` (dicts with ``docno`` and ``text``) if
    not cached yet. What PISA prints while it builds (``[info]`` lines on stdout, progress on stderr) goes to
    ``build.log`` in the index folder, not between the results."""
    from pyterrier_pisa import PisaIndex

    final = cache_dir / "pisa" / f"{name}-{fingerprint}"
    if not (final / "pt_meta.json").is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
        try:
            with output_to(building / "build.log"):
                index = PisaIndex(str(building / "index"), text_field="text", threads=1, overwrite=True)
                index.index(docs())
                # the first BM25 search writes its score bounds into the index folder: do it before it is shared
                PisaIndex(str(building / "index")).bm25(k1=BM25_K1, b=BM25_B, num_results=1).search(warmup_query)
            os.replace(building / "build.log", building / "index" / "build.log")
            try:
                os.rename(building / "index", final)
            except OSError:
                if not (final / "pt_meta.json").is_file():  # another process won the race: keep its index
                    raise
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return PisaIndex(str(final))


def corpus_bm25(name: str, docs_path: Path, cache_dir: Path, candidates: int = 100) -> pt.Transformer:
    """BM25 (k1=0.9, b=0.4, PISA's porter2 stemming and Terrier stop words) over ``docs.jsonl.gz``, followed by the
    passage texts: ``bm25 >> AddText(docs)``; index and texts hold each document's title and text
    (:func:`pyterrier_setenc.io.read_docs`)."""
    index = cached_pisa_index(name, file_fingerprint(docs_path), lambda: iter_docs(docs_path), cache_dir)
    return index.bm25(k1=BM25_K1, b=BM25_B, num_results=candidates) >> AddText(read_docs(docs_path))

