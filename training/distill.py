"""Distillation data, offline: a bi-encoder teacher's scores over BM25 candidate lists, in the trainer's format.

Three sources, each written as a ``*.teacher.jsonl.gz`` file (the ``rerank.jsonl.gz`` fields ``qid``, ``query``,
``docno``, ``text``, ``rank`` of the first stage and ``score``: the BM25 score for pseudo-queries, minus the rank for
the DL lists (their BM25 scores are not carried over); plus ``teacher_score``), read by the trainer's
``teacher_scores`` source:

- ``dl21-train``: the TREC DL 2021 BM25 top-100 of the DL21 queries not held out (their graded qrels are written
  beside, ``dl21-train.qrels.txt``); the held-out qids are in ``dl21-heldout.qids``, for model selection;
- ``dl22``: the TREC DL 2022 BM25 top-100 (no qrels);
- ``pseudo``: pseudo-queries, a span of a few words cut from one sentence of a passage of the DL21/DL22 pools, with
  candidates from BM25 (PISA) over the pool.

DL19 and DL20 are never read. Usage, from the repository root::

    python -m training.distill --data-dir ../shared/data --output runs/distill --pseudo-queries 4000
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from pyterrier_setenc import io
from pyterrier_setenc.atomic import atomic_write

from .data import labels_by_qid, read_candidates
from .teacher import DEFAULT_TEACHER, BiEncoderTeacher

SOURCES = {"dl21": "trec-dl-2021", "dl22": "trec-dl-2022"}
SENTENCE = re.compile(r"(?<=[.!?;])\s+")
STRIP = ".,;:!?\"'()[]{}"


def pseudo_query(text: str, rng: random.Random, min_words: int = 3, max_words: int = 10,
                 drop: float = 0.2) -> str | None:
    """A span of ``min_words``..``max_words`` words from one sentence of ``text``, lower-cased, each word dropped
    with probability ``drop`` (keyword-like); None for passages too short for a span."""
    sentences = [s.split() for s in SENTENCE.split(text)]
    sentences = [s for s in sentences if len(s) >= min_words]
    if not sentences:
        return None
    words = rng.choice(sentences)
    length = rng.randint(min_words, min(max_words, len(words)))
    start = rng.randint(0, len(words) - length)
    span = [w.strip(STRIP).lower() for w in words[start:start + length]]
    kept = [w for w in span if w and rng.random() >= drop] or [w for w in span if w]
    return " ".join(kept) if len(kept) >= 2 else None


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda file: file.write(text))


def teacher_rows(teacher_scores: dict[str, np.ndarray], queries: dict[str, str], ranked: dict[str, list[str]],
                 texts: dict[str, str], first_stage: dict[str, list[float]] | None = None) -> list[dict]:
    rows = []
    for qid, docnos in ranked.items():
        for rank, (docno, teacher) in enumerate(zip(docnos, teacher_scores[qid]), 1):
            score = first_stage[qid][rank - 1] if first_stage else float(-rank)
            rows.append(dict(qid=qid, query=queries[qid], docno=docno, text=texts[docno], rank=rank,
                             score=score, teacher_score=round(float(teacher), 6)))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--output", type=Path, default=Path("runs/distill"))
    parser.add_argument("--teacher", default=DEFAULT_TEACHER)
    parser.add_argument("--pseudo-queries", type=int, default=4000, help="number of pseudo-queries (0: none)")
    parser.add_argument("--heldout", type=int, default=20, help="DL21 queries held out for model selection")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    args.output.mkdir(parents=True, exist_ok=True)
    teacher = BiEncoderTeacher(args.teacher)

    lists = {}
    for name, folder in SOURCES.items():
        path = args.data_dir / folder / "bm25-top100.rerank.jsonl.gz"
        lists[name] = read_candidates(path)
    pool: dict[str, str] = {}
    for _, _, texts in lists.values():
        pool.update(texts)
    pool_ids = sorted(pool)
    print(f"pool: {len(pool_ids)} passages from DL21 and DL22", file=sys.stderr)
    embeddings = teacher.embed_passages([pool[d] for d in pool_ids])
    row_of = {docno: i for i, docno in enumerate(pool_ids)}

    def scores_for(queries: dict[str, str], ranked: dict[str, list[str]]) -> dict[str, np.ndarray]:
        qids = list(ranked)
        vectors = teacher.embed_queries([queries[q] for q in qids])
        return {qid: embeddings[[row_of[d] for d in ranked[qid]]] @ vectors[i] for i, qid in enumerate(qids)}

    manifest: dict = {"teacher": str(args.teacher), "seed": args.seed, "sources": {}}
    dl21_queries, dl21_ranked, dl21_texts = lists["dl21"]
    qrels = labels_by_qid(io.read_qrels(args.data_dir / SOURCES["dl21"] / "qrels.txt"))
    judged = sorted(q for q in dl21_ranked if q in qrels)
    heldout = sorted(random.Random(f"heldout/{args.seed}").sample(judged, args.heldout))
    train = {q: d for q, d in dl21_ranked.items() if q not in set(heldout)}
    write_text(args.output / "dl21-heldout.qids", "".join(f"{q}\n" for q in heldout))
    write_text(args.output / "dl21-train.qrels.txt",
               "".join(f"{q} 0 {d} {r}\n" for q in sorted(train) for d, r in sorted(qrels.get(q, {}).items())))
    io.write_rerank(args.output / "dl21-train.teacher.jsonl.gz",
                teacher_rows(scores_for(dl21_queries, train), dl21_queries, train, dl21_texts))
    manifest["sources"]["dl21-train"] = len(train)
    manifest["dl21_heldout"] = heldout
    dl22_queries, dl22_ranked, dl22_texts = lists["dl22"]
    io.write_rerank(args.output / "dl22.teacher.jsonl.gz",
                teacher_rows(scores_for(dl22_queries, dl22_ranked), dl22_queries, dl22_ranked, dl22_texts))
    manifest["sources"]["dl22"] = len(dl22_ranked)

    if args.pseudo_queries:
        manifest["sources"]["pseudo"] = write_pseudo(args, rng, teacher, pool, pool_ids, embeddings, row_of)
    write_text(args.output / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest["sources"]), file=sys.stderr)


def write_pseudo(args, rng: random.Random, teacher: BiEncoderTeacher, pool: dict[str, str], pool_ids: list[str],
                 embeddings: np.ndarray, row_of: dict[str, int]) -> int:
    """Pseudo-queries from pool passages, BM25 top-100 over the pool, teacher scores; returns the list count."""
    from pyterrier_pisa import PisaIndex

    queries: dict[str, str] = {}
    for docno in rng.sample(pool_ids, min(len(pool_ids), int(args.pseudo_queries * 1.2))):
        query = pseudo_query(pool[docno], rng)
        if query:
            queries[f"pseudo-{len(queries)}"] = query
        if len(queries) == args.pseudo_queries:
            break
    building = Path(tempfile.mkdtemp(prefix=".pisa-", dir=args.output))
    try:
        index = PisaIndex(str(building / "index"), text_field="text", threads=1, overwrite=True)
        index.index({"docno": d, "text": pool[d]} for d in pool_ids)
        bm25 = PisaIndex(str(building / "index")).bm25(k1=0.9, b=0.4, num_results=100)
        topics = pd.DataFrame({"qid": list(queries), "query": list(queries.values())})
        run = bm25.transform(topics)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    run = run.sort_values(["qid", "rank"])
    ranked = {qid: group["docno"].tolist() for qid, group in run.groupby("qid", sort=False)}
    first_stage = {qid: group["score"].round(4).tolist() for qid, group in run.groupby("qid", sort=False)}
    ranked = {qid: docnos for qid, docnos in ranked.items() if len(docnos) >= 10}
    qids = sorted(ranked, key=lambda q: int(q.split("-")[1]))
    vectors = teacher.embed_queries([queries[q] for q in qids])
    scores = {qid: embeddings[[row_of[d] for d in ranked[qid]]] @ vectors[i] for i, qid in enumerate(qids)}
    ordered = {qid: ranked[qid] for qid in qids}
    io.write_rerank(args.output / "pseudo.teacher.jsonl.gz", teacher_rows(scores, queries, ordered, pool, first_stage))
    return len(ordered)


if __name__ == "__main__":
    main()
