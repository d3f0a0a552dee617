"""Atomic file writes: a temporary file beside the target, flushed to disk, then moved into place with
``os.replace``, so that no reader ever sees a half-written file and a failure leaves the earlier file as it was.

A folder is written the same way (:func:`atomic_folder`): into a staging folder beside it, which then takes its
place (:func:`replace_folder`), exchanged with the earlier folder in one step where Linux offers it.

A temporary file or staging folder is named ``.NAME.PID.RANDOM.tmp``. A write that is killed (``SIGKILL``, power
loss) before its rename cannot remove its own; the next successful write of the same target removes those of
processes that no longer run on this machine. :func:`check_writable` tries all of this on an output path before any
work is done.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

SUFFIX = ".tmp"


class OutputPathError(OSError):
    """An output path that cannot be written; the message names the path and the reason."""


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temporary_name(path: Path) -> Path:
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{SUFFIX}"


def _create_temporary(path: Path) -> tuple[int, Path]:
    while True:
        temporary = _temporary_name(path)
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
    """Removes the temporary files (and staging folders) that killed writes of ``path`` left behind: those of
    processes that no longer run (and files of the earlier naming without a process id). Returns what it removed.

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
        elif stale and match is not None and candidate.is_dir():
            shutil.rmtree(candidate, ignore_errors=True)
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


# --- folders ---------------------------------------------------------------------------------------------------------

def exchange_folders(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swaps two folders in one step (Linux ``renameat2(RENAME_EXCHANGE)``); ``False`` where that is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, f"cannot swap {a} and {b}: {os.strerror(code)}")


def replace_folder(complete: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Puts the folder ``complete`` (on the same file system, e.g. beside it) in the place of ``folder``: exchanged
    with the earlier ``folder`` in one step (:func:`exchange_folders`), which is then removed; where that is
    unavailable the earlier folder is first moved aside to ``.NAME.old``, a short window in which ``folder`` is
    absent. Returns ``folder``.

    >>> replace_folder("results/.dl19.partial", "results/dl19")  # doctest: +SKIP
    PosixPath('results/dl19')
    """
    complete, folder = Path(complete), Path(folder)
    if not folder.exists():
        os.rename(complete, folder)
    elif exchange_folders(complete, folder):
        shutil.rmtree(complete)  # now the earlier folder
    else:
        old = folder.parent / f".{folder.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(folder, old)
        os.rename(complete, folder)
        shutil.rmtree(old)
    _fsync_folder(folder.parent)
    return folder


@contextmanager
def atomic_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """An empty staging folder beside ``folder`` to write into; when the block ends without an error it takes the
    place of ``folder`` (:func:`replace_folder`), otherwise it is removed and ``folder`` is as it was. Staging
    folders that killed writes of ``folder`` left behind are removed after the swap.

    >>> with atomic_folder("checkpoints/model") as staging:  # doctest: +SKIP
    ...     (staging / "config.json").write_text("{}")
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    while True:
        staging = _temporary_name(folder)
        try:
            staging.mkdir()
            break
        except FileExistsError:
            continue
    try:
        yield staging
        replace_folder(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    remove_stale_temporaries(folder)
