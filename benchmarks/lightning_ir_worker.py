"""The reference run: lightning-ir 0.0.6 scores the same lists with the same checkpoint, one list per forward pass
(as ``CrossEncoderModule.score`` is used), timed like :mod:`benchmarks.worker`. Run it with a Python that has
lightning-ir 0.0.6 and transformers < 5 (see ``tests/reference/README.md``)::

    /path/to/reference/python benchmarks/lightning_ir_worker.py CHECKPOINT LISTS.json OUT.json [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.worker import (matmul_gflops, peak_rss_gib, reset_peak_rss, rss_gib, timed_runs,  # noqa: E402
                               write_json)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("lists")
    parser.add_argument("out")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from lightning_ir import CrossEncoderModule, LightningIRModel

    torch.set_num_threads(args.threads)
    with open(args.lists, encoding="utf-8") as file:
        data = json.load(file)
    model = LightningIRModel.from_pretrained(args.checkpoint, dtype=torch.float32).eval()
    module = CrossEncoderModule(model=model).eval()
    loaded = rss_gib()
    reset_peak_rss()

    def score(query: str, passages: list[str]) -> list[float]:
        with torch.no_grad():
            return module.score([query], [passages]).scores.float().tolist()

    rate_before = matmul_gflops(torch, args.threads)
    seconds, scores = timed_runs(score, data["queries"], data["lists"])
    rate_after = matmul_gflops(torch, args.threads)
    write_json(args.out, {"seconds": seconds, "scores": scores, "rss_loaded_gib": loaded,
                          "peak_rss_gib": peak_rss_gib(), "matmul_gflops": (rate_before + rate_after) / 2})


if __name__ == "__main__":
    main()
