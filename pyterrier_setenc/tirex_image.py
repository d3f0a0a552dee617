"""Building the TIREx Docker image (``tira/Dockerfile``): the checkpoint is fetched once, at build time, so that the
image re-ranks without network access."""

from __future__ import annotations

import fnmatch
import os
import shutil
import sys
from pathlib import Path

from . import embedded
from .checkpoint import CHECKPOINT_FILES, CheckpointError, load_checkpoint

MODEL_FILES = [*CHECKPOINT_FILES, "README.md"]  # README.md: the model card, with the checkpoint's licence


def download_model(name: str, target: str | os.PathLike) -> Path:
    """Puts a checkpoint's files into ``target`` (for building the Docker image) and checks that they are a checkpoint
    the suite reads. ``name`` is a Hugging Face id (fetched), a local checkpoint folder or the Python name of a
    checkpoint shipped in the package, ``pyterrier_setenc.embedded.SET_ENCODER`` or ``pyterrier_setenc.embedded.MONO``
    (copied).

    >>> download_model("webis/set-encoder-base", "/model")  # doctest: +SKIP
    >>> import tempfile
    >>> download_model("pyterrier_setenc.embedded.SET_ENCODER", f"{tempfile.mkdtemp()}/model").name
    'model'
    """
    target = Path(target)
    shipped = embedded.named(name)
    local = shipped or Path(name).expanduser()
    if local.is_dir():
        load_checkpoint(local, weights=False)  # a folder the suite cannot read is refused before anything is copied
        target.mkdir(parents=True, exist_ok=True)
        for file in sorted(local.iterdir()):
            if file.is_file() and any(fnmatch.fnmatch(file.name, pattern) for pattern in MODEL_FILES):
                shutil.copy2(file, target / file.name)
        path = target
    elif shipped is not None or local.exists() or name.startswith(("/", ".", "~")) or name.count("/") > 1:
        raise CheckpointError(f"{name!r} is not a checkpoint folder: {local} is "
                              + ("a file" if local.exists() else "missing"))
    else:
        from huggingface_hub import snapshot_download

        try:
            path = Path(snapshot_download(name, local_dir=str(target), allow_patterns=MODEL_FILES))
        except Exception as error:  # network, unknown id, gated model: say which
            raise CheckpointError(f"{name!r} is neither a local folder nor a Hugging Face model that could be "
                                  f"fetched: {error}") from error
    checkpoint = load_checkpoint(path, weights=False)
    print(f"{name} saved in {path}: a {checkpoint.kind} checkpoint with a {checkpoint.backbone} backbone",
          file=sys.stderr, flush=True)
    return path
