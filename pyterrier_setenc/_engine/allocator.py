"""Freed memory kept for reuse (Linux, glibc): the encoder's buffers then come without page faults.

Every layer of the encoder allocates buffers of several MiB (projections, attention layouts, feed-forward states) and
frees them again. glibc serves blocks above its mmap threshold (at most 32 MiB by default) with fresh memory maps and
returns freed memory at the heap's top beyond its trim threshold to the system, so the next layer's buffers are fresh
pages that the kernel zero-fills on first touch: about 150,000 page faults per DL19 list of 100 passages for a
Set-Encoder of ELECTRA-base size, against about 10,000 with freed memory kept. :func:`keep_freed_memory` raises
both thresholds once per process, so freed blocks stay in the heap and are reused.
:class:`~pyterrier_setenc._engine.encoder.Backbone` calls it before its first pass on the CPU.

The process's own settings win: with ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or a ``glibc.malloc``
tunable in ``GLIBC_TUNABLES`` set (e.g. ``MALLOC_TRIM_THRESHOLD_=131072``, glibc's initial trim threshold, to
return freed memory as soon as before), and on other C libraries, nothing changes.

>>> keep_freed_memory()  # doctest: +SKIP
True
"""

from __future__ import annotations

import ctypes
import os

MMAP_THRESHOLD = 64 << 20  # blocks up to this size come from the heap rather than from memory maps of their own
TRIM_THRESHOLD = 256 << 20  # freed memory at the top of the heap is returned to the system beyond this size
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (glibc's malloc.h)
_OWN_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

_kept: bool | None = None


def keep_freed_memory() -> bool:
    """Raises glibc's mmap threshold to :data:`MMAP_THRESHOLD` and its trim threshold to :data:`TRIM_THRESHOLD`, once
    per process; returns whether they are raised (False where the process sets its own or the C library is not
    glibc)."""
    global _kept
    if _kept is None:
        _kept = _raise_thresholds()
    return _kept


def _raise_thresholds() -> bool:
    if any(name in os.environ for name in _OWN_SETTINGS) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return False
        mallopt = ctypes.CDLL(None).mallopt  # the process's C library
    except (AttributeError, OSError, ValueError):
        return False
    return mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
