"""lightning-ir's checkpoint layout, in one place: the typed configuration of its ``set-encoder`` and ``mono``
models (:class:`LightningIRConfig`, every option and default of ``config.json`` that this package reads) and how
their weights are named in a checkpoint (:func:`checkpoint_weight_names`, :func:`model_weight_name`). The loader
(:mod:`.model`), the trainer's export and state files and the tests' checkpoint builders all use these.

>>> config = LightningIRConfig.from_json({"model_type": "set-encoder", "backbone_model_type": "electra",
...                                       "add_extra_token": True})
>>> config.pooling_strategy, config.query_length, config.interaction_token
('first', 32, True)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args, get_type_hints

import torch

ModelType = Literal["set-encoder", "mono"]
Backbone = Literal["bert", "electra"]
Pooling = Literal["first", "bert_pool", "mean", "sum", "max"]
Scoring = Literal["rank", "mono"]
MODEL_TYPES: dict[str, ModelType] = {"set-encoder": "set-encoder", "mono": "mono", "cross-encoder": "mono"}
HEAD_PREFIX, BACKBONE_PREFIX = "head.", "backbone."


class LightningIRConfigError(ValueError):
    """A lightning-ir option with a value this package does not support; the message names the option."""


@dataclass(frozen=True)
class LightningIRConfig:
    """The options of a lightning-ir cross-encoder's ``config.json`` (defaults: lightning-ir 0.0.6's).

    ``model_type`` ``cross-encoder`` (older lightning-ir) reads as ``mono``.
    """

    model_type: ModelType
    backbone_model_type: Backbone
    pooling_strategy: Pooling = "first"
    scoring_strategy: Scoring = "rank"
    linear_bias: bool = False
    query_length: int = 32
    doc_length: int = 512
    add_extra_token: bool = False
    use_adapter: bool = False

    @classmethod
    def from_json(cls, config: Mapping[str, Any]) -> LightningIRConfig:
        """The options of a parsed ``config.json``; an unsupported value is a :class:`LightningIRConfigError`
        naming the option and what is supported (lengths are checked against the backbone by the loader)."""
        model_type = MODEL_TYPES.get(config.get("model_type"))  # type: ignore[arg-type]
        if model_type is None:
            raise LightningIRConfigError(f"lightning-ir model_type {config.get('model_type')!r} is not supported "
                                         f"(supported: {sorted(MODEL_TYPES)})")
        values: dict[str, Any] = {"model_type": model_type}
        for option in fields(cls)[1:]:
            if option.name in config and config[option.name] is not None:
                values[option.name] = config[option.name]
        hints = get_type_hints(cls)
        for name, value in values.items():
            choices, kind = get_args(hints[name]), hints[name]
            if choices and value not in choices:
                raise LightningIRConfigError(f"{name} {value!r} is not supported (supported: "
                                             f"{', '.join(map(repr, choices))})")
            if kind in (bool, int) and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
                raise LightningIRConfigError(f"{name} must be {'true or false' if kind is bool else 'a whole number'}"
                                             f", found {value!r}")
        if values.get("use_adapter"):
            raise LightningIRConfigError("use_adapter: checkpoints with LoRA adapters are not supported")
        return cls(**values)

    @property
    def interaction_token(self) -> bool:
        """Whether sequences carry the Set-Encoder's ``[INT]`` token (only ``set-encoder`` models use it)."""
        return self.model_type == "set-encoder" and bool(self.add_extra_token)

    @property
    def listwise(self) -> bool:
        return self.model_type == "set-encoder"


def checkpoint_weight_names(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A :class:`~pyterrier_setenc.model.CrossEncoder`'s weights named as lightning-ir stores them: the backbone's
    without a prefix, the head's as ``linear.weight`` (and ``linear.bias``)."""
    named = {}
    for name, tensor in state_dict.items():
        key = name.removeprefix(BACKBONE_PREFIX) if name.startswith(BACKBONE_PREFIX) else name.removeprefix(
            HEAD_PREFIX)
        if key in named:
            raise ValueError(f"weights {name!r} and another one are both stored as {key!r}")
        named[key] = tensor
    return named


def model_weight_name(key: str, own: Iterable[str], backbone_prefix: str = "") -> str:
    """The model's name for a checkpoint weight ``key`` (the inverse of :func:`checkpoint_weight_names`; Hugging
    Face's ``bert.``/``electra.`` prefix, ``backbone_prefix``, removed first): ``backbone.KEY`` when the model has
    it, else ``head.KEY`` (which the caller checks)."""
    short = key.removeprefix(backbone_prefix) if backbone_prefix else key
    own = own if isinstance(own, (set, dict)) else set(own)
    return f"{BACKBONE_PREFIX}{short}" if f"{BACKBONE_PREFIX}{short}" in own else f"{HEAD_PREFIX}{short}"
