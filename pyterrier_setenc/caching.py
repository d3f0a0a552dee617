"""A score cache that is correct for listwise re-rankers: keyed on a query's whole candidate list.

A Set-Encoder's (or ListConRanker's) score of a passage depends on the other passages of its list, so caches keyed
on (query, docno), like pyterrier-caching's ``ScorerCache``, serve wrong scores as soon as the list differs (e.g.
the top-10 of a query after the top-100 was cached). :class:`ListwiseCache` keys each query's list on the query
text, the set of (docno, passage text) pairs and the re-ranker's :meth:`~pyterrier_setenc.ReRanker.cache_key`
(class, settings, checkpoint and a digest of its weights); a list is either served whole or scored whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import warnings
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt

from .reranker import passage_texts, validate_frame, with_ranks

DATABASE = "lists.sqlite3"


class ListwiseCache(pt.Transformer):
    """Scores from ``scorer``, cached on disk per whole candidate list (valid for listwise and pointwise scorers).

    >>> from pyterrier_setenc import ListwiseCache, SetEncoderReRanker
    >>> setenc = SetEncoderReRanker("webis/set-encoder-base")  # doctest: +SKIP
    >>> cached = ListwiseCache("setenc-cache", setenc)  # doctest: +SKIP
    >>> pipeline = bm25 % 100 >> pt.text.get_text(dataset, "text") >> cached  # doctest: +SKIP

    A list is looked up by a SHA-256 of the scorer's identity, the query text and the sorted (docno, text) pairs;
    order of the rows and the qid do not matter. Lists not in the cache are scored in one call of ``scorer`` and
    stored in one SQLite transaction (a failed or killed run never leaves a partial entry). Several scorers may share
    one folder: their keys differ.
    """

    def __init__(self, path: str | os.PathLike, scorer: pt.Transformer, *, text_field: str | None = None,
                 model_key: str | None = None):
        """
        Args:
            path: the cache's folder (created if missing); the scores live in ``path/lists.sqlite3``.
            scorer: the re-ranker whose scores are cached.
            text_field: the passage column (default: the scorer's ``text_field``, else ``text``).
            model_key: what identifies the scorer's scores (default: ``scorer.cache_key()``, which the suite's
                re-rankers have); needed for other scorers.
        """
        if not isinstance(scorer, pt.Transformer):
            raise TypeError(f"scorer must be a pt.Transformer, got {type(scorer).__name__}")
        if model_key is None and not callable(getattr(scorer, "cache_key", None)):
            raise TypeError(f"{type(scorer).__name__} has no cache_key(): pass model_key= (a string that changes "
                            "whenever the scorer's scores may change)")
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"path {str(self.path)!r} is a file; the cache needs a folder")
        self.scorer = scorer
        self.text_field = text_field if text_field is not None else getattr(scorer, "text_field", "text")
        self.model_key = model_key

    def __repr__(self) -> str:
        return f"ListwiseCache({str(self.path)!r}, {self.scorer!r})"

    def _connect(self) -> sqlite3.Connection:
        self.path.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path / DATABASE)
        connection.execute("CREATE TABLE IF NOT EXISTS lists (key TEXT PRIMARY KEY, scores TEXT NOT NULL)")
        return connection

    def list_keys(self, frame: pd.DataFrame, texts: list[str]) -> dict:
        """The cache key of each qid's list (and the list's row indices in (docno, text) order)."""
        identity = self.model_key if self.model_key is not None else self.scorer.cache_key()
        keys = {}
        docnos = frame["docno"].tolist()
        for qid, rows in frame.groupby("qid", sort=False).indices.items():
            pairs = sorted(((docnos[i], texts[i], int(i)) for i in rows), key=lambda p: (str(p[0]), p[1]))
            content = json.dumps([identity, frame["query"].iat[rows[0]], [[d, t] for d, t, _ in pairs]],
                                 default=str, ensure_ascii=False)
            key = hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()
            keys[qid] = (key, np.array([i for _, _, i in pairs]))
        return keys

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        frame = validate_frame(inp, self.text_field, self)
        if len(frame) == 0:
            return with_ranks(frame, np.empty(0))
        with warnings.catch_warnings():  # the scorer warns about empty texts itself, once
            warnings.simplefilter("ignore")
            keys = self.list_keys(frame, passage_texts(frame, self.text_field))
        scores = np.full(len(frame), np.nan)
        with closing(self._connect()) as connection:
            found = {}
            unique = [key for key, _ in keys.values()]
            for start in range(0, len(unique), 500):
                part = unique[start:start + 500]
                found.update(connection.execute(
                    f"SELECT key, scores FROM lists WHERE key IN ({', '.join('?' * len(part))})", part).fetchall())
            missing = []
            for qid, (key, rows) in keys.items():
                if key in found:
                    scores[rows] = json.loads(found[key])
                else:
                    missing.append(qid)
            if missing:
                todo = frame[frame["qid"].isin(missing)]
                scored = self.scorer(todo)
                scored = scored.set_index(["qid", "docno"])["score"]
                rows_missing = np.concatenate([keys[q][1] for q in missing])
                index = pd.MultiIndex.from_arrays([frame["qid"].to_numpy()[rows_missing],
                                                   frame["docno"].to_numpy()[rows_missing]])
                scores[rows_missing] = scored.reindex(index).to_numpy(dtype="float64")
                if np.isnan(scores[rows_missing]).any():
                    raise RuntimeError(f"{self.scorer!r} returned no score for some of the passages it was given")
                with connection:  # one transaction: all new lists or none
                    connection.executemany("INSERT OR REPLACE INTO lists (key, scores) VALUES (?, ?)",
                                           [(keys[q][0], json.dumps(scores[keys[q][1]].tolist())) for q in missing])
        return with_ranks(frame, scores)
