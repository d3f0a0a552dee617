"""A score cache that is correct for listwise re-rankers: keyed on a query's whole candidate list.

A Set-Encoder's (or ListConRanker's) score of a passage depends on the other passages of its list, so caches keyed
on (query, docno), like pyterrier-caching's ``ScorerCache``, serve wrong scores as soon as the list differs (e.g.
the top-10 of a query after the top-100 was cached). :class:`ListwiseCache` keys each query's list on the query
text, the set of (docno, passage text) pairs and the re-ranker's :meth:`~pyterrier_setenc.ReRanker.cache_key`
(class, settings, checkpoint and a digest of its weights); a list is either served whole or scored whole.

Nothing stored is served unchecked: each entry carries a SHA-256 of its key and scores, and a list is served only
when the digest matches and it has one finite score per passage; any other entry is scored again (and replaced),
with a :class:`CacheWarning` naming the qid. A cache file that SQLite cannot read (truncated, overwritten) is a
:class:`CacheFileError` naming the file. A cache that cannot be written (a full or read-only file system, no
permission) warns once per call naming the file and keeps the new scores in memory, so that they are served for the
rest of the process; the result of the call is complete either way.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import warnings
from contextlib import closing
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import pyterrier as pt

from .reranker import passage_texts, validate_frame, with_ranks

DATABASE = "lists.sqlite3"
_DAMAGED = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}


class CacheFileError(ValueError):
    """The cache's SQLite file is damaged (truncated or overwritten); the message names it and what to do."""


class CacheWarning(UserWarning):
    """A cache entry that fails its checks was scored again, or new scores could not be written to the cache."""


def entry_checksum(key: str, scores: str) -> str:
    """The SHA-256 stored with an entry: of its key and its scores as stored (JSON text)."""
    return hashlib.sha256(f"{key}\0{scores}".encode()).hexdigest()


class ListwiseCache(pt.Transformer):
    """Scores from ``scorer``, cached on disk per whole candidate list (valid for listwise and pointwise scorers).

    >>> from pyterrier_setenc import ListwiseCache, SetEncoderReRanker
    >>> setenc = SetEncoderReRanker("webis/set-encoder-base")  # doctest: +SKIP
    >>> cached = ListwiseCache("setenc-cache", setenc)  # doctest: +SKIP
    >>> pipeline = bm25 % 100 >> pt.text.get_text(dataset, "text") >> cached  # doctest: +SKIP

    A list is looked up by a SHA-256 of the scorer's identity, the query text and the sorted (docno, text) pairs;
    order of the rows and the qid do not matter. Lists not in the cache are scored in one call of ``scorer`` and
    stored in one SQLite transaction (a failed or killed run never leaves a partial entry). Several scorers may share
    one folder: their keys differ. Stored entries are checked before they are served (see the module).
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
        self._memory: dict[str, np.ndarray] = {}  # new lists that could not be stored

    def __repr__(self) -> str:
        return f"ListwiseCache({str(self.path)!r}, {self.scorer!r})"

    @property
    def database(self) -> Path:
        """The cache's SQLite file."""
        return self.path / DATABASE

    def _damaged(self, error: sqlite3.Error) -> CacheFileError:
        return CacheFileError(f"{self.database} is damaged and cannot be read as a cache ({error}); delete it: the "
                              "cache is built again from the next call (its lists are scored again)")

    def _connect(self) -> sqlite3.Connection:
        """The cache's database with the table of lists (and its ``checksum`` column, added to caches of earlier
        versions, whose entries are then scored again)."""
        self.path.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.database)
        try:
            connection.execute("CREATE TABLE IF NOT EXISTS lists (key TEXT PRIMARY KEY, scores TEXT NOT NULL, "
                               "checksum TEXT)")
            columns = [row[1] for row in connection.execute("PRAGMA table_info(lists)")]
            if "checksum" not in columns:
                with connection:
                    connection.execute("ALTER TABLE lists ADD COLUMN checksum TEXT")
        except BaseException:
            connection.close()
            raise
        return connection

    def _read(self, keys: list[str]) -> dict[str, tuple[str, str | None]]:
        """The stored entries of ``keys``: key -> (scores as JSON text, checksum). A cache that cannot be opened
        (e.g. a read-only folder without a cache yet) gives none, with a warning; a damaged file is an error."""
        found: dict[str, tuple[str, str | None]] = {}
        try:
            with closing(self._connect()) as connection:
                for start in range(0, len(keys), 500):
                    part = keys[start:start + 500]
                    rows = connection.execute(f"SELECT key, scores, checksum FROM lists WHERE key IN "
                                              f"({', '.join('?' * len(part))})", part).fetchall()
                    found.update((key, (scores, checksum)) for key, scores, checksum in rows)
        except sqlite3.Error as error:
            if getattr(error, "sqlite_errorname", "") in _DAMAGED or not isinstance(error, sqlite3.OperationalError):
                raise self._damaged(error) from None
            warnings.warn(f"{self.database} cannot be read ({error}); the lists are scored without the cache",
                          CacheWarning, stacklevel=3)
        except OSError as error:
            warnings.warn(f"{self.path} cannot be used as a cache folder ({error.strerror or error}); the lists are "
                          "scored without the cache", CacheWarning, stacklevel=3)
        return found

    def _checked(self, qid, key: str, entry: tuple[str, str | None], size: int) -> np.ndarray | None:
        """The scores of a stored entry if it passes its checks (its checksum, one finite score per passage);
        otherwise ``None``, with a warning naming the qid."""
        text, checksum = entry
        problem = None
        if checksum is None:
            problem = "has no checksum (stored by an earlier version)"
        elif checksum != entry_checksum(key, text):
            problem = "does not match its checksum (the file was changed or damaged)"
        else:
            try:
                values = np.asarray(json.loads(text), dtype="float64")
            except (ValueError, TypeError):
                values = None
            if values is None or values.shape != (size,):
                count = "not a list of scores" if values is None or values.ndim != 1 else f"{len(values)} scores"
                problem = f"holds {count} for a list of {size} passages"
            elif not np.isfinite(values).all():
                problem = "holds scores that are not finite"
            else:
                return values
        warnings.warn(f"{self.database}: the stored list of qid {qid!r} {problem}; it is scored again and replaced",
                      CacheWarning, stacklevel=4)
        return None

    def _write(self, entries: dict[str, np.ndarray]) -> None:
        """Stores new lists in one transaction (all or none); when that fails, warns naming the file and keeps
        them in memory."""
        rows = []
        for key, values in entries.items():
            text = json.dumps(values.tolist())
            rows.append((key, text, entry_checksum(key, text)))
        try:
            with closing(self._connect()) as connection, connection:
                connection.executemany("INSERT OR REPLACE INTO lists (key, scores, checksum) VALUES (?, ?, ?)", rows)
        except sqlite3.Error as error:
            if getattr(error, "sqlite_errorname", "") in _DAMAGED:
                raise self._damaged(error) from None
            problem = str(error)
        except OSError as error:
            problem = error.strerror or str(error)
        else:
            for key in entries:
                self._memory.pop(key, None)
            return
        self._memory.update(entries)
        warnings.warn(f"{self.database}: {len(entries)} new list(s) could not be stored ({problem}); their scores "
                      "are returned and kept in memory for this process, not on disk", CacheWarning, stacklevel=3)

    def list_keys(self, frame: pd.DataFrame, texts: list[str]) -> dict:
        """The cache key of each qid's list (and the list's row indices in (docno, text) order)."""
        identity = self.model_key if self.model_key is not None else self.scorer.cache_key()  # type: ignore[attr-defined]  # checked in __init__
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
        found = self._read([key for key, _ in keys.values() if key not in self._memory])
        missing = []
        for qid, (key, rows) in keys.items():
            values = self._memory.get(key)
            if values is None and key in found:
                values = self._checked(qid, key, found[key], len(rows))
            if values is not None:
                scores[rows] = values
            else:
                missing.append(qid)
        if missing:
            todo = frame[frame["qid"].isin(missing)]
            scored = cast(pd.DataFrame, self.scorer(todo))
            scored = scored.set_index(["qid", "docno"])["score"]
            rows_missing = np.concatenate([keys[q][1] for q in missing])
            index = pd.MultiIndex.from_arrays([frame["qid"].to_numpy()[rows_missing],
                                               frame["docno"].to_numpy()[rows_missing]])
            scores[rows_missing] = scored.reindex(index).to_numpy(dtype="float64")
            if np.isnan(scores[rows_missing]).any():
                raise RuntimeError(f"{self.scorer!r} returned no score for some of the passages it was given")
            self._write({keys[q][0]: scores[keys[q][1]] for q in missing})
        return with_ranks(frame, scores)
