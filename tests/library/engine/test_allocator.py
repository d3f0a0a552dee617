"""Freed memory kept for reuse (glibc): a block freed and allocated again comes (mostly) without page faults. The
fault counts are the kernel's (``getrusage``), counted in a fresh process with transparent huge pages off, so that
each 4 KiB page touched for the first time is one fault."""

import os
import subprocess
import sys
import textwrap

import pytest

from builders import REPO


def glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (OSError, ValueError):
        return False


pytestmark = pytest.mark.skipif(not glibc(), reason="the thresholds are glibc's")

BLOCK_PAGES = 48 << 8  # 48 MiB of 4 KiB pages: above glibc's largest default mmap threshold (32 MiB)
ROUNDS = 8

FAULTS = textwrap.dedent(f"""
    import ctypes, resource, sys
    ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE: 4 KiB pages only
    import torch
    from pyterrier_setenc._engine import allocator
    kept = allocator.keep_freed_memory() if sys.argv[1] == "keep" else None
    for _ in range({ROUNDS}):  # settling in: the heap grows to hold the block
        torch.ones({BLOCK_PAGES} * 1024)  # allocated, every page touched, freed
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range({ROUNDS}):
        torch.ones({BLOCK_PAGES} * 1024)
    print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
""")


def faults_of_reallocation(mode: str, **environment: str) -> tuple[str, int]:
    """(what keep_freed_memory returned, page faults of allocating and filling the 48 MiB block ROUNDS times after
    ROUNDS times of settling in)."""
    done = subprocess.run([sys.executable, "-c", FAULTS, mode], cwd=REPO, capture_output=True, text=True, check=True,
                          env={**os.environ, **environment})
    kept, faults = done.stdout.split()
    return kept, int(faults)


def test_a_freed_block_is_reused_without_page_faults():
    kept, faults = faults_of_reallocation("keep")
    assert kept == "True"
    # most rounds reuse the block (0 faults); the machine may still reclaim idle free pages now and then
    assert faults <= ROUNDS * BLOCK_PAGES // 4
    # glibc's defaults map the block afresh each time: every page faults again (the test's counter works)
    default, default_faults = faults_of_reallocation("default")
    assert default == "None"
    assert default_faults >= ROUNDS * BLOCK_PAGES * 0.9


def test_a_process_with_its_own_malloc_settings_keeps_them():
    kept, faults = faults_of_reallocation("keep", MALLOC_MMAP_THRESHOLD_=str(128 << 10))
    assert kept == "False"
    assert faults >= ROUNDS * BLOCK_PAGES * 0.9
    kept, _ = faults_of_reallocation("keep", GLIBC_TUNABLES="glibc.malloc.trim_threshold=131072")
    assert kept == "False"


def test_the_encoder_keeps_freed_memory_on_the_cpu(monkeypatch, fixture_model):
    calls = []
    monkeypatch.setattr("pyterrier_setenc._engine.encoder.keep_freed_memory", lambda: calls.append(1) or True)
    model = fixture_model("setenc-int")
    model.score_lists(["a query"], [["one passage", "another passage"]])
    assert calls
