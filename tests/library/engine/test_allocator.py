"""Freed memory kept for reuse (glibc): a block freed and allocated again comes without page faults once the heap
has settled. The fault counts are the kernel's (``getrusage``), counted in a fresh process with transparent huge pages
off, so that each 4 KiB page touched for the first time is one fault.

Settling: torch allocates with ``posix_memalign``, and glibc before 2.38 serves an aligned request only from a free
chunk somewhat larger than the request, so a freed block of exactly the same size is not taken at once. The heap grows
by a few blocks until freed neighbours have merged; from then on the same blocks are reused (6 to 10 rounds on
glibc 2.36 here). The test therefore asks for a run of fault-free rounds within a bound, not for a fixed count."""

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
SETTLING_BOUND = 96  # rounds within which the heap must have settled
REUSED = BLOCK_PAGES // 8  # a round with fewer faults than this reused the block (a fresh one faults BLOCK_PAGES times)

FAULTS = textwrap.dedent("""
    import ctypes, resource, sys
    ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE: 4 KiB pages only
    import torch
    from pyterrier_setenc._engine import allocator
    kept = allocator.keep_freed_memory() if sys.argv[1] == "keep" else None
    faults = []
    for _ in range(int(sys.argv[2])):
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(int(sys.argv[3]) * 1024)  # allocated, every page touched, freed
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
    print(kept, *faults)
""")


def faults_of_reallocation(mode: str, rounds: int = ROUNDS, **environment: str) -> tuple[str, list[int]]:
    """(what keep_freed_memory returned, the page faults of each of ``rounds`` rounds of allocating the 48 MiB block,
    touching every page and freeing it)."""
    done = subprocess.run([sys.executable, "-c", FAULTS, mode, str(rounds), str(BLOCK_PAGES)], cwd=REPO,
                          capture_output=True, text=True, check=True, env={**os.environ, **environment})
    kept, *faults = done.stdout.split()
    return kept, [int(count) for count in faults]


def settled(faults: list[int]) -> bool:
    """Whether ROUNDS rounds in a row reused the block."""
    run = 0
    for count in faults:
        run = run + 1 if count < REUSED else 0
        if run == ROUNDS:
            return True
    return False


def test_a_freed_block_is_reused_without_page_faults():
    kept, faults = faults_of_reallocation("keep", SETTLING_BOUND)
    assert kept == "True"
    assert settled(faults), f"no {ROUNDS} fault-free rounds in a row within {SETTLING_BOUND}: {faults}"
    # glibc's defaults map the block afresh each time: every page faults again in every round (the counter works,
    # and the check above would fail without keep_freed_memory)
    default, default_faults = faults_of_reallocation("default", 2 * ROUNDS)
    assert default == "None"
    assert min(default_faults) >= BLOCK_PAGES * 0.9
    assert not settled(default_faults)


def test_settled_counts_only_runs_of_reuse():
    fresh = BLOCK_PAGES
    assert settled([fresh, fresh] + [0] * ROUNDS)
    assert not settled([0] * (ROUNDS - 1) + [fresh] + [0] * (ROUNDS - 1))
    assert not settled([REUSED] * (2 * ROUNDS))


def test_a_process_with_its_own_malloc_settings_keeps_them():
    kept, faults = faults_of_reallocation("keep", MALLOC_MMAP_THRESHOLD_=str(128 << 10))
    assert kept == "False"
    assert min(faults) >= BLOCK_PAGES * 0.9
    kept, _ = faults_of_reallocation("keep", GLIBC_TUNABLES="glibc.malloc.trim_threshold=131072")
    assert kept == "False"


def test_the_encoder_keeps_freed_memory_on_the_cpu(monkeypatch, fixture_model):
    calls = []
    monkeypatch.setattr("pyterrier_setenc._engine.encoder.keep_freed_memory", lambda: calls.append(1) or True)
    model = fixture_model("setenc-int")
    model.score_lists(["a query"], [["one passage", "another passage"]])
    assert calls
