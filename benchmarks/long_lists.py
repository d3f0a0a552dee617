"""How the cost of one query's list grows with its length: one list of n passages (default 1,000, 2,000, 4,000)
scored by a Set-Encoder re-ranker (default the tiny test fixture ``tests/fixtures/setenc-int``), each size after a
warm-up, with the progress bar on (its updates counted) and the machine described (torch's CPU capability).

The passages are generated (about 45 word pieces each, all distinct), so the figure is the model's and not the
data's; the time per passage shows the growth: every passage attends to the interaction token of every other one
in each layer, so the attention part grows with the square of the list's length.

    python -m benchmarks.long_lists [--sizes 1000,2000,4000] [--model FOLDER] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

WORDS = ["lobster", "shell", "molt", "ocean", "claw", "water", "boil", "roll", "maine", "trap", "sea", "floor",
         "crab", "eat", "grow", "week"]


def passage(number: int) -> str:
    return " ".join(WORDS[(number * 7 + k * 3) % len(WORDS)] for k in range(40)) + f" number {number}"


def long_list(size: int) -> pd.DataFrame:
    return pd.DataFrame(dict(qid="q1", query="how do lobsters molt", docno=[f"d{i}" for i in range(size)],
                             text=[passage(i) for i in range(size)]))


def main(argv: list[str] | None = None) -> None:
    import pyterrier as pt
    import torch

    from benchmarks.machine import describe
    from pyterrier_setenc import SetEncoderReRanker

    parser = argparse.ArgumentParser(prog="python -m benchmarks.long_lists", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,2000,4000")
    parser.add_argument("--model", default=str(Path(__file__).parents[1] / "tests" / "fixtures" / "setenc-int"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}; {describe('cpu', args.threads)}")
    updates = []
    real_tqdm = pt.tqdm

    def counting_tqdm(*a, **kw):
        bar = real_tqdm(*a, **{**kw, "file": open(os.devnull, "w")})  # noqa: SIM115 (on, but not printed; the bar outlives this call)
        update = bar.update

        def counted_update(n=1):
            updates.append(n)
            return update(n)

        bar.update = counted_update
        return bar

    pt.tqdm = counting_tqdm
    reranker = SetEncoderReRanker(args.model, device="cpu", verbose=True)
    reranker(long_list(50))
    print("| passages | seconds | ms a passage | progress updates |\n| ---: | ---: | ---: | ---: |")
    for size in [int(s) for s in args.sizes.split(",")]:
        frame = long_list(size)
        updates.clear()
        start = time.perf_counter()
        reranker(frame)
        seconds = time.perf_counter() - start
        print(f"| {size:,} | {seconds:.1f} | {seconds / size * 1000:.2f} | {len(updates)} |", flush=True)


if __name__ == "__main__":
    main()
