"""Half precision and int8 against float32 over every TREC DL 2019 and 2020 BM25 top-100 list: how well the
rankings agree (Kendall tau per list), the largest score change, nDCG@10 per collection, and the speed of each type
against float32, timed list by list in one process with the types taking turns (so the machine's drift hits all
alike). By default on the two checkpoints shipped in the package, the Set-Encoder and its mono twin.

    python -m benchmarks.precision --data-dir ../shared/data [--model FOLDER ...] [--dtypes bfloat16,float16,int8]
        [--collections trec-dl-2019,trec-dl-2020] [--queries N] [--threads 2] [--device cpu] [--out FILE]

Half precision is :func:`pyterrier_setenc._engine.precision.set_precision`'s: the encoder in the half type, embeddings,
layer norms and the scoring head in float32. ``int8`` is :func:`pyterrier_setenc._engine.numerics.quantize_int8`'s
(the CPU only): the encoder's linear layers in int8, the rest in float32.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

RERANK = "bm25-top100.rerank.jsonl.gz"
KINDS = ("bfloat16", "float16", "int8")  # compared with float32


def load_lists(data_dir: Path, collection: str, queries: int | None):
    """(qid, query, docnos, texts) of each BM25 top-100 list in first-stage order, and the collection's qrels."""
    from pyterrier_setenc.io import candidate_lists, read_qrels, read_rerank

    query_of, ranked, texts_of = candidate_lists(read_rerank(data_dir / collection / RERANK))
    qids = list(query_of)[:queries]
    lists = [(qid, query_of[qid], ranked[qid], [texts_of[d] for d in ranked[qid]]) for qid in qids]
    return lists, read_qrels(data_dir / collection / "qrels.txt")


def ndcg10(qrels, runs: dict[str, dict[str, float]]) -> float:
    import ir_measures
    from ir_measures import nDCG

    run = [ir_measures.ScoredDoc(qid, docno, score) for qid, scores in runs.items() for docno, score in scores.items()]
    qrels = [ir_measures.Qrel(str(r.qid), str(r.docno), int(r.label)) for r in qrels.itertuples()
             if str(r.qid) in runs]  # the lists scored (e.g. the first N)
    return ir_measures.calc_aggregate([nDCG @ 10], qrels, run)[nDCG @ 10]


def measure(model_path: Path, dtypes: list[str], lists: dict, device: str) -> dict:
    """Scores and seconds of every list under float32 and each of ``dtypes``, taking turns list by list."""
    import torch

    from pyterrier_setenc._engine.numerics import quantize_int8
    from pyterrier_setenc._engine.precision import resolve_dtype, set_precision
    from pyterrier_setenc.model import CrossEncoder

    def build(kind: str) -> CrossEncoder:
        model = CrossEncoder.from_pretrained(model_path).to(device)
        if kind == "int8":
            return quantize_int8(model)
        return set_precision(model, resolve_dtype(kind, torch.device(device)))

    kinds = ["float32", *dtypes]
    models = {kind: build(kind) for kind in kinds}
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for model in models.values():  # warm-up
        model.score_lists(["warm up"], [["a passage to warm up on"] * 10])
    figures: dict[str, dict[str, Any]] = {kind: {"seconds": 0.0, "scores": {}} for kind in kinds}
    number = 0
    for collection, entries in lists.items():
        for qid, query, docnos, texts in entries:
            for kind in kinds[number % len(kinds):] + kinds[:number % len(kinds)]:
                sync()
                start = time.perf_counter()
                scores = models[kind].score_lists([query], [texts])[0]
                sync()
                figures[kind]["seconds"] += time.perf_counter() - start
                figures[kind]["scores"][f"{collection}/{qid}"] = dict(zip(docnos, scores.tolist()))
            number += 1
    return figures


def summarize(figures: dict, qrels: dict, lists: dict) -> list[dict]:
    """One row per type: seconds per query, speed-up, mean and lowest Kendall tau against float32, the largest
    score change, and nDCG@10 per collection."""
    from scipy.stats import kendalltau

    count = sum(map(len, lists.values()))
    exact = figures["float32"]
    rows = []
    for kind, run in figures.items():
        taus, changes = [], []
        for key, scores in run["scores"].items():
            docnos = list(scores)
            a = [scores[d] for d in docnos]
            b = [exact["scores"][key][d] for d in docnos]
            taus.append(1.0 if a == b else kendalltau(a, b)[0])
            changes.append(max(abs(x - y) for x, y in zip(a, b)))
        row = {"dtype": kind, "s_per_query": run["seconds"] / count,
               "speed_up": exact["seconds"] / run["seconds"], "mean_tau": statistics.fmean(taus),
               "min_tau": min(taus), "max_score_change": max(changes)}
        for collection in lists:
            per_query = {key.split("/", 1)[1]: scores for key, scores in run["scores"].items()
                         if key.startswith(collection + "/")}
            row[f"ndcg10 {collection}"] = ndcg10(qrels[collection], per_query)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="the offline data folder (../shared/data)")
    parser.add_argument("--model", type=Path, action="append", default=None,
                        help="a checkpoint folder, repeat for several (default: the two shipped checkpoints)")
    parser.add_argument("--dtypes", default="bfloat16,float16",
                        help=f"what to compare with float32, comma-separated: {', '.join(KINDS)}")
    parser.add_argument("--collections", default="trec-dl-2019,trec-dl-2020")
    parser.add_argument("--queries", type=int, default=None, help="the first N lists of each collection")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)

    import torch

    from benchmarks.machine import describe
    from pyterrier_setenc import embedded

    torch.set_num_threads(args.threads)
    dtypes = [kind for kind in args.dtypes.split(",") if kind and kind != "float32"]
    unknown = [kind for kind in dtypes if kind not in KINDS]
    if unknown:
        parser.error(f"--dtypes: unknown {', '.join(unknown)}; known: {', '.join(KINDS)}")
    if "int8" in dtypes and args.device != "cpu":
        parser.error(f"--dtypes int8 runs on the CPU only, not on --device {args.device}")
    collections = args.collections.split(",")
    lists, qrels = {}, {}
    for collection in collections:
        lists[collection], qrels[collection] = load_lists(args.data_dir, collection, args.queries)
    machine = describe(args.device, args.threads)
    results: dict[str, Any] = {"machine": machine, "models": {}}
    for model in args.model or [embedded.SET_ENCODER, embedded.MONO]:
        print(f"scoring {sum(map(len, lists.values()))} lists with {model.name} ...", file=sys.stderr, flush=True)
        rows = summarize(measure(model, dtypes, lists, args.device), qrels, lists)
        results["models"][model.name] = rows
        print(f"\n{model.name} on {machine}; BM25 top-100 of {', '.join(collections)} "
              f"({sum(map(len, lists.values()))} lists), each list scored in every type in turn\n")
        header = ["dtype", "s/query", "speed-up", "mean Kendall tau", "lowest tau", "max |score change|",
                  *[f"nDCG@10 {c}" for c in collections]]
        print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        for row in rows:
            cells = [row["dtype"], f"{row['s_per_query']:.3f}", f"{row['speed_up']:.2f}x", f"{row['mean_tau']:.4f}",
                     f"{row['min_tau']:.4f}", f"{row['max_score_change']:.3g}",
                     *[f"{row[f'ndcg10 {c}']:.4f}" for c in collections]]
            print("| " + " | ".join(cells) + " |")
    if args.out:
        from pyterrier_setenc.atomic import atomic_write

        atomic_write(args.out, lambda file: json.dump(results, file, indent=1))


if __name__ == "__main__":
    main()
