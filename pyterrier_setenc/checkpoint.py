"""Recognising and reading checkpoints: lightning-ir ``set-encoder`` and ``mono`` folders and plain Hugging Face
sequence-classification cross-encoders, from a Hugging Face id or a local folder. Weights are read with safetensors
(or ``torch.load(weights_only=True)``); no code from a checkpoint is ever run."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

Kind = Literal["set-encoder", "mono", "hf-cross-encoder"]

SUPPORTED_BACKBONES = ("bert", "electra")
_HF_CLASSIFIERS = {"BertForSequenceClassification": "bert", "ElectraForSequenceClassification": "electra"}
CHECKPOINT_FILES = ["config.json", "model.safetensors", "model.safetensors.index.json", "*.safetensors",
                    "pytorch_model.bin", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                    "special_tokens_map.json", "added_tokens.json"]
SUPPORTED_MESSAGE = (
    "supported are lightning-ir checkpoints with model_type 'set-encoder' or 'mono' (backbone bert or electra) and "
    "Hugging Face cross-encoders of the architectures " + ", ".join(_HF_CLASSIFIERS)
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or is not of a supported type."""


@dataclass
class Checkpoint:
    """What a checkpoint folder holds, read without building a model.

    ``kind`` is ``"set-encoder"``, ``"mono"`` or ``"hf-cross-encoder"``; ``backbone`` is ``"bert"`` or ``"electra"``.
    """

    path: Path
    kind: Kind
    backbone: str
    config: dict[str, Any]
    name: str = ""
    state_dict: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def add_extra_token(self) -> bool:
        return self.kind == "set-encoder" and bool(self.config.get("add_extra_token", False))

    @property
    def query_length(self) -> int | None:
        return self.config.get("query_length", 32) if self.kind != "hf-cross-encoder" else None

    @property
    def doc_length(self) -> int | None:
        return self.config.get("doc_length", 512) if self.kind != "hf-cross-encoder" else None


def resolve(name_or_path: str | os.PathLike, revision: str | None = None,
            allow_patterns: list[str] | None = None) -> Path:
    """A local folder as it is, otherwise a Hugging Face model id fetched (or found in the local cache); only files
    matching ``allow_patterns`` (default: configuration, weights and tokenizer files) are fetched."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; a checkpoint is a folder with config.json and weights")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(name_or_path), revision=revision,
                                      allow_patterns=allow_patterns or CHECKPOINT_FILES))
    except Exception as error:  # network, unknown id, gated model: say which
        raise CheckpointError(
            f"{name_or_path!r} is neither a local folder nor a Hugging Face model that could be fetched: {error}"
        ) from error


def classify(config: dict[str, Any], where: str = "") -> tuple[Kind, str]:
    """The kind and backbone of a checkpoint from its ``config.json``; an error names anything unsupported."""
    model_type = config.get("model_type")
    backbone = config.get("backbone_model_type")
    if backbone is not None:  # lightning-ir
        if model_type == "set-encoder":
            kind: Kind = "set-encoder"
        elif model_type in ("mono", "cross-encoder"):
            kind = "mono"
        else:
            raise CheckpointError(f"{where}: lightning-ir model_type {model_type!r} is not supported; {SUPPORTED_MESSAGE}")
        if backbone not in SUPPORTED_BACKBONES:
            raise CheckpointError(f"{where}: backbone_model_type {backbone!r} is not supported; {SUPPORTED_MESSAGE}")
        if config.get("pooling_strategy", "first") not in ("first", "bert_pool", "mean", "sum", "max"):
            raise CheckpointError(f"{where}: pooling_strategy {config['pooling_strategy']!r} is not supported")
        if config.get("scoring_strategy", "rank") not in ("rank", "mono"):
            raise CheckpointError(f"{where}: scoring_strategy {config['scoring_strategy']!r} is not supported")
        if config.get("use_adapter"):
            raise CheckpointError(f"{where}: checkpoints with LoRA adapters (use_adapter) are not supported")
        return kind, backbone
    architectures = config.get("architectures") or []
    for architecture in architectures:
        if architecture in _HF_CLASSIFIERS:
            return "hf-cross-encoder", _HF_CLASSIFIERS[architecture]
    raise CheckpointError(
        f"{where}: found model_type={model_type!r}, architectures={architectures!r}; {SUPPORTED_MESSAGE}"
    )


def read_config(path: Path) -> dict[str, Any]:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path} has no config.json; {SUPPORTED_MESSAGE}")
    with open(config_file, encoding="utf-8") as file:
        return json.load(file)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """All weights of a folder: ``*.safetensors`` (also sharded), else ``pytorch_model.bin`` with weights_only."""
    from safetensors.torch import load_file

    shards = sorted(path.glob("*.safetensors"))
    if shards:
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(str(shard)))
        return state
    binary = path / "pytorch_model.bin"
    if binary.is_file():
        return torch.load(binary, map_location="cpu", weights_only=True)
    raise CheckpointError(f"{path} has no weights (model.safetensors or pytorch_model.bin)")


def load_checkpoint(name_or_path: str | os.PathLike, *, weights: bool = True) -> Checkpoint:
    """Reads a checkpoint's configuration (and weights) and says which kind it is.

    >>> ckpt = load_checkpoint("webis/set-encoder-base")  # doctest: +SKIP
    >>> ckpt.kind, ckpt.backbone, ckpt.add_extra_token  # doctest: +SKIP
    ('set-encoder', 'electra', True)
    """
    path = resolve(name_or_path)
    config = read_config(path)
    kind, backbone = classify(config, str(name_or_path))
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(f"{name_or_path}: position_embedding_type {config['position_embedding_type']!r} "
                              "is not supported (only 'absolute')")
    state = read_state_dict(path) if weights else {}
    return Checkpoint(path=path, kind=kind, backbone=backbone, config=config, name=str(name_or_path),
                      state_dict=state)
