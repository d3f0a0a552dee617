"""The model families the suite reads, in one registry: how each is recognised from its checkpoint folder and which
re-ranker serves it. :func:`pyterrier_setenc.load_reranker`, the settings' checks and the command lines ask
:func:`family_of`; nothing guesses a family from a model's name.

=====================  =============================================================  ==========================
family                 recognised by                                                  re-ranker
=====================  =============================================================  ==========================
``listconranker``      ``list_transformer.pt`` beside a BERT ``config.json``          ``ListConRankerReRanker``
``set-encoder``        lightning-ir ``config.json``, ``model_type`` ``set-encoder``   ``SetEncoderReRanker``
``mono``               lightning-ir ``config.json``, ``model_type`` ``mono``          ``MonoReRanker``
``hf-cross-encoder``   ``architectures`` ``BertForSequenceClassification`` or         ``MonoReRanker``
                       ``ElectraForSequenceClassification``
=====================  =============================================================  ==========================

The families are asked in this order; the first that recognises a folder serves it. A lightning-ir folder with an
option this package does not support is an error naming the option, not another family's checkpoint. The typed
configuration of the lightning-ir families is :class:`pyterrier_setenc.lightning_ir.LightningIRConfig`; how a
checkpoint is read is :mod:`.checkpoint` (cross-encoders) and :mod:`.listconranker_model`.

>>> family_of("tests/fixtures/setenc-int").name
'set-encoder'
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from .checkpoint import CHECKPOINT_FILES, SUPPORTED_MESSAGE, CheckpointError, classify, read_config, resolve

if TYPE_CHECKING:
    from .reranker import ReRanker

LIST_FILES = ("linear_in_embedding.pt", "list_transformer.pt")  # what a ListConRanker folder holds beside BERT's


class Folder:
    """A checkpoint folder as the families see it: its path and, read once on first use, the kind its
    ``config.json`` declares (:func:`.checkpoint.classify`)."""

    def __init__(self, path: Path):
        self.path = path

    @cached_property
    def kind(self) -> str:
        return classify(read_config(self.path), str(self.path))[0]  # unsupported options: an error naming them


@dataclass(frozen=True)
class Family:
    """One model family: its name, how a checkpoint folder is recognised, and the re-ranker (``module:Class`` in the
    package, imported on use) that serves it."""

    name: str
    recognises: Callable[[Folder], bool]
    reranker: str

    def reranker_class(self) -> type[ReRanker]:
        module, _, cls = self.reranker.partition(":")
        return getattr(import_module(f".{module}", __package__), cls)


def _has_list_transformer(folder: Folder) -> bool:
    return (folder.path / "list_transformer.pt").is_file()


def _cross_encoder_kind(kind: str) -> Callable[[Folder], bool]:
    def recognises(folder: Folder) -> bool:
        return folder.kind == kind

    return recognises


FAMILIES: tuple[Family, ...] = (
    Family("listconranker", _has_list_transformer, "listconranker:ListConRankerReRanker"),
    Family("set-encoder", _cross_encoder_kind("set-encoder"), "set_encoder:SetEncoderReRanker"),
    Family("mono", _cross_encoder_kind("mono"), "mono:MonoReRanker"),
    Family("hf-cross-encoder", _cross_encoder_kind("hf-cross-encoder"), "mono:MonoReRanker"),
)


def checkpoint_folder(name_or_path: str | os.PathLike, revision: str | None = None) -> Path:
    """The local folder of a checkpoint: a folder as it is, a Hugging Face id fetched (the files any family needs)."""
    return resolve(name_or_path, revision, [*CHECKPOINT_FILES, *LIST_FILES])


def family_of(name_or_path: str | os.PathLike, revision: str | None = None) -> Family:
    """The family of a checkpoint (a folder or a Hugging Face id); a :class:`CheckpointError` names what was found
    when no family recognises it."""
    folder = Folder(checkpoint_folder(name_or_path, revision))
    for family in FAMILIES:
        if family.recognises(folder):
            return family
    raise CheckpointError(f"{name_or_path}: no model family recognises this checkpoint; {SUPPORTED_MESSAGE}, "
                          "and ListConRanker folders (list_transformer.pt)")
