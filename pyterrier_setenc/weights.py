"""Loading a checkpoint's weights into a model, strictly: every weight of the model must be there with its shape and
floating-point values, and every weight of the checkpoint must be used (except those the caller calls harmless).
The cross-encoders (:mod:`.model`) and ListConRanker (:mod:`.listconranker_model`) load through :func:`load_weights`;
anything that does not fit is a :class:`.CheckpointError` naming the file and the weights.

>>> from torch import nn
>>> load_weights(nn.Linear(2, 1), {"weight": torch.zeros(1, 3), "bias": torch.zeros(1)},
...              {"weight": Path("head.safetensors")}, Path("ckpt"))
Traceback (most recent call last):
...
pyterrier_setenc.checkpoint.CheckpointError: head.safetensors: weight weight has shape (1, 3), the model expects (1, 2)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from .checkpoint import CheckpointError

# weights that checkpoints carry and that are harmless when the model does not use them: position and token type
# id buffers older transformers versions saved, and BertModel's pooler when the scoring head does not use it
HARMLESS_WEIGHTS = frozenset({"embeddings.position_ids", "embeddings.token_type_ids", "pooler.dense.weight",
                              "pooler.dense.bias"})
_LAYER = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.")


def _same(name: str) -> str:
    return name


def _never(key: str) -> bool:
    return False


def _expects(name: str, shape: tuple[int, ...]) -> str:
    return f"the model expects {shape}"


def load_weights(model: nn.Module, weights: Mapping[str, torch.Tensor], sources: Mapping[str, Path], folder: Path, *,
                 rename: Callable[[str], str] = _same, harmless: Callable[[str], bool] = _never,
                 shown: Callable[[str], str] = _same, expects: Callable[[str, tuple[int, ...]], str] = _expects,
                 num_layers: int | None = None) -> None:
    """Loads ``weights`` (as named in the checkpoint) into ``model``.

    ``sources`` names the file each weight came from (``folder`` where none is known); ``rename`` gives the model's
    name of a checkpoint weight, ``shown`` the name a missing weight of the model has in the checkpoint; a weight the
    model does not use is an error unless ``harmless`` says otherwise. ``expects`` says where an expected shape comes
    from; ``num_layers`` (the configuration's) explains unused encoder layers. Two checkpoint weights that are the same
    weight of the model, unused or missing weights, wrong shapes and values that are not floating-point numbers are a
    :class:`.CheckpointError` naming the file and the weights."""
    own = model.state_dict()
    files = sorted({str(file) for file in sources.values()}) or [str(folder)]

    def where(key: str) -> str:
        return str(sources[key]) if key in sources else ", ".join(files)

    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    unexpected = []
    for key, tensor in weights.items():
        name = rename(key)
        if name not in own:
            if not harmless(key):
                unexpected.append(key)
            continue
        if name in mapped:
            raise CheckpointError(f"{where(key)}: weights {origin[name]!r} and {key!r} are the same weight of the "
                                  "model")
        mapped[name], origin[name] = tensor, key
    if unexpected:
        unexpected.sort()
        raise CheckpointError(f"{where(unexpected[0])}: holds weights the model does not use: {unexpected[:6]}"
                              f"{' ...' if len(unexpected) > 6 else ''}{_layer_hint(unexpected, num_layers)}")
    missing = sorted(shown(name) for name in set(own) - set(mapped))
    if missing:
        raise CheckpointError(f"{', '.join(files)}: the checkpoint lacks weights {missing[:8]}"
                              f"{' ...' if len(missing) > 8 else ''}")
    for name, tensor in mapped.items():
        if tensor.shape != own[name].shape:
            raise CheckpointError(f"{where(origin[name])}: weight {origin[name]} has shape {tuple(tensor.shape)}, "
                                  f"{expects(name, tuple(own[name].shape))}")
        if not tensor.is_floating_point():
            raise CheckpointError(f"{where(origin[name])}: weight {origin[name]} holds {tensor.dtype} values, not "
                                  "floating-point numbers")
    model.load_state_dict(mapped, strict=True)


def _layer_hint(keys: list[str], num_layers: int | None) -> str:
    """Unused weights of encoder layers beyond the configuration's: say how many layers each has."""
    layers = {int(match.group(1)) for key in keys if (match := _LAYER.search(key))}
    if num_layers is None or not layers:
        return ""
    return f" (config.json has num_hidden_layers {num_layers}, the weights have {max(layers) + 1} layers)"
