"""One timed run in a process of its own, so that its peak memory is its own: loads a checkpoint, scores lists given
in a JSON file, writes per-list seconds, scores and memory to a JSON file.

    python -m benchmarks.worker CHECKPOINT LISTS.json OUT.json --system set-encoder|mono [--int8 | --bf16] \\
        [--threads 2]

``--system mono`` runs the same checkpoint without inter-passage attention: the same backbone and the same tokens,
each passage scored on its own. This module also runs under lightning-ir's Python (see
:mod:`benchmarks.lightning_ir_worker`) for its helpers, so it imports the package only in :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time


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


def write_json(path: str, payload: dict) -> None:
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(payload, file)
    os.replace(temporary, path)


def timed_runs(score, queries: list[str], lists: list[list[str]]) -> tuple[list[float], list[list[float]]]:
    """Seconds and scores per list; ``score(query, passages)`` returns a list of floats. A short list first warms
    up the process (allocations, thread pool), untimed."""
    score(queries[0], lists[0][:10])
    seconds, scores = [], []
    for query, passages in zip(queries, lists):
        start = time.perf_counter()
        scores.append(score(query, passages))
        seconds.append(time.perf_counter() - start)
    return seconds, scores


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("lists", help="JSON file {'queries': [...], 'lists': [[passage, ...], ...]}")
    parser.add_argument("out")
    parser.add_argument("--system", choices=("set-encoder", "mono"), default="set-encoder")
    numerics = parser.add_mutually_exclusive_group()
    numerics.add_argument("--int8", action="store_true", help="int8 dynamic quantization of the linear layers")
    numerics.add_argument("--bf16", action="store_true", help="the whole model in bfloat16")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    from pyterrier_setenc.model import CrossEncoder
    from pyterrier_setenc.numerics import quantize_int8

    torch.set_num_threads(args.threads)
    with open(args.lists, encoding="utf-8") as file:
        data = json.load(file)
    model = CrossEncoder.from_pretrained(args.checkpoint)
    if args.system == "mono":
        model.listwise = False
    if args.bf16:
        model.to(torch.bfloat16)
    if args.int8:
        quantize_int8(model)
    loaded = rss_gib()
    reset_peak_rss()

    def score(query: str, passages: list[str]) -> list[float]:
        return model.score_lists([query], [passages])[0].tolist()

    rate_before = matmul_gflops(torch, args.threads)
    seconds, scores = timed_runs(score, data["queries"], data["lists"])
    rate_after = matmul_gflops(torch, args.threads)
    write_json(args.out, {"seconds": seconds, "scores": scores, "rss_loaded_gib": loaded,
                          "peak_rss_gib": peak_rss_gib(), "matmul_gflops": (rate_before + rate_after) / 2})


if __name__ == "__main__":
    main()
