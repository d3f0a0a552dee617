"""Atomic file writes: a temporary file beside the target, flushed to disk, then moved into place with
``os.replace``, so that no reader ever sees a half-written file and a failure leaves the earlier file as it was.

A folder is written the same way (:func:`atomic_folder`): into a staging folder beside it, which then takes its
place (:func:`replace_folder`), exchanged with the earlier folder in one step where Linux offers it.

A temporary file or staging folder is named ``.NAME.PID.RANDOM.tmp``. A write that is killed (``SIGKILL``, power
loss) before its rename cannot remove its own; the next successful write of the same target removes those of
processes that no longer run on this machine. :func:`check_writable` tries all of this on an output path before any
work is done. A failed write (a full or read-only file system, no permission) is an :class:`OutputPathError` that
names the file.

A symbolic link in an output path is followed; one that points nowhere is refused, named with its target
(:func:`path_problem`). :func:`acquire_lock` and :func:`lock_folder` keep two processes from writing one output at
once.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
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
    """An output path that cannot be written; the message names the path and the reason (``errno`` is the
    underlying error's, where there is one)."""


def write_error(path: str | os.PathLike, error: OSError) -> OutputPathError:
    """An :class:`OutputPathError` naming ``path`` for an ``OSError`` raised while writing it (a full or read-only
    file system, no permission), with the same ``errno``."""
    if isinstance(error, OutputPathError):
        return error
    reason = error.strerror or str(error)
    code = errno.errorcode.get(error.errno, "") if error.errno is not None else ""
    hint = {errno.ENOSPC: "; the file system is full", errno.EDQUOT: "; the disk quota is used up",
            errno.EROFS: "; the file system is read-only", errno.EACCES: "; no permission to write there",
            errno.EPERM: "; no permission to write there"}.get(error.errno, "") if error.errno is not None else ""
    failure = OutputPathError(f"{path} could not be written ({code + ': ' if code else ''}{reason}{hint})")
    failure.errno = error.errno
    return failure


def path_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` or a folder above it cannot hold a folder: a symbolic link that points nowhere, or a file
    (also through a link); ``None`` when there is no such problem (``path`` may still be missing).

    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> os.symlink("/nonexistent/gone", f"{folder}/results")
    >>> path_problem(f"{folder}/results/out").removeprefix(folder)
    '/results is a symbolic link to /nonexistent/gone, which does not exist'
    >>> path_problem(f"{folder}/out") is None
    True
    """
    path = Path(path)
    for part in [path, *path.parents][::-1]:
        if part.is_symlink() and not part.exists():
            return f"{part} is a symbolic link to {os.readlink(part)}, which does not exist"
        if part.exists() and not part.is_dir():
            what = f"a symbolic link to the file {part.resolve()}" if part.is_symlink() else "a file"
            return f"{part} is {what}, not a folder"
    return None


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

    >>> import tempfile
    >>> from pathlib import Path
    >>> runs = Path(tempfile.mkdtemp())
    >>> _ = (runs / ".bm25.run.0.0f3a9c1e.tmp").write_text("half a run")  # no process has the id 0
    >>> [path.name for path in remove_stale_temporaries(runs / "bm25.run")]
    ['.bm25.run.0.0f3a9c1e.tmp']
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

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> check_writable(f"{folder}/tirex-output/run.txt").relative_to(folder)
    PosixPath('tirex-output/run.txt')
    """
    path = Path(path)
    folder = path.parent
    if folder.is_symlink() and not folder.exists():
        raise OutputPathError(f"output folder {folder} is a symbolic link to {os.readlink(folder)}, which does not "
                              "exist; make that folder or remove the link")
    if folder.exists() and not folder.is_dir():
        what = f"a symbolic link to the file {folder.resolve()}" if folder.is_symlink() else "a file"
        raise OutputPathError(f"output {folder} is {what}; it must be a folder")
    problem = path_problem(folder)
    if problem:
        raise OutputPathError(f"output folder {folder} cannot be written: {problem}")
    if path.is_dir():
        raise OutputPathError(f"output {path} is a folder; it must be a file or not exist")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = _create_temporary(path)
        os.close(handle)
        os.unlink(temporary)
    except OSError as error:
        failure = OutputPathError(f"output folder {folder} cannot be written ({type(error).__name__}: "
                                  f"{error.strerror or error})")
        failure.errno = error.errno
        raise failure from None
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[IO], object], binary: bool = False) -> Path:
    """Calls ``write(file)`` on a temporary file beside ``path``, then renames it to ``path``; on failure the
    temporary file is removed, ``path`` is as it was and an ``OSError`` is an :class:`OutputPathError` naming
    ``path``. A symbolic link at ``path`` is replaced by the file (its target is not touched). After the rename,
    temporary files of ``path`` that killed writes left behind are removed.

    >>> import tempfile
    >>> path = atomic_write(f"{tempfile.mkdtemp()}/run.txt", lambda file: file.write("1 Q0 d1 1 2.5 tag\\n"))
    >>> open(path).read()
    '1 Q0 d1 1 2.5 tag\\n'
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = _create_temporary(path)
    except OSError as error:
        problem = path_problem(path.parent)
        raise (OutputPathError(f"{path} could not be written: {problem}") if problem else write_error(path, error)) \
            from error
    try:
        with (os.fdopen(handle, "wb") if binary else os.fdopen(handle, "w", encoding="utf-8", newline="")) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~current_umask())  # created owner-only, like mkstemp's files
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise write_error(path, error) from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    remove_stale_temporaries(path)
    return path


# --- locks -----------------------------------------------------------------------------------------------------------

def acquire_lock(lock_file: str | os.PathLike) -> int:
    """Takes an exclusive lock on ``lock_file`` (created if missing, the holder's process id written into it) and
    returns its handle for :func:`release_lock`. Raises ``BlockingIOError`` at once when another process (or another
    handle of this one) holds it; the lock ends with the process, also a killed one. A lock file that its holder
    removed while this call waited is not taken: the call takes the one now at the path.

    >>> import tempfile
    >>> lock = f"{tempfile.mkdtemp()}/.run.txt.lock"
    >>> handle = acquire_lock(lock)
    >>> acquire_lock(lock)  # held  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    BlockingIOError: [Errno 11] Resource temporarily unavailable
    >>> release_lock(lock, handle)
    """
    lock_file = Path(lock_file)
    while True:
        handle = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(handle)
            raise
        try:
            current = os.path.samestat(os.fstat(handle), os.stat(lock_file))
        except FileNotFoundError:
            current = False
        if current:
            os.ftruncate(handle, 0)
            os.write(handle, f"{os.getpid()}\n".encode())
            return handle
        os.close(handle)  # removed (and perhaps made again) by its holder meanwhile: take the one at the path


def lock_folder(folder: str | os.PathLike) -> int:
    """Takes an exclusive lock on the folder itself (no file is made in it, so a killed holder leaves nothing
    behind) and returns its handle, to be closed with ``os.close``. Raises ``BlockingIOError`` at once when another
    process (or another handle of this one) holds it.

    >>> import os, tempfile
    >>> handle = lock_folder(tempfile.mkdtemp())
    >>> os.close(handle)
    """
    handle = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(handle)
        raise
    return handle


def lock_holder(lock_file: str | os.PathLike) -> str:
    """Who holds ``lock_file``, for messages: ``"process 4242"`` (or ``"another process"``)."""
    try:
        pid = Path(lock_file).read_text(encoding="utf-8").strip()
    except OSError:
        pid = ""
    return f"process {pid}" if pid.isdigit() else "another process"


def release_lock(lock_file: str | os.PathLike, handle: int) -> None:
    """Removes ``lock_file`` and releases the lock taken by :func:`acquire_lock` (removed while still held, so that
    no other process can take a lock on a file that is then removed)."""
    try:
        Path(lock_file).unlink(missing_ok=True)
    except OSError:
        pass  # a read-only folder: the lock ends anyway
    finally:
        os.close(handle)


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

    >>> import tempfile
    >>> from pathlib import Path
    >>> results = Path(tempfile.mkdtemp())
    >>> (results / ".dl19.partial").mkdir()
    >>> replace_folder(results / ".dl19.partial", results / "dl19").relative_to(results)
    PosixPath('dl19')
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
    folders that killed writes of ``folder`` left behind are removed after the swap. A ``folder`` that is a symbolic
    link to a folder is followed (the link stays); one that points nowhere or to a file is an
    :class:`OutputPathError` naming it.

    >>> import os, tempfile
    >>> folder = f"{tempfile.mkdtemp()}/checkpoints/model"
    >>> with atomic_folder(folder) as staging:
    ...     _ = (staging / "config.json").write_text("{}")
    >>> os.listdir(folder)
    ['config.json']
    """
    folder = Path(folder)
    if folder.is_symlink() and folder.is_dir():  # a folder on another disk: written beside the link's target
        folder = folder.resolve()
    problem = path_problem(folder)
    if problem:
        raise OutputPathError(f"{folder} cannot be written: {problem}")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise write_error(folder, error) from error
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
