"""Atomic file writes: a temporary file beside the target, flushed to disk, then moved into place with
``os.replace``, so that no reader ever sees a half-written file and a failure leaves the earlier file as it was.

A temporary file is named ``.NAME.PID.RANDOM.tmp``. A write that is killed (``SIGKILL``, power loss) before its
rename cannot remove its own; the next successful write of the same target removes those of processes that no
longer run on this machine. :func:`check_writable` tries all of this on an output path before any work is done.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO

SUFFIX = ".tmp"


class OutputPathError(OSError):
    """An output path that cannot be written; the message names the path and the reason."""


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _create_temporary(path: Path) -> tuple[int, Path]:
    while True:
        temporary = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{SUFFIX}"
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), temporary
        except FileExistsError:
            continue


def _fsync_folder(folder: Path) -> None:
    """Makes a rename in ``folder`` durable (where the platform can)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def _process_runs(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Removes the temporary files that killed writes of ``path`` left behind: those of processes that no longer
    run (and those of the earlier naming without a process id). Returns the removed files.

    >>> remove_stale_temporaries("runs/bm25.run")  # doctest: +SKIP
    [PosixPath('runs/.bm25.run.4242.0f3a9c1e.tmp')]
    """
    path = Path(path)
    if os.name != "posix" or not path.parent.is_dir():
        return []
    ours = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.[0-9a-f]{{8}}{re.escape(SUFFIX)}")
    earlier = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}{re.escape(SUFFIX)}")  # tempfile.mkstemp's
    removed = []
    for candidate in path.parent.iterdir():
        match = ours.fullmatch(candidate.name)
        stale = (match is not None and (int(match[1]) <= 0 or not _process_runs(int(match[1])))) or \
            earlier.fullmatch(candidate.name) is not None
        if stale and candidate.is_file():
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def check_writable(path: str | os.PathLike) -> Path:
    """Checks, before any work is done, that ``path`` can be written atomically: makes its folder if missing and
    creates and removes a temporary file in it. Raises :class:`OutputPathError` naming the path otherwise.

    >>> check_writable("tirex-output/run.txt")  # doctest: +SKIP
    PosixPath('tirex-output/run.txt')
    """
    path = Path(path)
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(f"output {folder} is a file; it must be a folder")
    if path.is_dir():
        raise OutputPathError(f"output {path} is a folder; it must be a file or not exist")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = _create_temporary(path)
        os.close(handle)
        os.unlink(temporary)
    except OSError as error:
        raise OutputPathError(f"output folder {folder} cannot be written ({type(error).__name__}: "
                              f"{error.strerror or error})") from None
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], binary: bool = False) -> Path:
    """Calls ``write(file)`` on a temporary file beside ``path``, then renames it to ``path``; on failure the
    temporary file is removed and ``path`` is as it was. After the rename, temporary files of ``path`` that killed
    writes left behind are removed.

    >>> atomic_write("run.txt", lambda file: file.write("1 Q0 d1 1 2.5 tag\\n"))  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = _create_temporary(path)
    try:
        with os.fdopen(handle, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})) \
                as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~current_umask())  # created owner-only, like mkstemp's files
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    remove_stale_temporaries(path)
    return path
