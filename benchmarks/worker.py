"""Timed runs in a process of their own, so that the peak memory is theirs: loads a checkpoint, scores lists given in
a JSON file with one or more systems, writes per-list seconds, scores and memory to a JSON file.

    python -m benchmarks.worker CHECKPOINT LISTS.json OUT.json --systems set-encoder,mono,set-encoder-int8 \\
        [--threads 2] [--repeats 1] [--batch-size 32] [--max-length 512]

Systems: ``set-encoder``; ``mono``, the same checkpoint without inter-passage attention (the same backbone and the
same tokens, each passage scored on its own); ``set-encoder-int8``, ``set-encoder-bf16`` and ``set-encoder-fp16``,
the Set-Encoder with int8 linear layers or in half precision (:func:`pyterrier_setenc._engine.precision.set_precision`).
For a Hugging Face cross-encoder checkpoint, the peers: ``mono-reranker``, this package's
:class:`~pyterrier_setenc.MonoReRanker`, and ``st-cross-encoder``, sentence-transformers' ``CrossEncoder.predict``
(raw logits), both with ``--batch-size`` pairs per forward pass and ``--max-length`` tokens per pair. Several
systems are timed interleaved, list by list (alternating which goes first), so that the machine's drift hits them
alike; with ``--repeats k`` each system's fastest of k passes over the lists is kept.
This module also runs under lightning-ir's Python (see :mod:`benchmarks.lightning_ir_worker`) for its helpers, so
it imports the package only in :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections.abc import Callable
from typing import Any

SYSTEMS = {"set-encoder": "float32", "mono": "float32", "set-encoder-int8": "int8", "set-encoder-bf16": "bf16",
           "set-encoder-fp16": "fp16"}
PEERS = ("mono-reranker", "st-cross-encoder")  # pointwise scorers of a Hugging Face cross-encoder checkpoint
POINTWISE = frozenset({"mono", *PEERS})  # systems that score each passage on its own (no inter-passage attention)
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


def timed_runs(scorers: dict[str, Scorer], queries: list[str], lists: list[list[str]],
               repeats: int = 1) -> dict[str, dict]:
    """Seconds and scores per list and system, the systems interleaved list by list. A short list first warms up
    each system (allocations, thread pool), untimed. Of ``repeats`` passes over the lists, each system keeps the
    seconds of its fastest pass (``pass_seconds``: every pass's total; ``pass_cpu_seconds``: the process's CPU time
    in it, all threads, which a busy machine inflates less than wall time) and the scores of the first."""
    runs: dict[str, dict[str, list[Any]]] = {
        name: {"seconds": [], "scores": [], "pass_seconds": [], "pass_cpu_seconds": []} for name in scorers}
    for score in scorers.values():
        score(queries[0], lists[0][:10])
    for repeat in range(repeats):
        seconds: dict[str, list[float]] = {name: [] for name in scorers}
        cpu_seconds = dict.fromkeys(scorers, 0.0)
        for number, (query, passages) in enumerate(zip(queries, lists)):
            names = list(scorers) if (number + repeat) % 2 == 0 else list(reversed(scorers))
            for name in names:
                start, cpu_start = time.perf_counter(), time.process_time()
                scores = scorers[name](query, passages)
                seconds[name].append(time.perf_counter() - start)
                cpu_seconds[name] += time.process_time() - cpu_start
                if repeat == 0:
                    runs[name]["scores"].append(scores)
        for name, run in runs.items():
            run["pass_seconds"].append(sum(seconds[name]))
            run["pass_cpu_seconds"].append(cpu_seconds[name])
            if repeat == 0 or sum(seconds[name]) < sum(run["seconds"]):
                run["seconds"] = seconds[name]
    return runs


def measure(torch, threads: int, scorers: dict[str, Scorer], lists_file: str, out: str, repeats: int = 1,
            device: str = "cpu") -> None:
    """Times the scorers on the lists of ``lists_file`` (best of ``repeats`` passes) and writes the report to
    ``out`` (atomically). On a GPU (``device`` cuda...) the scorers' results, copied to the host, end each timing
    (the copy waits for the GPU), the matrix-product rate is left out and the peak GPU memory is reported."""
    with open(lists_file, encoding="utf-8") as file:
        data = json.load(file)
    gpu = device.startswith("cuda")
    loaded = rss_gib()
    reset_peak_rss()
    if gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rate_before = None if gpu else matmul_gflops(torch, threads)
    runs = timed_runs(scorers, data["queries"], data["lists"], repeats)
    rate_after = None if gpu else matmul_gflops(torch, threads)
    report = {"runs": runs, "rss_loaded_gib": loaded, "peak_rss_gib": peak_rss_gib(),
              "matmul_gflops": None if rate_before is None or rate_after is None else (rate_before + rate_after) / 2,
              "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if gpu else None}
    temporary = f"{out}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(report, file)
    os.replace(temporary, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("lists", help="JSON file {'queries': [...], 'lists': [[passage, ...], ...]}")
    parser.add_argument("out")
    parser.add_argument("--systems", default="set-encoder",
                        help=f"comma-separated of {', '.join([*SYSTEMS, *PEERS])}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="passes over the lists; the fastest is kept")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the package's systems only)")
    parser.add_argument("--batch-size", type=int, default=32, help="pairs per forward pass of the peers")
    parser.add_argument("--max-length", type=int, default=None,
                        help="tokens per pair of the peers (default: the checkpoint's)")
    args = parser.parse_args(argv)
    systems = args.systems.split(",")
    unknown = sorted(set(systems) - set(SYSTEMS) - set(PEERS))
    if unknown:
        parser.error(f"unknown systems {unknown}; known: {', '.join([*SYSTEMS, *PEERS])}")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")

    import torch

    from pyterrier_setenc._engine.numerics import quantize_int8
    from pyterrier_setenc._engine.precision import set_precision
    from pyterrier_setenc.model import CrossEncoder

    torch.set_num_threads(args.threads)
    models: dict[str, CrossEncoder] = {}

    def model_for(system: str) -> CrossEncoder:
        numerics = SYSTEMS[system]
        if numerics not in models:
            model = CrossEncoder.from_pretrained(args.checkpoint).to(args.device)
            if numerics in ("bf16", "fp16"):
                set_precision(model, torch.bfloat16 if numerics == "bf16" else torch.float16)
            elif numerics == "int8":
                quantize_int8(model)
            models[numerics] = model
        return models[numerics]

    def scorer(system: str) -> Scorer:
        if system in PEERS:
            return peer_scorer(system, args.checkpoint, args.batch_size, args.max_length)
        model = model_for(system)

        def score(query: str, passages: list[str]) -> list[float]:
            # mono shares the float32 model of set-encoder, without inter-passage attention
            return model.score_lists([query], [passages], listwise=system != "mono")[0].tolist()

        return score

    measure(torch, args.threads, {system: scorer(system) for system in systems}, args.lists, args.out,
            args.repeats, args.device)


def peer_scorer(system: str, checkpoint: str, batch_size: int, max_length: int | None) -> Scorer:
    """``mono-reranker`` or ``st-cross-encoder`` on a Hugging Face cross-encoder checkpoint, loaded offline; scores
    in the order of the passages."""
    import torch

    if system == "st-cross-encoder":
        from sentence_transformers import CrossEncoder as SentenceTransformersCrossEncoder

        peer = SentenceTransformersCrossEncoder(checkpoint, local_files_only=True, device="cpu",
                                                max_length=max_length, activation_fn=torch.nn.Identity())

        def st_score(query: str, passages: list[str]) -> list[float]:
            pairs = [(query, passage) for passage in passages]
            return peer.predict(pairs, batch_size=batch_size, show_progress_bar=False).tolist()

        return st_score

    import pandas as pd

    from pyterrier_setenc import MonoReRanker

    reranker = MonoReRanker(checkpoint, batch_size=batch_size, max_length=max_length, device="cpu", verbose=False)

    def score(query: str, passages: list[str]) -> list[float]:
        docnos = [f"d{number}" for number in range(len(passages))]
        frame = pd.DataFrame({"qid": "q", "query": query, "docno": docnos, "text": passages})
        return reranker.transform(frame).set_index("docno")["score"].loc[docnos].tolist()

    return score


if __name__ == "__main__":
    main()
