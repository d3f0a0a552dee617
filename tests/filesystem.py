"""A file system that fails in the middle of a write, for the tests of outputs: the write path of
:func:`pyterrier_setenc.atomic.atomic_write` (the temporary file's ``write`` or the final ``os.replace``) raises the
``OSError`` a full (``ENOSPC``), read-only (``EROFS``) or forbidden (``EACCES``) file system raises, for the targets
chosen; nothing fills a real disk."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

from pyterrier_setenc import atomic

CODES = {"ENOSPC": errno.ENOSPC, "EROFS": errno.EROFS, "EACCES": errno.EACCES}


class _HalfWritingFile:
    """A file whose writes stop half-way with ``code`` (what a file system that fills up does)."""

    def __init__(self, file, code: int):
        self.file, self.code = file, code

    def write(self, data):
        self.file.write(data[: len(data) // 2])
        raise OSError(self.code, os.strerror(self.code))

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()
        return False


class Failures(list):
    """The paths whose write failed (filled as they fail); :meth:`stop` makes the file system work again."""

    def stop(self) -> None:
        self.active = False


def fail_writes(monkeypatch, matches: Callable[[Path], bool], code: str = "ENOSPC", at: str = "write") -> Failures:
    """Makes atomic writes of the paths ``matches`` accepts fail with ``code``: ``at="write"`` half-way through the
    data, ``at="replace"`` when the complete file is moved into place, ``at="create"`` when the temporary file is
    made; until :meth:`Failures.stop`."""
    number = CODES[code]
    failed = Failures()
    failed.active = True
    chosen = matches

    def matches(path: Path) -> bool:  # noqa: F811
        return failed.active and chosen(path)

    real_create, real_fdopen, real_replace = atomic._create_temporary, os.fdopen, os.replace
    handles: dict[int, Path] = {}
    temporaries: dict[str, Path] = {}

    def create(path):
        if at == "create" and matches(Path(path)):
            failed.append(Path(path))
            raise OSError(number, os.strerror(number), str(path))
        handle, temporary = real_create(path)
        if matches(Path(path)):
            handles[handle], temporaries[str(temporary)] = Path(path), Path(path)
        return handle, temporary

    def fdopen(handle, *args, **kwargs):
        file = real_fdopen(handle, *args, **kwargs)
        if at == "write" and handles.get(handle) is not None:
            failed.append(handles.pop(handle))
            return _HalfWritingFile(file, number)
        return file

    def replace(source, target, *args, **kwargs):
        if at == "replace" and str(source) in temporaries:
            failed.append(temporaries.pop(str(source)))
            raise OSError(number, os.strerror(number))
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(atomic, "_create_temporary", create)
    monkeypatch.setattr(atomic.os, "fdopen", fdopen)
    monkeypatch.setattr(atomic.os, "replace", replace)
    return failed
