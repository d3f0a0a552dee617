"""Numerics per machine: the floating-point type a model computes in, the choice for ``dtype="auto"``, and half
precision that keeps the ranking.

``dtype="auto"`` picks what is fast on the machine at hand:

- a CUDA GPU: bfloat16 where it has it (compute capability 8.0 and newer), else float16;
- a CPU with bfloat16 instructions (AVX-512 BF16 or AMX): bfloat16;
- any other CPU (e.g. AVX2 only, where bfloat16 runs at a fraction of float32's speed), MPS and anything else:
  float32.

float32 is the default of every re-ranker and command, and the only type that reproduces the published scores
(lightning-ir's, to float32 rounding: :mod:`.tolerance`). bfloat16 moved the shipped models' scores by up to 0.14
where a list's scores spread by about 2, which reorders close passages (Kendall tau 0.993 against float32 over the
DL19 and DL20 lists; ``benchmarks/precision.py``).

Half precision (bfloat16, float16) runs the encoder's linear layers, its attention and its hidden states in that
type, while what decides the ranking stays in float32: the embedding sums, every layer norm (its weights; its
statistics torch computes in float32 for half inputs) and the scoring head with its input (bfloat16 logits would
collapse close scores into ties). :func:`set_precision` converts a model so; the forward passes upcast at those
boundaries.

>>> resolve_dtype("bfloat16", torch.device("cpu"))
torch.bfloat16
>>> resolve_dtype(None, torch.device("cpu"))
torch.float32
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "float64": torch.float64}
AUTO = "auto"
HALF = (torch.bfloat16, torch.float16)
_Module = TypeVar("_Module", bound=nn.Module)


def cpu_has_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX-512 BF16 or AMX tiles), as torch sees it."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(check is not None for check in checks):
        return any(check is not None and check() for check in checks)
    try:  # older torch: the kernel's flags
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            flags = set(file.read().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def auto_dtype(device: torch.device) -> torch.dtype:
    """The type ``dtype="auto"`` gives on ``device`` (see the module)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    if device.type == "cpu" and cpu_has_bfloat16():
        return torch.bfloat16
    return torch.float32


def resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    """``None`` (float32), ``"auto"`` (:func:`auto_dtype` on ``device``), a floating torch dtype, or its name
    (``"bfloat16"``, ``"torch.float16"``)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str) and dtype == AUTO:
        return auto_dtype(device)
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in DTYPES:
        return DTYPES[dtype.removeprefix("torch.")]
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    hint = " (for int8 use int8=True)" if "int8" in str(dtype) else ""
    raise ValueError(f"dtype must be 'auto', one of {sorted(DTYPES)} (a torch dtype or its name) or None, "
                     f"got {dtype!r}{hint}")


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")


def kept_in_float32(module: nn.Module) -> list[nn.Module]:
    """The parts of a model that stay in float32 under half precision: embeddings, layer norms and what a model
    names in ``float32_modules`` (its scoring head)."""
    from .encoder import Embeddings

    kept: list[nn.Module] = [m for m in module.modules() if isinstance(m, (nn.LayerNorm, Embeddings))]
    for name in getattr(module, "float32_modules", ()):
        kept.append(module.get_submodule(name))
    return kept


def set_precision(module: _Module, dtype: torch.dtype) -> _Module:
    """``module`` (in place) computing in ``dtype``; for half types the parts of :func:`kept_in_float32` stay
    float32."""
    module.to(dtype)
    if dtype in HALF:
        for part in kept_in_float32(module):
            part.float()
    return module


def has_precision(module: nn.Module, dtype: torch.dtype) -> bool:
    """Whether :func:`set_precision` would leave ``module`` as it is."""
    kept = {id(t) for part in kept_in_float32(module) for t in [*part.parameters(), *part.buffers()]} \
        if dtype in HALF else set()
    return all(t.dtype == (torch.float32 if id(t) in kept else dtype)
               for t in [*module.parameters(), *module.buffers()] if t.is_floating_point())


def layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)`` in ``x``'s type, for a float32 layer norm and half ``x`` too (statistics in float32)."""
    if x.dtype == norm.weight.dtype:
        return norm(x)
    if x.device.type == "cpu":  # torch's CPU kernel takes half inputs with float32 weights
        return norm(x)
    return norm(x.float()).to(x.dtype)
