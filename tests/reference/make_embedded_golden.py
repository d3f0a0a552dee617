"""Golden scores of the shipped models (``pyterrier_setenc.embedded``) from lightning-ir 0.0.6 itself.

Run from the repository root with a Python that has this package, pointing at the reference environment:

    python tests/reference/make_embedded_golden.py --reference-python /work/refvenv/bin/python

It scores the first three DL19 BM25 top-100 lists of the test slice (``tests/data``) with each shipped checkpoint
in lightning-ir (``LightningIRModel.from_pretrained`` + ``CrossEncoderModule.score``, one list per forward pass) and
writes ``tests/fixtures/embedded-golden.json``, which ``tests/library/test_embedded.py`` compares with this package.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from pyterrier_setenc import embedded  # noqa: E402
from training.check_lightning_ir import lightning_ir_scores  # noqa: E402
from training.data import read_candidates  # noqa: E402

SLICE = REPO / "tests" / "data" / "trec-dl-2019" / "bm25-top100.rerank.jsonl.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-python", required=True)
    parser.add_argument("--lists", type=int, default=3)
    args = parser.parse_args()
    queries, ranked, texts = read_candidates(SLICE)
    qids = sorted(ranked)[:args.lists]
    versions = subprocess.run([args.reference_python, "-c", "import lightning_ir, transformers, torch; "
                               "print(lightning_ir.__version__, transformers.__version__, torch.__version__)"],
                              capture_output=True, text=True, check=True).stdout.split()
    golden = {"source": "lightning-ir " + versions[0], "transformers": versions[1], "torch": versions[2],
              "python": platform.python_version(), "lists": SLICE.relative_to(REPO).as_posix(), "models": {}}
    for name, folder in (("set-encoder", embedded.SET_ENCODER), ("mono", embedded.MONO)):
        scores = lightning_ir_scores(args.reference_python, folder, [queries[q] for q in qids],
                                     [[texts[d] for d in ranked[q]] for q in qids])
        golden["models"][name] = {q: dict(zip(ranked[q], s)) for q, s in zip(qids, scores)}
    target = REPO / "tests" / "fixtures" / "embedded-golden.json"
    target.write_text(json.dumps(golden, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
