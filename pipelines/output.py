"""An experiment's outputs: TREC runs, tables (Markdown and CSV), figures (PNG), in one output folder that is always
one consistent result.

Every file is written atomically (a temporary file moved into place with ``os.replace``). A whole result is built in
a staging folder beside the output folder (``.NAME.partial``) and swapped in only when complete, together with its
``manifest.json`` (settings and the SHA-256 of each file); so the output folder holds either the earlier complete
result or the new one, whatever fails or is killed when. Each model's output is stored in the staging folder as soon
as it is computed (``cache/``, with the key it was computed under and its SHA-256), so that a rerun after a crash, or
with the same settings, reuses it instead of computing it again; a stored output whose digest does not match is
computed again, with a :class:`StoredOutputWarning` naming the file.

An output folder that is a symbolic link to a folder is followed (the staging folder is made beside the link's
target); one that points nowhere is refused before any work. One experiment at a time writes a folder: the lock
file ``.NAME.lock`` beside it is held from :meth:`ResultFolder.open` until the result is committed and cleaned up.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from pyterrier_setenc import io
from pyterrier_setenc.atomic import (
    OutputPathError,
    acquire_lock,
    atomic_write,
    lock_holder,
    path_problem,
    release_lock,
    replace_folder,
    write_error,
)

MANIFEST = "manifest.json"
CACHE = "cache"


def safe_name(name: str) -> str:
    """A file-name-safe version of a system name (``org/model@10`` -> ``org__model@10``)."""
    return re.sub(r"[^A-Za-z0-9@+=.,_-]+", "_", name.replace("/", "__")).strip("._") or "run"


def format_cell(value) -> str:
    """Floats with 4 decimals (tiny non-zero values in scientific notation), everything else as text."""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.2e}" if 0 < abs(value) < 5e-5 else f"{value:.4f}"
    return str(value)


def markdown_table(table: pd.DataFrame) -> str:
    """A frame as a GitHub Markdown table (floats with 4 decimals)."""
    def line(cells) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    aligns = ["---:" if pd.api.types.is_numeric_dtype(table[column]) else "---" for column in table.columns]
    lines = [line(table.columns), "| " + " | ".join(aligns) + " |"]
    lines += [line(format_cell(value) for value in row) for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_table(folder: Path, stem: str, table: pd.DataFrame, markdown: pd.DataFrame | None = None,
                title: str | None = None) -> list[Path]:
    """``stem.csv`` (full precision) and ``stem.md`` (``markdown`` if given, else the same table, rounded)."""
    csv_path = atomic_write(folder / f"{stem}.csv", lambda file: table.to_csv(file, index=False))
    text = (f"{title}\n\n" if title else "") + markdown_table(table if markdown is None else markdown)
    md_path = atomic_write(folder / f"{stem}.md", lambda file: file.write(text))
    return [csv_path, md_path]


def save_figure(figure, path: Path) -> Path:
    """Saves a matplotlib figure as PNG atomically and closes it."""
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=120, bbox_inches="tight"),
                            binary=True)
    finally:
        plt.close(figure)


# --- the output folder as one result --------------------------------------------------------------------------------

class OutputError(ValueError):
    """The output folder cannot be used (not writable, a file, or a folder that is not an experiment's result)."""


class StoredOutputWarning(UserWarning):
    """A stored model output does not match its recorded SHA-256 and is computed again."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_temporary(path: Path) -> bool:
    """A leftover of an interrupted atomic write (``.NAME.XXXX.tmp``)."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


class ResultFolder:
    """The output folder of one experiment, written as a unit.

    :meth:`open` checks that the folder can be written (before any work), takes a lock, and prepares the staging
    folder ``.NAME.partial`` beside it; files go to :meth:`path` (relative names); :meth:`commit` writes
    ``manifest.json`` last and swaps the staging folder in. Model outputs stored with :meth:`store` under a key are
    found again by :meth:`lookup` in a later call, in the staging folder left by an interrupted call or in the
    current result.

    >>> folder = ResultFolder("results/dl19").open()  # doctest: +SKIP
    >>> run = folder.lookup("cache/model", key)  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, option: str = "--output"):
        self.given = Path(path).expanduser().absolute()
        self.option = option
        self._place(self.given)
        self.lock: int | None = None
        self.stored: set[str] = set()  # stems of the model outputs of this result

    def _place(self, final: Path) -> None:
        self.final = final
        self.staging = final.parent / f".{final.name}.partial"
        self.lock_file = final.parent / f".{final.name}.lock"

    def __repr__(self) -> str:
        return f"ResultFolder({str(self.final)!r})"

    def fail(self, problem: str) -> OutputError:
        return OutputError(f"{self.option} {self.given}: {problem}")

    def open(self) -> ResultFolder:
        if self.given.is_symlink():
            if not self.given.exists():
                raise self.fail(f"is a symbolic link to {os.readlink(self.given)}, which does not exist; make that "
                                "folder or remove the link")
            if self.given.is_dir():  # results on another disk: work beside the link's target
                self._place(self.given.resolve())
        if self.final.exists() and not self.final.is_dir():
            what = f"a symbolic link to the file {self.final.resolve()}" if self.final.is_symlink() else "a file"
            raise self.fail(f"is {what}, not a folder")
        problem = path_problem(self.final.parent)
        if problem:
            raise self.fail(f"cannot be written: {problem}")
        if self.final.is_dir() and any(self.final.iterdir()) and not (self.final / MANIFEST).is_file():
            raise self.fail(f"exists and is not an experiment's result (it has no {MANIFEST}); nothing is written "
                            "into such a folder: choose another folder or empty it")
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self.lock = acquire_lock(self.lock_file)
        except BlockingIOError:
            raise self.fail(f"another experiment ({lock_holder(self.lock_file)}) is writing to this folder right "
                            f"now (it holds {self.lock_file})") from None
        except OSError as error:
            raise self.fail(f"cannot be written ({error.strerror or error})") from None
        try:
            self.staging.mkdir(exist_ok=True)
            probe = atomic_write(self.staging / ".write-probe", lambda file: file.write("probe"))
            probe.unlink()
        except OSError as error:
            self.close()
            raise self.fail(f"cannot be written ({error.strerror or error})") from None
        for leftover in [p for p in self.staging.rglob("*") if is_temporary(p)]:
            leftover.unlink(missing_ok=True)  # an earlier, killed write
        return self

    def close(self) -> None:
        """Removes an empty staging folder, then releases the lock (in this order: the next experiment's staging
        folder is never removed)."""
        if self.lock is not None:
            with contextlib.suppress(OSError):
                self.staging.rmdir()  # nothing stored: leave nothing behind
            release_lock(self.lock_file, self.lock)
            self.lock = None

    def path(self, relative: str | os.PathLike) -> Path:
        return self.staging / relative

    def final_path(self, relative: str | os.PathLike) -> Path:
        return self.final / relative

    # reusable model outputs

    def store(self, stem: str, results: pd.DataFrame, key: str | None, description: Mapping[str, Any]) -> None:
        """Stores a model's output (a TREC run with exact scores, :func:`pyterrier_setenc.io.write_run`) with the key
        it was computed under and the run's SHA-256: ``STEM.run`` and ``STEM.json``, written as soon as the output
        exists. A failed write names the file (and the outputs already stored, which a rerun reuses)."""
        try:
            io.write_run(self.path(f"{stem}.run"), results, "stored")
            info = {"key": key, "sha256": sha256_file(self.path(f"{stem}.run")), **description}
            atomic_write(self.path(f"{stem}.json"), lambda file: json.dump(info, file, indent=1, default=str))
        except OSError as error:
            kept = sorted(self.stored - {stem})
            raise write_error(self.path(f"{stem}.run"), error) if not kept else OutputPathError(
                f"{write_error(self.path(f'{stem}.run'), error)}; the outputs already stored ({', '.join(kept)}) "
                f"stay in {self.staging} and are reused by a rerun") from error
        self.stored.add(stem)

    def _damaged(self, folder: Path, stem: str, info: dict) -> str | None:
        """Which stored file of ``stem`` in ``folder`` does not match its recorded SHA-256 (the digest in its
        ``.json``; for the current result also the manifest's), or ``None``."""
        run_path = folder / f"{stem}.run"
        expected = {run_path: [info.get("sha256")]}
        if folder == self.final:
            try:
                listed = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("files", {})
            except (OSError, ValueError, AttributeError):
                listed = {}
            expected[run_path].append(listed.get(f"{stem}.run"))
            expected[folder / f"{stem}.json"] = [listed.get(f"{stem}.json")]
        for path, digests in expected.items():
            digests = [d for d in digests if d is not None]
            if not digests:
                return f"{path} has no recorded SHA-256 (stored by an earlier version)"
            if any(sha256_file(path) != digest for digest in digests):
                return f"{path} does not match the SHA-256 recorded when it was stored (damaged or changed since)"
        return None

    def lookup(self, stem: str, key: str | None) -> pd.DataFrame | None:
        """The stored output of ``stem`` if it was computed under ``key`` (in the staging folder, else in the
        current result, from which it is copied over); ``None`` otherwise."""
        if key is None:
            return None
        for folder in (self.staging, self.final):
            info_path, run_path = folder / f"{stem}.json", folder / f"{stem}.run"
            try:
                info = json.loads(info_path.read_text(encoding="utf-8"))
                if not isinstance(info, dict) or info.get("key") != key:
                    continue
                damaged = self._damaged(folder, stem, info)
                if damaged is not None:
                    warnings.warn(f"{damaged}; it is not reused, the model's output is computed again",
                                  StoredOutputWarning, stacklevel=3)
                    continue
                frame = io.read_run(run_path)
            except (OSError, ValueError):
                continue  # missing or damaged: compute again
            if folder is self.final:
                self.store(stem, frame, key, {k: v for k, v in info.items() if k != "key"})
            self.stored.add(stem)
            return frame
        return None

    def commit(self, files: list[str], settings: Mapping[str, Any],
               details: Mapping[str, Any] | None = None) -> list[Path]:
        """Makes the staging folder the result: removes what is not among ``files`` (relative names; the stored
        model outputs of this result are kept), writes the manifest (``settings``, the files' SHA-256, and the
        ``details``: the environment and resources of :meth:`pipelines.common.ExperimentRun.commit`), swaps the
        folder in. Returns the final paths."""
        keep = {Path(name) for name in files}
        keep |= {Path(f"{stem}{suffix}") for stem in self.stored for suffix in (".run", ".json")}
        for path in sorted(self.staging.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            relative = path.relative_to(self.staging)
            if path.is_file() and relative not in keep:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        missing = [name for name in files if not self.path(name).is_file()]
        if missing:
            raise RuntimeError(f"the result misses its own files {missing}")
        manifest = {"written": datetime.now(timezone.utc).isoformat(timespec="seconds"), "settings": dict(settings),
                    **dict(details or {}), "files": {str(p): sha256_file(self.staging / p) for p in sorted(keep)}}
        atomic_write(self.path(MANIFEST), lambda file: json.dump(manifest, file, indent=1, default=str))
        try:
            replace_folder(self.staging, self.final)
        except OSError as error:
            raise write_error(self.final, error) from error
        self.close()
        return [self.final / name for name in files]


def verify_result(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a complete result folder, after checking that every file it lists is there with its SHA-256
    and that no other file is; raises :class:`OutputError` otherwise.

    >>> verify_result("results/dl19")["settings"]["experiment"]  # doctest: +SKIP
    'table1'
    """
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise OutputError(f"{folder}: no readable {MANIFEST} ({error})") from None
    listed = manifest.get("files", {})
    present = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST}
    if set(listed) != present:
        raise OutputError(f"{folder}: files not as in {MANIFEST}: missing {sorted(set(listed) - present)}, "
                          f"not listed {sorted(present - set(listed))}")
    changed = [name for name, digest in listed.items() if sha256_file(folder / name) != digest]
    if changed:
        raise OutputError(f"{folder}: files changed since {MANIFEST} was written: {changed}")
    return manifest
