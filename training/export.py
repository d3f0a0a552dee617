"""Saving a trained model as a lightning-ir 0.0.6 checkpoint folder: ``config.json`` (``model_type``
``set-encoder`` or ``mono``, ``backbone_model_type`` and the backbone's fields), ``model.safetensors`` (backbone
weights without prefix plus ``linear.weight``) and the tokenizer files (with ``[INT]`` as an added token).

>>> save_checkpoint(model, "/work/trained/set-encoder-dl21")  # doctest: +SKIP
>>> SetEncoderReRanker("/work/trained/set-encoder-dl21")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from pyterrier_setenc._engine.precision import DTYPES, dtype_name
from pyterrier_setenc.atomic import atomic_folder, atomic_write, current_umask
from pyterrier_setenc.lightning_ir import checkpoint_weight_names
from pyterrier_setenc.model import CrossEncoder

from .model import copy_tokenizer_files, load_model

_TOKENIZER_CLASS = {"set-encoder": "SetEncoderTokenizer", "mono": "CrossEncoderTokenizer"}
_BACKBONE_TOKENIZER = {"bert": "BertTokenizerFast", "electra": "ElectraTokenizerFast"}


STORED_DTYPES = ("float32", "float16", "bfloat16")  # the types a checkpoint is stored in (names of precision.DTYPES)


def lightning_ir_state_dict(model: CrossEncoder, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Weights named as lightning-ir names them: the backbone's without prefix, the head's ``linear.weight``."""
    return {key: tensor.detach().to("cpu", dtype).contiguous()
            for key, tensor in checkpoint_weight_names(model.state_dict()).items()}


def save_checkpoint(model: CrossEncoder, folder: str | os.PathLike, dtype: torch.dtype = torch.float32) -> Path:
    """Writes the checkpoint into ``folder`` atomically (:func:`pyterrier_setenc.atomic.atomic_folder`: a staging
    folder beside it, then swapped in); ``dtype`` (float32, float16 or bfloat16) is the dtype of the stored
    weights."""
    if dtype_name(dtype) not in STORED_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(STORED_DTYPES)}, not {dtype!r}")
    if model.kind not in _TOKENIZER_CLASS:
        raise ValueError(f"only set-encoder and mono models are saved in lightning-ir's format, not {model.kind!r}")
    folder = Path(folder)
    with atomic_folder(folder) as staging:
        config = dict(model.config)
        config["dtype"] = dtype_name(dtype)
        with open(staging / "config.json", "w", encoding="utf-8") as file:
            json.dump(config, file, indent=2, sort_keys=True)
        weights = staging / "model.safetensors"
        save_file(lightning_ir_state_dict(model, dtype), str(weights), metadata={"format": "pt"})
        weights.chmod(0o666 & ~current_umask())  # safetensors creates it readable by its owner only
        source = getattr(model, "tokenizer_path", None)
        if source is None:
            raise ValueError("the model does not say where its tokenizer files are (tokenizer_path); build it with "
                             "training.model.build_model or load it with training.model.load_model")
        _write_tokenizer(Path(source), staging, model.kind, config)
    return folder


def _write_tokenizer(source: Path, target: Path, kind: str, config: dict) -> None:
    settings = copy_tokenizer_files(source, target, ("vocab.txt", "special_tokens_map.json", "added_tokens.json"))
    settings.update(tokenizer_class=_TOKENIZER_CLASS[kind],
                    backbone_tokenizer_class=_BACKBONE_TOKENIZER[config["backbone_model_type"]],
                    query_length=config["query_length"], doc_length=config["doc_length"])
    if kind == "set-encoder":
        settings["add_extra_token"] = bool(config.get("add_extra_token", False))
    with open(target / "tokenizer_config.json", "w", encoding="utf-8") as file:
        json.dump(settings, file, indent=2, sort_keys=True)


def main(argv: list[str] | None = None) -> None:
    """``python -m training.export SOURCE TARGET --dtype float16``: re-save a checkpoint (e.g. in fp16 to ship it)."""
    import argparse

    parser = argparse.ArgumentParser(description="Re-save a lightning-ir set-encoder/mono checkpoint.")
    parser.add_argument("source", help="a checkpoint folder written by the trainer")
    parser.add_argument("target", help="the folder to write (replaced atomically)")
    parser.add_argument("--dtype", choices=sorted(STORED_DTYPES), default="float16")
    args = parser.parse_args(argv)
    dtype = DTYPES[args.dtype]
    card = Path(args.target) / "README.md"
    keep = card.read_text(encoding="utf-8") if card.is_file() else None
    save_checkpoint(load_model(args.source), args.target, dtype=dtype)
    if keep is not None:  # the model card is written by hand: keep it across re-exports
        atomic_write(card, lambda file: file.write(keep))


if __name__ == "__main__":
    main()
