"""Recognising and reading checkpoints: lightning-ir ``set-encoder`` and ``mono`` folders and plain Hugging Face
sequence-classification cross-encoders, from a Hugging Face id or a local folder. Weights are read with safetensors
(or ``torch.load(weights_only=True)``); no code from a checkpoint is ever run.

Only the weight files a checkpoint declares are read (``model.safetensors``, or the shards its index lists, else
``pytorch_model.bin`` or its shards). JSON files, weight files and the configuration (sizes, lengths) are checked
here as they are read; whether the weights fit the model is checked in :mod:`.weights`, the tokenizer files and
lengths in :mod:`.tokenization`. Anything wrong is a :class:`CheckpointError` that names the file and the problem."""

from __future__ import annotations

import json
import numbers
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import torch

from ._engine.encoder import activation
from .lightning_ir import LightningIRConfig, LightningIRConfigError

Kind = Literal["set-encoder", "mono", "hf-cross-encoder"]

SUPPORTED_BACKBONES = ("bert", "electra")
_HF_CLASSIFIERS = {"BertForSequenceClassification": "bert", "ElectraForSequenceClassification": "electra"}
CHECKPOINT_FILES = ["config.json", "model.safetensors", "model.safetensors.index.json", "*.safetensors",
                    "pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin", "tokenizer.json",
                    "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "added_tokens.json"]
SAFE_WEIGHTS, SAFE_INDEX = "model.safetensors", "model.safetensors.index.json"
BIN_WEIGHTS, BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
_REQUIRED_SIZES = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                   "max_position_embeddings")
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
    weight_sources: dict[str, Path] = field(default_factory=dict, repr=False)  # weight name -> file it came from

    @property
    def options(self) -> LightningIRConfig | None:
        """The typed lightning-ir options (``None`` for a Hugging Face cross-encoder)."""
        return None if self.kind == "hf-cross-encoder" else lightning_ir_options(self.config, self.name)

    @property
    def add_extra_token(self) -> bool:
        return self.options is not None and self.options.interaction_token

    @property
    def query_length(self) -> int | None:
        return None if self.options is None else self.options.query_length

    @property
    def doc_length(self) -> int | None:
        return None if self.options is None else self.options.doc_length


# what the hub takes as a model id: NAME or NAMESPACE/NAME of letters, digits, "-", "_" and "."
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")


def resolve(name_or_path: str | os.PathLike, revision: str | None = None,
            allow_patterns: list[str] | None = None) -> Path:
    """A local folder as it is, otherwise a Hugging Face model id fetched (or found in the local cache); only files
    matching ``allow_patterns`` (default: configuration, weights and tokenizer files) are fetched."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; a checkpoint is a folder with config.json and weights")
    if not HUB_ID.fullmatch(str(name_or_path)):  # a path, not an id: say so, not what the hub thinks of it
        raise CheckpointError(f"no such folder: {path.absolute()} (a checkpoint is a local folder or a Hugging Face "
                              "id such as webis/set-encoder-base)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(name_or_path), revision=revision,
                                      allow_patterns=allow_patterns or CHECKPOINT_FILES))
    except Exception as error:  # network, unknown id, gated model: say which
        local = f" (no such folder: {path.absolute()})" if path.parent != Path(".") and path.parent.is_dir() else ""
        raise CheckpointError(f"{name_or_path!r} is neither a local folder{local} nor a Hugging Face model that could "
                              f"be fetched: {error}") from error


def classify(config: dict[str, Any], where: str = "") -> tuple[Kind, str]:
    """The kind and backbone of a checkpoint from its ``config.json``; an error names anything unsupported."""
    if config.get("backbone_model_type") is not None:  # lightning-ir
        options = lightning_ir_options(config, os.path.join(where, "config.json") if where else "config.json")
        return options.model_type, options.backbone_model_type
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    for architecture in architectures:
        if architecture in _HF_CLASSIFIERS:
            return "hf-cross-encoder", _HF_CLASSIFIERS[architecture]
    raise CheckpointError(
        f"{where}: found model_type={model_type!r}, architectures={architectures!r}; {SUPPORTED_MESSAGE}"
    )


def lightning_ir_options(config: dict[str, Any], where: str = "") -> LightningIRConfig:
    """The typed options of a lightning-ir ``config.json``; an unsupported one is a :class:`CheckpointError`."""
    try:
        return LightningIRConfig.from_json(config)
    except LightningIRConfigError as error:
        raise CheckpointError(f"{where}: {error}; {SUPPORTED_MESSAGE}") from None


def read_json(file: Path) -> dict[str, Any]:
    """A JSON object from ``file``; anything else is a :class:`CheckpointError` that names the file."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{file} cannot be read: {error}") from error
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{file} is not valid JSON: {error}") from error
    if not isinstance(value, dict):
        found = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")
        raise CheckpointError(f"{file} must hold a JSON object, found {found}")
    return value


def read_config(path: Path) -> dict[str, Any]:
    """``config.json`` of a checkpoint folder as a dict (its keys are checked by :func:`check_backbone_config`)."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path} has no config.json; {SUPPORTED_MESSAGE}")
    return read_json(config_file)


def _whole_number(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_backbone_config(config: dict[str, Any], config_file: Path) -> None:
    """Refuses a BERT/ELECTRA configuration that cannot build a working encoder, naming the file and the key."""
    for key in _REQUIRED_SIZES:
        if key not in config:
            raise CheckpointError(f"{config_file} has no {key}; a BERT/ELECTRA config.json gives "
                                  + ", ".join(_REQUIRED_SIZES))
    for key in (*_REQUIRED_SIZES, "type_vocab_size", "embedding_size"):
        if key not in config or (key == "embedding_size" and config[key] is None):  # defaults: 2, hidden_size
            continue
        value = config[key]
        if not _whole_number(value) or value < 1:
            raise CheckpointError(f"{config_file}: {key} must be a whole number of at least 1, found {value!r}")
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    if hidden % heads:
        raise CheckpointError(f"{config_file}: num_attention_heads {heads} does not divide hidden_size {hidden}")
    pad = config.get("pad_token_id", 0)
    if pad is not None and (not _whole_number(pad) or not 0 <= pad < config["vocab_size"]):
        raise CheckpointError(f"{config_file}: pad_token_id {pad!r} is not a token id below vocab_size "
                              f"{config['vocab_size']}")
    eps = config.get("layer_norm_eps", 1e-12)
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 < cast(float, eps) < 1:
        raise CheckpointError(f"{config_file}: layer_norm_eps must be a small positive number, found {eps!r}")
    try:
        activation(config.get("hidden_act", "gelu"))
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{config_file}: {error}") from error
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(f"{config_file}: position_embedding_type {config['position_embedding_type']!r} "
                              "is not supported (only 'absolute')")


def _check_pair_model(config: dict[str, Any], kind: Kind, config_file: Path) -> None:
    """What a (query, passage) scorer needs beyond the encoder: two token types, usable lengths, 1 or 2 labels."""
    if config.get("type_vocab_size", 2) < 2:
        raise CheckpointError(f"{config_file}: type_vocab_size {config['type_vocab_size']} cannot tell query from "
                              "passage tokens (at least 2)")
    if kind == "hf-cross-encoder":
        labels = config.get("id2label", {})
        if not isinstance(labels, dict):
            raise CheckpointError(f"{config_file}: id2label must be an object, found {labels!r}")
        count = config.get("num_labels", len(labels) or 2)
        if count not in (1, 2) or isinstance(count, bool):
            raise CheckpointError(f"{config_file}: a cross-encoder with {count!r} labels (num_labels/id2label) is "
                                  "not a relevance model (1 or 2 labels)")
        return
    positions = config["max_position_embeddings"]
    options = lightning_ir_options(config, str(config_file))
    for key in ("query_length", "doc_length"):
        value = getattr(options, key)
        if not _whole_number(value) or not 1 <= value <= positions:
            raise CheckpointError(f"{config_file}: {key} must be a whole number from 1 to max_position_embeddings "
                                  f"({positions}), found {value!r}")


def declared_weight_files(path: Path) -> tuple[list[Path], Path | None, dict[str, str]]:
    """The weight files a checkpoint declares, as Hugging Face reads them: ``model.safetensors``, else the shards
    of ``model.safetensors.index.json``, else ``pytorch_model.bin``, else the shards of its index. Returns the files,
    the index (or None) and the index's ``weight_map``. Other weight files in the folder are never read."""
    if (path / SAFE_WEIGHTS).is_file():
        return [path / SAFE_WEIGHTS], None, {}
    if (path / SAFE_INDEX).is_file():
        return _shards(path / SAFE_INDEX)
    if (path / BIN_WEIGHTS).is_file():
        return [path / BIN_WEIGHTS], None, {}
    if (path / BIN_INDEX).is_file():
        return _shards(path / BIN_INDEX)
    stray = sorted(p.name for p in path.glob("*") if p.suffix in (".safetensors", ".bin", ".pt", ".pth"))
    found = f"; found {stray}, which no index declares (not read)" if stray else ""
    raise CheckpointError(f"{path} has no weights: expected {SAFE_WEIGHTS}, {SAFE_INDEX}, {BIN_WEIGHTS} or "
                          f"{BIN_INDEX}{found}")


def _shards(index: Path) -> tuple[list[Path], Path, dict[str, str]]:
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index}: weight_map must be a non-empty object of weight name -> shard file")
    shards: dict[str, Path] = {}
    for key, name in weight_map.items():
        if not isinstance(name, str) or name != Path(name).name or name in ("", ".", ".."):
            raise CheckpointError(f"{index}: weight {key!r} is in {name!r}, not a file name in the checkpoint folder")
        if name not in shards:
            if not (index.parent / name).is_file():
                raise CheckpointError(f"{index} lists the shard {name}, which is missing")
            shards[name] = index.parent / name
    return list(shards.values()), index, weight_map


def read_weight_file(file: Path) -> dict[str, torch.Tensor]:
    """The tensors of one ``.safetensors`` file, or of a PyTorch file read with ``weights_only=True`` (no code from
    it runs); a file that is not such a mapping of names to tensors is a :class:`CheckpointError` naming it."""
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(file))
        except Exception as error:  # SafetensorError (truncated, garbage header), OSError
            raise CheckpointError(f"{file} is not a readable safetensors file ({type(error).__name__}: "
                                  f"{error})") from error
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError (objects other than tensors), a truncated zip, OSError
        raise CheckpointError(f"{file} is not a readable PyTorch weights file of tensors only "
                              f"({type(error).__name__}: {error})") from error
    if not isinstance(state, dict):
        raise CheckpointError(f"{file} holds a {type(state).__name__}, not a mapping of weight names to tensors")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{file}: entry {key!r} is a {type(value).__name__}, not a tensor")
    return state


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Path]]:
    """The weights the checkpoint declares (see :func:`declared_weight_files`) and, for each, the file it came from;
    shards must hold exactly the weights their index assigns to them."""
    files, index, weight_map = declared_weight_files(path)
    state: dict[str, torch.Tensor] = {}
    sources: dict[str, Path] = {}
    for file in files:
        tensors = read_weight_file(file)
        if index is not None:
            foreign = sorted(key for key in tensors if weight_map.get(key) != file.name)
            if foreign:
                raise CheckpointError(f"{file} holds weights {foreign[:5]} that {index.name} does not assign to it")
        state.update(tensors)
        sources.update(dict.fromkeys(tensors, file))
    if index is not None:
        absent = sorted(set(weight_map) - set(state))
        if absent:
            raise CheckpointError(f"{index} lists weights {absent[:5]} that are not in their shards")
    return state, sources


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """All weights the checkpoint declares: ``model.safetensors`` (or its sharded index), else ``pytorch_model.bin``
    (or its index) with ``weights_only``."""
    return read_weights(path)[0]


def load_checkpoint(name_or_path: str | os.PathLike, *, weights: bool = True, revision: str | None = None) \
        -> Checkpoint:
    """Reads a checkpoint's configuration (and weights) and says which kind it is; ``revision`` is the Hugging Face
    revision (branch, tag or commit) of a hub id.

    >>> ckpt = load_checkpoint("tests/fixtures/setenc-int")  # a folder, or a Hugging Face id: "webis/set-encoder-base"
    >>> ckpt.kind, ckpt.backbone, ckpt.add_extra_token
    ('set-encoder', 'electra', True)
    """
    path = resolve(name_or_path, revision)
    config = read_config(path)
    kind, backbone = classify(config, str(name_or_path))
    check_backbone_config(config, path / "config.json")
    _check_pair_model(config, kind, path / "config.json")
    state, sources = read_weights(path) if weights else ({}, {})
    return Checkpoint(path=path, kind=kind, backbone=backbone, config=config, name=str(name_or_path),
                      state_dict=state, weight_sources=sources)
