"""Timed runs in a process of their own, so that the peak memory is theirs: loads a checkpoint, scores lists given in
a JSON file with one or more systems, writes per-list seconds, scores and memory to a JSON file.

    python -m benchmarks.worker CHECKPOINT LISTS.json OUT.json --systems set-encoder,mono,set-encoder-int8 \\
        [--threads 2]

Systems: ``set-encoder``; ``mono``, the same checkpoint without inter-passage attention (the same backbone and the
same tokens, each passage scored on its own); ``set-encoder-int8`` and ``set-encoder-bf16``, the Set-Encoder with
int8 dynamic quantization or in bfloat16. Several systems are timed interleaved, list by list (alternating which
goes first), so that the machine's drift hits them alike. This module also runs under lightning-ir's Python (see
:mod:`benchmarks.lightning_ir_worker`) for its helpers, so it imports the package only in :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections.abc import Callable

SYSTEMS = {"set-encoder": "float32", "mono": "float32", "set-encoder-int8": "int8", "set-encoder-bf16": "bf16"}
Scorer = Callable[[str, list[str]], list[float]]


def rss_gib() -> float:
    """Resident memory now, in GiB."""
    with open("/proc/self/statm", encoding="ascii") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def reset_peak_rss() -> bool:
    """Starts a new peak-memory count (Linux ``clear_refs``), so that the peak of loading a checkpoint is not
    reported as the peak of scoring; False where the system does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as file:
            file.write("5")
        return True
    except OSError:
        return False


def peak_rss_gib() -> float:
    """Peak resident memory of this process since :func:`reset_peak_rss` (or since it started), in GiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as file:
            for line in file:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def matmul_gflops(torch, threads: int, rows: int = 2048, repeats: int = 10) -> float:
    """Best rate of float32 matrix products of the encoder's largest shape (rows x 768 x 3072), in GFLOP/s."""
    torch.set_num_threads(threads)
    a, b = torch.randn(rows, 768), torch.randn(768, 3072)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * rows * 768 * 3072 / best / 1e9


def timed_runs(scorers: dict[str, Scorer], queries: list[str], lists: list[list[str]]) -> dict[str, dict]:
    """Seconds and scores per list and system, the systems interleaved list by list. A short list first warms up
    each system (allocations, thread pool), untimed."""
    runs = {name: {"seconds": [], "scores": []} for name in scorers}
    for score in scorers.values():
        score(queries[0], lists[0][:10])
    for number, (query, passages) in enumerate(zip(queries, lists)):
        names = list(scorers) if number % 2 == 0 else list(reversed(scorers))
        for name in names:
            start = time.perf_counter()
            runs[name]["scores"].append(scorers[name](query, passages))
            runs[name]["seconds"].append(time.perf_counter() - start)
    return runs


def measure(torch, threads: int, scorers: dict[str, Scorer], lists_file: str, out: str) -> None:
    """Times the scorers on the lists of ``lists_file`` and writes the report to ``out`` (atomically)."""
    with open(lists_file, encoding="utf-8") as file:
        data = json.load(file)
    loaded = rss_gib()
    reset_peak_rss()
    rate_before = matmul_gflops(torch, threads)
    runs = timed_runs(scorers, data["queries"], data["lists"])
    rate_after = matmul_gflops(torch, threads)
    report = {"runs": runs, "rss_loaded_gib": loaded, "peak_rss_gib": peak_rss_gib(),
              "matmul_gflops": (rate_before + rate_after) / 2}
    temporary = f"{out}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(report, file)
    os.replace(temporary, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("lists", help="JSON file {'queries': [...], 'lists': [[passage, ...], ...]}")
    parser.add_argument("out")
    parser.add_argument("--systems", default="set-encoder", help=f"comma-separated of {', '.join(SYSTEMS)}")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    systems = args.systems.split(",")
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown systems {unknown}; known: {', '.join(SYSTEMS)}")

    import torch

    from pyterrier_setenc.model import CrossEncoder
    from pyterrier_setenc.numerics import quantize_int8

    torch.set_num_threads(args.threads)
    models: dict[str, CrossEncoder] = {}

    def model_for(system: str) -> CrossEncoder:
        numerics = SYSTEMS[system]
        if numerics not in models:
            model = CrossEncoder.from_pretrained(args.checkpoint)
            if numerics == "bf16":
                model.to(torch.bfloat16)
            elif numerics == "int8":
                quantize_int8(model)
            models[numerics] = model
        return models[numerics]

    def scorer(system: str) -> Scorer:
        model = model_for(system)

        def score(query: str, passages: list[str]) -> list[float]:
            # mono shares the float32 model of set-encoder, without inter-passage attention
            return model.score_lists([query], [passages], listwise=system != "mono")[0].tolist()

        return score

    measure(torch, args.threads, {system: scorer(system) for system in systems}, args.lists, args.out)


if __name__ == "__main__":
    main()
