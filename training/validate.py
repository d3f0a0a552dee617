"""Model selection on held-out training queries: nDCG@10 of re-ranking their BM25 top-100 (never DL19/DL20).

    python -m training.validate runs/distill/dl21-heldout.qids MODEL [MODEL ...] --data-dir ../shared/data

Prints one line per system (BM25, the teacher, each model): nDCG@10 and the mean over queries.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ir_measures
import pandas as pd
from ir_measures import nDCG

from pyterrier_setenc import io

from .data import labels_by_qid, read_candidates


def heldout_frame(data_dir: Path, qids_file: Path, collection: str = "trec-dl-2021") -> pd.DataFrame:
    """The BM25 top-100 of the held-out qids as a PyTerrier result frame (first-stage order)."""
    wanted = [line.strip() for line in qids_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    queries, ranked, texts = read_candidates(data_dir / collection / "bm25-top100.rerank.jsonl.gz")
    rows = [dict(qid=q, query=queries[q], docno=d, text=texts[d], score=float(-r), rank=r)
            for q in wanted for r, d in enumerate(ranked[q], 1)]
    return pd.DataFrame(rows)


def ndcg10(run: pd.DataFrame, qrels: dict[str, dict[str, int]]) -> float:
    measured = ir_measures.calc_aggregate([nDCG @ 10], [ir_measures.Qrel(q, d, r) for q, docs in qrels.items()
                                                         for d, r in docs.items()],
                                          [ir_measures.ScoredDoc(str(r.qid), str(r.docno), float(r.score))
                                           for r in run.itertuples()])
    return float(measured[nDCG @ 10])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="nDCG@10 on held-out DL21 queries (BM25 top-100 re-ranked)")
    parser.add_argument("qids", type=Path, help="file with one held-out qid a line (from training.distill)")
    parser.add_argument("models", nargs="*", help="checkpoint folders")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--teacher", action="store_true", help="also score the distillation teacher")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    frame = heldout_frame(args.data_dir, args.qids)
    qrels = labels_by_qid(io.read_qrels(args.data_dir / "trec-dl-2021" / "qrels.txt"))
    qrels = {q: docs for q, docs in qrels.items() if q in set(frame["qid"])}
    print(f"BM25\t{ndcg10(frame, qrels):.4f}\t({frame['qid'].nunique()} queries)", flush=True)
    if args.teacher:
        from .teacher import BiEncoderTeacher

        teacher = BiEncoderTeacher(verbose=False)
        scored = [group.assign(score=teacher.score(group["query"].iloc[0], group["text"].tolist()))
                  for _, group in frame.groupby("qid", sort=False)]
        print(f"teacher\t{ndcg10(pd.concat(scored), qrels):.4f}", flush=True)
    from pyterrier_setenc import load_reranker

    for model in args.models:
        run = load_reranker(model, verbose=False).transform(frame)
        print(f"{model}\t{ndcg10(run, qrels):.4f}", flush=True)


if __name__ == "__main__":
    main()
