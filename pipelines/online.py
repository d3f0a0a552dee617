"""Benchmarks from ``ir_datasets`` (needs internet on first use; downloads are cached by ir_datasets).

- TREC DL 2019/2020 (``msmarco-passage/trec-dl-20XX/judged``): BM25 over the prebuilt PISA index of MS MARCO
  (``macavaney/msmarco-passage.pisa`` on the Hugging Face hub), passage texts from ir_datasets' docstore.
- Whole corpora (Vaswani, Cranfield, NFCorpus, or any ir_datasets id): BM25 over a PISA index built once from the
  corpus and cached, texts from the corpus (title and text: :func:`pyterrier_setenc.io.irds_document_text`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import cast

import pandas as pd
import pyterrier as pt

from pyterrier_setenc.io import irds_document_text

from .bm25 import BM25_B, BM25_K1, INDEXED_TEXT, cached_pisa_index
from .collection import BENCHMARKS, MSMARCO_PISA_INDEX, AddText, Benchmark

__all__ = ["MSMARCO_PISA_INDEX", "irds_qrels", "irds_topics", "load_online"]


def irds_topics(dataset) -> pd.DataFrame:
    return pd.DataFrame([{"qid": str(q.query_id), "query": q.default_text().strip()} for q in dataset.queries_iter()],
                        columns=["qid", "query"])


def irds_qrels(dataset) -> pd.DataFrame:
    return pd.DataFrame([{"qid": str(q.query_id), "docno": str(q.doc_id), "label": int(q.relevance)}
                         for q in dataset.qrels_iter()], columns=["qid", "docno", "label"])


def load_online(name: str, first_stage: str, *, cache_dir: Path, candidates: int = 100) -> Benchmark:
    """The benchmark ``name`` (a short name of :data:`pipelines.collection.BENCHMARKS` or an ir_datasets id) with a
    live BM25 first stage; the stored first stages (``bm25-rm3``, ``tasb``, ...) exist only offline."""
    import ir_datasets
    from pyterrier_pisa import PisaIndex

    spec = BENCHMARKS.get(name)
    irds_id = spec.irds_id if spec else name
    if irds_id is None:
        raise ValueError(f"{name!r} is only available offline: pass --data-dir (or set $SETENC_DATA_DIR)")
    if first_stage != "bm25":
        raise ValueError(f"first stage {first_stage!r} is only available offline (stored runs); online the first "
                         "stage is bm25; pass --data-dir for the others")
    dataset = ir_datasets.load(irds_id)
    topics, qrels = irds_topics(dataset), irds_qrels(dataset)
    if spec is not None and spec.pisa_index is not None:
        index = PisaIndex.from_hf(spec.pisa_index)
        corpus = cast(pt.text.HasTextLoader, pt.get_dataset(f"irds:{spec.corpus or irds_id}"))  # an ir_datasets one
        texts = pt.text.get_text(corpus, "text")
        transformer = index.bm25(num_results=candidates) >> texts
        source = f"BM25 over {spec.pisa_index}"
    else:
        def docs():
            for doc in dataset.docs_iter():
                yield {"docno": str(doc.doc_id), "text": irds_document_text(doc)}

        fingerprint = hashlib.sha256(f"irds:{irds_id}\0{INDEXED_TEXT}".encode()).hexdigest()[:16]
        index = cached_pisa_index(irds_id.replace("/", "-"), fingerprint, docs, cache_dir)
        transformer = (index.bm25(k1=BM25_K1, b=BM25_B, num_results=candidates)
                       >> AddText({d["docno"]: d["text"] for d in docs()}))
        source = f"BM25 (PISA) over ir_datasets {irds_id}"
    return Benchmark(name=name, topics=topics, qrels=qrels, first_stage=transformer, first_stage_name=first_stage,
                     source=source)
