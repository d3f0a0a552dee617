"""The experiments' re-rankers: the default rows, names from ``--model`` specifications, loading checkpoints with
the re-ranker settings (in this process or on Ray) and what identifies each row's outputs for reuse."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyterrier as pt

from pyterrier_setenc.settings import RerankerSettings

from .output import safe_name

ModelSource = pt.Transformer | str | os.PathLike  # a re-ranker, or a checkpoint to load
ModelsArg = Mapping[str, ModelSource] | Sequence[ModelSource]


@dataclass
class Model:
    """A re-ranker of an experiment: its row name, the transformer, and what its outputs depend on (``identity``;
    for a transformer given as an object, what its ``output_identity()`` says, else ``None``: its outputs are then
    never reused)."""

    name: str
    transformer: pt.Transformer
    identity: dict[str, Any] | None = None


TEACHER_ROW = "teacher-minilm"


def default_models(verbose: bool = True) -> dict[str, str | pt.Transformer]:
    """The rows the commands evaluate when no ``--model`` is given: the checkpoints shipped in the package
    (:mod:`pyterrier_setenc.embedded`, the Set-Encoder and its mono twin) where the installed package has them, and
    their distillation teacher, the bi-encoder all-MiniLM-L6-v2 (:func:`training.teacher.teacher_reranker`), as a
    reference row. Everything is on the machine: no network."""
    from pyterrier_setenc import embedded
    from training.teacher import teacher_reranker

    models: dict[str, str | pt.Transformer] = {
        name: str(folder) for name, folder in (("set-encoder", embedded.SET_ENCODER), ("mono", embedded.MONO))
        if (folder / "config.json").is_file()}
    models[TEACHER_ROW] = teacher_reranker(verbose=verbose)
    return models


def split_model_spec(spec: str | os.PathLike) -> tuple[str | None, str]:
    """``NAME=PATH`` -> (NAME, PATH); a plain checkpoint (or an existing path that contains ``=``) -> (None, it)."""
    text = str(spec)
    if "=" not in text or Path(text).expanduser().exists():
        return None, text
    name, _, source = text.partition("=")
    if not name.strip() or not source.strip():
        raise ValueError(f"--model {text!r}: give NAME=PATH with a non-empty name and checkpoint, or a checkpoint")
    return name.strip(), source.strip()


def model_name(model: str | os.PathLike | pt.Transformer) -> str:
    """A short row name: the folder name of a local checkpoint, the id of a hub model, the repr of a transformer."""
    if isinstance(model, pt.Transformer):
        return repr(model)
    path = Path(model).expanduser()
    return path.resolve().name if path.exists() else str(model)


def distinct_names(sources: list[str]) -> list[str]:
    """Row names for checkpoints: the folder name, or as many trailing path parts as needed to tell apart two
    folders of the same name (``a/model``, ``b/model``)."""
    paths = [Path(s).expanduser().resolve() if Path(s).expanduser().exists() else None for s in sources]
    names = [model_name(s) for s in sources]
    parts = 1
    while True:
        parts += 1
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            groups.setdefault(name, []).append(i)
        clashing: list[tuple[int, Path]] = []
        for group in groups.values():
            folders = [path for path in (paths[i] for i in group) if path is not None]
            if len(group) > 1 and len(folders) == len(group) and len(set(folders)) == len(group):
                clashing += [(i, path) for i, path in zip(group, folders) if len(path.parts) > parts]
        if not clashing:
            return names  # distinct, or the same folder twice (refused by the caller)
        for i, path in clashing:
            names[i] = "/".join(path.parts[-parts:])


def code_fingerprint() -> str:
    """A hash of the re-rankers' source code: stored outputs of another version of the code are not reused."""
    import pyterrier_setenc

    digest = hashlib.sha256()
    for path in sorted(Path(pyterrier_setenc.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def checkpoint_identity(source: str, transformer: pt.Transformer) -> dict[str, Any]:
    """What identifies a loaded checkpoint's scores: the re-ranker's :meth:`~pyterrier_setenc.ReRanker.cache_key`
    (class, settings, configuration and a digest of the weights: the identity :class:`~pyterrier_setenc.ListwiseCache`
    keys on too); on Ray, where the weights live in the actors, the checkpoint's name and the revision of its local
    snapshot (a hub id) or the names, sizes and modification times of its files (a folder)."""
    cache_key = getattr(transformer, "cache_key", None)
    if callable(cache_key):
        return {"checkpoint": source, "weights": cache_key()}
    path = Path(source).expanduser()
    if path.exists():
        digest = hashlib.sha256()
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            status = file.stat()
            digest.update(f"{file.relative_to(path.parent)}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
        return {"checkpoint": str(path.resolve()), "files": digest.hexdigest()[:16]}
    try:
        from huggingface_hub import snapshot_download

        snapshot = Path(snapshot_download(source, local_files_only=True)).name
    except Exception:  # not in the local cache (or not a hub id): the id alone
        snapshot = None
    return {"checkpoint": source, "snapshot": snapshot}


DEFAULT_SETTINGS = RerankerSettings()  # frozen: safe to share as a default


def resolve_models(models: ModelsArg, settings: RerankerSettings = DEFAULT_SETTINGS, *,
                   reserved: Sequence[str] = ()) -> list[Model]:
    """The experiment's re-rankers with their row names. Checkpoints (``PATH``, a hub id, or ``NAME=PATH``; in a
    mapping ``{name: checkpoint}``) are loaded with ``settings`` (:meth:`RerankerSettings.load`: in this process or
    on Ray actors); transformers are used as they are. Names must be distinct, also as file names, and differ from
    ``reserved`` (the other rows). ``dtype="auto"`` is resolved here, so that the actors and the stored outputs'
    identity take what this machine chose."""
    entries: list[tuple[str | None, ModelSource]]
    if isinstance(models, Mapping):
        entries = [(str(name), model) for name, model in models.items()]
    else:
        entries = [(None, model) if isinstance(model, pt.Transformer) else split_model_spec(model) for model in models]
    unnamed = [i for i, (name, model) in enumerate(entries) if name is None and not isinstance(model, pt.Transformer)]
    names = [name if name is not None else model_name(model) for name, model in entries]
    for i, name in zip(unnamed, distinct_names([str(entries[i][1]) for i in unnamed])):
        names[i] = name
    seen: dict[str, str] = {safe_name(name): name for name in reserved}
    for name, (_, model) in zip(names, entries):
        other = seen.get(safe_name(name))
        if other is not None:
            what = "the same row name" if other == name else f"a row name that clashes with {other!r} as a file name"
            raise ValueError(f"--model: {model} gets {what} {name!r}; name each model with --model NAME=PATH")
        seen[safe_name(name)] = name
    settings = replace(settings, dtype=settings.resolved_dtype())
    numerics = dict(batch_size=settings.batch_size, device=settings.device, max_length=settings.max_length,
                    dtype=settings.dtype, int8=settings.int8)
    for _, model in entries:  # before any model is loaded
        if not isinstance(model, pt.Transformer):
            settings.check(str(model))
    loaded = []
    for name, (_, model) in zip(names, entries):
        if isinstance(model, pt.Transformer):
            describe = getattr(model, "output_identity", None)
            identity = {**describe(), "code": code_fingerprint()} if callable(describe) else None
            loaded.append(Model(name, model, identity))
            continue
        source = str(model)
        transformer = settings.load(source)
        loaded.append(Model(name, transformer, {**checkpoint_identity(source, transformer),
                                                "class": type(transformer).__name__, **numerics,
                                                "device": str(getattr(transformer, "device", settings.device)),
                                                "code": code_fingerprint()}))
    return loaded


def load_models(models: ModelsArg, **kwargs) -> dict[str, pt.Transformer]:
    """Re-rankers by row name (see :func:`resolve_models` for the arguments)."""
    return {model.name: model.transformer for model in resolve_models(models, **kwargs)}
