"""Run time of scoring one 100-passage list (DL19 BM25 top-100) with and without iterative inference, for this
package's ListConRanker and, with ``--reference``, for the published code on the same checkpoint.

    # this package (repository venv)
    python tests/reference/listconranker/time_listconranker.py --checkpoint tests/fixtures/listconranker
    # the published code (a venv with transformers 4.x), loaded from outside the repository
    /work/refvenv/bin/python tests/reference/listconranker/time_listconranker.py \\
        --checkpoint tests/fixtures/listconranker --reference /tmp/listconranker_ref

A checkpoint of the published model's size with random weights (BERT-large encoder, 24 layers):
``make_golden.py --size real --bert-layers 24 --checkpoint-only --out /tmp/listconranker-large``.
Prints one line per mode: the median and all timings in seconds. For a checkpoint of other widths than the published
1024/1792 (the tiny fixture), the published code is imported with its two width literals replaced, as by
``make_golden.py``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[3]
DEFAULT_DATA = Path(os.environ.get("SETENC_DATA_DIR", REPO.parent / "shared" / "data"))


def first_list(data: Path, qid: str | None) -> tuple[str, list[str], list[str]]:
    rows = []
    with gzip.open(data / "trec-dl-2019" / "bm25-top100.rerank.jsonl.gz", "rt", encoding="utf-8") as file:
        rows = [json.loads(line) for line in file]
    qid = qid or min(str(r["qid"]) for r in rows)
    rows = sorted((r for r in rows if str(r["qid"]) == qid), key=lambda r: r["rank"])
    return rows[0]["query"], [str(r["docno"]) for r in rows], [r["text"] for r in rows]


def timed(run, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):  # untimed
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--reference", type=Path, help="folder with the published modules/ (times the published code)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--qid", help="DL19 query (default: the smallest qid)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before the timed ones")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save", type=Path, help="write the scores of the last run of each mode (JSON)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    query, docnos, texts = first_list(args.data, args.qid)
    layers = len({k.split(".")[2] for k in torch.load(args.checkpoint / "list_transformer.pt", weights_only=True)
                  if k.startswith("list_transformer.layers.")})

    if args.reference:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from make_golden import import_published

        hidden = json.loads((args.checkpoint / "config.json").read_text())["hidden_size"]
        width = torch.load(args.checkpoint / "linear_in_embedding.pt", weights_only=True)["weight"].shape[0]
        size = None if (hidden, width) == (1024, 1792) else dict(hidden=hidden, width=width)  # as make_golden.py
        published, _ = import_published(args.reference, size)
        ranker = published.ListConRanker(str(args.checkpoint), device="cpu", list_transformer_layer=layers)
        runs = {"published one pass": lambda: ranker.compute_score([[query] + texts])[0],
                "published iterative": lambda: ranker.iterative_inference([query] + texts)}
    else:
        import pandas as pd

        from pyterrier_setenc.listconranker import ListConRankerReRanker
        from pyterrier_setenc.listconranker_model import ListConRankerModel

        model = ListConRankerModel.from_pretrained(args.checkpoint)
        frame = pd.DataFrame(dict(qid="q", query=query, docno=docnos, text=texts))
        runs = {f"ours {'iterative' if iterative else 'one pass'}": (
            lambda reranker=ListConRankerReRanker(model, iterative=iterative):  # noqa: B008 (one per variant)
            reranker(frame).set_index("docno").loc[docnos, "score"].tolist())
            for iterative in (False, True)}
    print(f"{len(texts)} passages, qid {args.qid or 'first'}, {args.threads} thread(s), checkpoint {args.checkpoint}")
    scores = {}
    for name, run in runs.items():
        times = timed(lambda name=name, run=run: scores.__setitem__(name, run()), args.repeats, args.warmup)
        print(f"{name:22s} median {statistics.median(times):8.3f} s   ({', '.join(f'{t:.3f}' for t in times)})",
              flush=True)
    if args.save:
        args.save.write_text(json.dumps(dict(docnos=docnos, scores=scores)))


if __name__ == "__main__":
    main()
