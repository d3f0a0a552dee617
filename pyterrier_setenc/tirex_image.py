"""Building the TIREx Docker image (``tira/Dockerfile``): the checkpoint is fetched once, at build time, so that the
image re-ranks without network access."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .checkpoint import CHECKPOINT_FILES, load_checkpoint


def download_model(name: str, target: str | os.PathLike) -> Path:
    """Fetches a checkpoint's files from the Hugging Face hub into ``target`` (for building the Docker image) and
    checks that they are a checkpoint the suite reads.

    >>> download_model("webis/set-encoder-base", "/model")  # doctest: +SKIP
    """
    from huggingface_hub import snapshot_download

    path = Path(snapshot_download(name, local_dir=str(target), allow_patterns=CHECKPOINT_FILES))
    checkpoint = load_checkpoint(path, weights=False)
    print(f"{name} saved in {path}: a {checkpoint.kind} checkpoint with a {checkpoint.backbone} backbone",
          file=sys.stderr, flush=True)
    return path
