"""Scores candidate lists with a saved checkpoint twice, with this package and with lightning-ir 0.0.6 in another
Python environment, and prints the largest score difference.

    python -m training.check_lightning_ir CHECKPOINT --reference-python /work/refvenv/bin/python \\
        [--rerank ../shared/data/trec-dl-2019/bm25-top100.rerank.jsonl.gz] [--queries 3]

A Set-Encoder that samples missing passages (``sample_missing_docs``) draws random fill-in passages in lightning-ir
when a list is shorter than ``depth``; only lists of exactly ``depth`` passages are compared then.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# run by the reference Python: argv[1] checkpoint, argv[2] a JSON file {"queries": [...], "lists": [[...], ...]}
LIGHTNING_IR_SCORER = """
import json, sys
import torch
from lightning_ir import CrossEncoderModule, LightningIRModel
model = LightningIRModel.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
module = CrossEncoderModule(model=model).eval()
with open(sys.argv[2]) as file:
    data = json.load(file)
with torch.no_grad():
    out = [module.score([q], [docs]).scores.float().tolist() for q, docs in zip(data["queries"], data["lists"])]
print(json.dumps(out))
"""


def lightning_ir_scores(python: str, checkpoint: str | os.PathLike, queries: list[str],
                        lists: list[list[str]]) -> list[list[float]]:
    """Scores from lightning-ir, run by the Python executable ``python``, one list per forward pass."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump({"queries": queries, "lists": lists}, file)
    try:
        result = subprocess.run([python, "-c", LIGHTNING_IR_SCORER, str(checkpoint), file.name], capture_output=True,
                                text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    finally:
        os.unlink(file.name)
    if result.returncode != 0:
        raise RuntimeError(f"lightning-ir failed to score {checkpoint}:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    from pyterrier_setenc.model import CrossEncoder

    from .data import read_candidates

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--reference-python", default=os.environ.get("SETENC_REFERENCE_PYTHON"), required=False)
    parser.add_argument("--rerank", default=str(Path(__file__).resolve().parent.parent.parent / "shared" / "data"
                                                / "trec-dl-2019" / "bm25-top100.rerank.jsonl.gz"))
    parser.add_argument("--queries", type=int, default=3)
    args = parser.parse_args(argv)
    if not args.reference_python:
        parser.error("give --reference-python (or set SETENC_REFERENCE_PYTHON)")
    model = CrossEncoder.from_pretrained(args.checkpoint)
    queries, ranked, texts = read_candidates(args.rerank)
    depth = model.config.get("depth", 100)
    exact = model.kind == "set-encoder" and model.config.get("sample_missing_docs", True)
    qids = [qid for qid in ranked if not exact or len(ranked[qid]) == depth][:args.queries]
    chosen_queries = [queries[qid] for qid in qids]
    lists = [[texts[d] for d in ranked[qid]] for qid in qids]
    ours = model.score_lists(chosen_queries, lists)
    theirs = lightning_ir_scores(args.reference_python, args.checkpoint, chosen_queries, lists)
    largest = 0.0
    for qid, a, b in zip(qids, ours, theirs):
        difference = max(abs(float(x) - float(y)) for x, y in zip(a.tolist(), b))
        largest = max(largest, difference)
        print(f"query {qid}: {len(b)} passages, largest |ours - lightning-ir| = {difference:.2e}, "
              f"score range {min(b):.3f} .. {max(b):.3f}")
    print(f"{args.checkpoint}: largest difference over {len(qids)} lists: {largest:.2e}")
    sys.exit(0 if largest < 1e-3 else 1)


if __name__ == "__main__":
    main()
