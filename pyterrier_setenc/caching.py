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

The cache folder is a PyTerrier artifact (type ``listwise_cache``, format ``sqlite3``, described by its
``pt_meta.json``): ``pt.Artifact.load(folder, scorer=reranker)`` opens it, and ``build_package``, ``to_hf`` and
``to_zenodo`` share it (``ListwiseCache.from_url`` also opens a package file on this machine). A folder whose
``pt_meta.json`` is unreadable or names another artifact, and a folder with other files in it, are refused with an
error naming them, and nothing is written into them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tarfile
import warnings
from contextlib import closing
from pathlib import Path, PurePosixPath
from typing import Any, cast
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pyterrier as pt

from .atomic import atomic_folder, atomic_write
from .reranker import passage_texts, validate_frame, with_ranks

DATABASE = "lists.sqlite3"
METADATA = "pt_meta.json"  # PyTerrier's description of an artifact folder (type, format, package)
_DAMAGED = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}


class CacheFileError(ValueError):
    """The cache's SQLite file is damaged (truncated or overwritten); the message names it and what to do."""


class CacheWarning(UserWarning):
    """A cache entry that fails its checks was scored again, or new scores could not be written to the cache."""


def entry_checksum(key: str, scores: str) -> str:
    """The SHA-256 stored with an entry: of its key and its scores as stored (JSON text)."""
    return hashlib.sha256(f"{key}\0{scores}".encode()).hexdigest()


def check_folder(folder: Path) -> None:
    """Raises a ``ValueError`` naming ``folder`` (or its ``pt_meta.json``) unless it can hold a :class:`ListwiseCache`:
    its ``pt_meta.json`` names a ListwiseCache, or it has none but a ``lists.sqlite3`` (a cache of an earlier version),
    or it is empty (hidden files aside)."""
    meta = folder / METADATA
    if meta.exists():
        try:
            content = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"{meta} cannot be read as PyTerrier's description of an artifact ({error}); a "
                             f"ListwiseCache's is {json.dumps(ListwiseCache.metadata())}") from None
        kind = (content.get("type"), content.get("format")) if isinstance(content, dict) else (None, None)
        if kind != (ListwiseCache.ARTIFACT_TYPE, ListwiseCache.ARTIFACT_FORMAT):
            name = ".".join(str(part) for part in kind) if isinstance(content, dict) else "not an object"
            raise ValueError(f"{folder} is not a ListwiseCache: its {METADATA} names the artifact {name}, not "
                             f"{ListwiseCache.ARTIFACT_TYPE}.{ListwiseCache.ARTIFACT_FORMAT}")
    elif not (folder / DATABASE).exists():
        others = sorted(entry.name for entry in folder.iterdir() if not entry.name.startswith("."))
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise ValueError(f"{folder} is not a ListwiseCache (it has no {METADATA} and no {DATABASE}) and holds "
                             f"other files ({shown}); give the cache a new or empty folder")


def local_package(url: str) -> Path | None:
    """The package file that ``url`` names on this machine (a path or a ``file://`` URL), else ``None``."""
    parsed = urlparse(url)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        path = Path(unquote(parsed.path))
    elif parsed.scheme == "" or len(parsed.scheme) == 1:  # a path (or a Windows drive letter)
        path = Path(url)
    else:
        return None
    if parsed.scheme == "file" and not path.exists():
        raise FileNotFoundError(f"{path}: no such file (from {url!r})")
    return path if path.is_file() else None


def unpack_package(package: Path, expected_sha256: str | None = None) -> Path:
    """Unpacks a package of :meth:`ListwiseCache.build_package` (an LZ4-compressed tar file) into PyTerrier's
    artifact folder, once per content: its SHA-256 must equal ``expected_sha256`` and the one that build_package wrote
    beside it (``PACKAGE.json``), where given. Returns the folder; an error names the package and its problem."""
    import lz4.frame

    digest = hashlib.sha256()
    with open(package, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    actual = digest.hexdigest()
    expected = {"the expected_sha256 argument": expected_sha256}
    sidecar = package.with_name(package.name + ".json")
    if sidecar.exists():
        try:
            expected[str(sidecar)] = json.loads(sidecar.read_text(encoding="utf-8")).get("expected_sha256")
        except (OSError, ValueError, AttributeError) as error:
            raise ValueError(f"{sidecar} (the description of the package {package}) cannot be read ({error})") from None
    for source, value in expected.items():
        if value is not None and str(value).lower() != actual:
            raise ValueError(f"{package}: its SHA-256 is {actual}, but {source} says {value}; the package is damaged "
                             "or not the one meant")
    target = Path(pt.io.pyterrier_home()) / "artifacts" / f"listwise-cache-{actual}"
    if (target / METADATA).exists():
        return target
    try:
        with atomic_folder(target) as staging, lz4.frame.open(package, "rb") as stream, \
                tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                name = PurePosixPath(member.name)
                if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
                    raise ValueError(f"{package} holds {member.name!r}, which is not a file or folder inside the "
                                     "package; it is not a package of build_package")
                destination = staging.joinpath(*name.parts)
                if member.isdir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                content = archive.extractfile(member)
                assert content is not None  # a regular file
                with open(destination, "wb") as out:
                    shutil.copyfileobj(content, out)
    except (tarfile.TarError, RuntimeError, EOFError) as error:  # lz4 reports a damaged frame as a RuntimeError
        raise ValueError(f"{package} cannot be unpacked as a package of build_package ({error})") from None
    return target


class ListwiseCache(pt.Artifact, pt.Transformer):
    """Scores from ``scorer``, cached on disk per whole candidate list (valid for listwise and pointwise scorers).

    >>> from pyterrier_setenc import ListwiseCache, SetEncoderReRanker
    >>> setenc = SetEncoderReRanker("webis/set-encoder-base")  # doctest: +SKIP
    >>> cached = ListwiseCache("setenc-cache", setenc)  # doctest: +SKIP
    >>> pipeline = bm25 % 100 >> pt.text.get_text(dataset, "text") >> cached  # doctest: +SKIP
    >>> cached = pt.Artifact.load("setenc-cache", scorer=setenc)  # doctest: +SKIP
    >>> cached.build_package("setenc-cache.tar.lz4")  # doctest: +SKIP
    >>> cached = ListwiseCache.from_url("setenc-cache.tar.lz4", scorer=setenc)  # doctest: +SKIP

    A list is looked up by a SHA-256 of the scorer's identity, the query text and the sorted (docno, text) pairs;
    order of the rows and the qid do not matter. Lists not in the cache are scored in one call of ``scorer`` and
    stored in one SQLite transaction (a failed or killed run never leaves a partial entry). Several scorers may share
    one folder: their keys differ, so a cache opened with another model (other weights, settings or tokenizer) scores
    its lists again. Stored entries are checked before they are served (see the module).
    """

    ARTIFACT_TYPE = "listwise_cache"
    ARTIFACT_FORMAT = "sqlite3"
    ARTIFACT_PACKAGE_HINT = "pyterrier-setenc"
    ARTIFACT_SCHEMATIC_SHOW_AS_TRANSFORMER = True  # schematics show the scorer inside the cache

    def __init__(self, path: str | os.PathLike, scorer: pt.Transformer | None = None, *,
                 text_field: str | None = None, model_key: str | None = None):
        """
        Args:
            path: the cache's folder (created if missing; an existing one must be a cache or empty); the scores live
                in ``path/lists.sqlite3``, PyTerrier's description of the folder in ``path/pt_meta.json``.
            scorer: the re-ranker whose scores are cached (also when the folder is loaded: the lists are keyed on it).
            text_field: the passage column (default: the scorer's ``text_field``, else ``text``).
            model_key: what identifies the scorer's scores (default: ``scorer.cache_key()``, which the suite's
                re-rankers have); needed for other scorers.
        """
        folder = Path(path)
        if folder.exists() and not folder.is_dir():
            hint = (" (a package from build_package is opened with ListwiseCache.from_url(path, scorer=...))"
                    if folder.name.endswith((".tar", ".lz4")) else "")
            raise ValueError(f"path {str(folder)!r} is a file; the cache needs a folder{hint}")
        if folder.is_dir():
            check_folder(folder)
        if scorer is None:
            raise TypeError(f"ListwiseCache({str(folder)!r}) needs the re-ranker whose scores it holds, as scorer= "
                            f"(its lists are keyed on the re-ranker's weights): pt.Artifact.load({str(folder)!r}, "
                            "scorer=reranker)")
        if not isinstance(scorer, pt.Transformer):
            raise TypeError(f"scorer must be a pt.Transformer, got {type(scorer).__name__}")
        if model_key is None and not callable(getattr(scorer, "cache_key", None)):
            raise TypeError(f"{type(scorer).__name__} has no cache_key(): pass model_key= (a string that changes "
                            "whenever the scorer's scores may change)")
        super().__init__(folder)
        self.folder = folder
        self.scorer = scorer
        self.text_field = text_field if text_field is not None else getattr(scorer, "text_field", "text")
        self.model_key = model_key
        self._memory: dict[str, np.ndarray] = {}  # new lists that could not be stored

    @classmethod
    def load(cls, path: str, **kwargs: Any) -> ListwiseCache:
        """Opens the existing cache in the folder ``path`` (an error naming it when the folder is missing or not a
        cache); ``kwargs`` are those of the constructor (``scorer=`` is needed).

        >>> cached = ListwiseCache.load("setenc-cache", scorer=setenc)  # doctest: +SKIP
        """
        folder = Path(path)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder, so no ListwiseCache to load (ListwiseCache(path, "
                                    "reranker) makes a new one)")
        check_folder(folder)
        if not (folder / METADATA).exists() and not (folder / DATABASE).exists():
            raise ValueError(f"{folder} is not a ListwiseCache: it is empty (neither {METADATA} nor {DATABASE})")
        return cls(folder, **kwargs)

    @classmethod
    def from_url(cls, url: str, *, expected_sha256: str | None = None, **kwargs: Any) -> pt.Artifact:
        """Opens a cache from a URL as PyTerrier does (``hf:``, ``zenodo:``, ``https:``, a folder) and also from a
        package file on this machine (a path or ``file://`` URL of what :meth:`build_package` wrote), checked
        against ``expected_sha256`` or the SHA-256 in the ``.json`` file beside it and unpacked into PyTerrier's
        artifact folder (``$PYTERRIER_HOME/artifacts``).

        >>> cached = ListwiseCache.from_url("setenc-cache.tar.lz4", scorer=setenc)  # doctest: +SKIP
        """
        package = local_package(url)
        if package is None:
            return super().from_url(url, expected_sha256=expected_sha256, **kwargs)
        return cls.load(str(unpack_package(package, expected_sha256)), **kwargs)

    def __repr__(self) -> str:
        return f"ListwiseCache({str(self.folder)!r}, {self.scorer!r})"

    @property
    def database(self) -> Path:
        """The cache's SQLite file."""
        return self.folder / DATABASE

    @classmethod
    def metadata(cls) -> dict[str, str]:
        """What ``pt_meta.json`` holds: the artifact's type and format (the name of its ``pyterrier.artifact``
        entry point) and the package that reads it."""
        return {"type": cls.ARTIFACT_TYPE, "format": cls.ARTIFACT_FORMAT, "package_hint": cls.ARTIFACT_PACKAGE_HINT}

    def _damaged(self, error: sqlite3.Error) -> CacheFileError:
        return CacheFileError(f"{self.database} is damaged and cannot be read as a cache ({error}); delete it: the "
                              "cache is built again from the next call (its lists are scored again)")

    def _connect(self) -> sqlite3.Connection:
        """The cache's database with the table of lists (and its ``checksum`` column, added to caches of earlier
        versions, whose entries are then scored again)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if not (self.folder / METADATA).exists():
            check_folder(self.folder)  # a folder that others filled since the cache was opened is left alone
            atomic_write(self.folder / METADATA, lambda file: json.dump(self.metadata(), file, indent=2))
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
            warnings.warn(f"{self.folder} cannot be used as a cache folder ({error.strerror or error}); the lists are "
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
