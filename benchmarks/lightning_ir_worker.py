"""The reference run: lightning-ir 0.0.6 scores the same lists with the same checkpoint, one list per forward pass
(as ``CrossEncoderModule.score`` is used), timed like :mod:`benchmarks.worker`. Run it with a Python that has
lightning-ir 0.0.6 and transformers < 5 (see ``tests/reference/README.md``)::

    /path/to/reference/python benchmarks/lightning_ir_worker.py CHECKPOINT LISTS.json OUT.json [--threads 2] \
        [--device cuda] [--precision bf16-mixed]

``--precision bf16-mixed`` runs the forward pass under ``torch.autocast`` in bfloat16, as lightning-ir's inference
configuration (Lightning's ``bf16-mixed``) does.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.worker import measure  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("lists")
    parser.add_argument("out")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("float32", "bf16-mixed"), default="float32")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from lightning_ir import CrossEncoderModule, LightningIRModel

    torch.set_num_threads(args.threads)
    model = LightningIRModel.from_pretrained(args.checkpoint, dtype=torch.float32).eval()
    module = CrossEncoderModule(model=model).eval().to(args.device)
    device_type = torch.device(args.device).type

    def score(query: str, passages: list[str]) -> list[float]:
        with torch.no_grad(), torch.autocast(device_type, dtype=torch.bfloat16,
                                             enabled=args.precision == "bf16-mixed"):
            return module.score([query], [passages]).scores.float().tolist()

    measure(torch, args.threads, {"lightning-ir": score}, args.lists, args.out, device=args.device)


if __name__ == "__main__":
    main()
