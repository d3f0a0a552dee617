"""Damaged checkpoints, one row per case: each ends in a ``CheckpointError`` (or, for a bad ``max_length`` argument,
a ``ValueError``) whose message names the file (or argument) and what is wrong, or loads with exactly the scores
of the undamaged checkpoint (the documented behaviour for files and weights that are ignored on purpose).

Every case copies a tiny committed fixture (``tests/fixtures``) or a Hugging Face cross-encoder saved by
transformers' ``save_pretrained`` into ``tmp_path`` and damages one thing. The expected outcome of each row is
written by hand from the checkpoint formats: Hugging Face reads ``model.safetensors``, else the shards its index
lists, else ``pytorch_model.bin`` (transformers' ``modeling_utils``); a pair template has 3 special tokens
(``[CLS] q [SEP] p [SEP]``), 4 with the Set-Encoder's ``[INT]``."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from pyterrier_setenc import CheckpointError, CrossEncoder, SetEncoderReRanker
from pyterrier_setenc.listconranker_model import ListConRankerModel

from builders import FIXTURES, build_hf_cross_encoder

QUERIES = ["what is a lobster roll"]
LISTS = [["A lobster roll is a sandwich of lobster meat.", "Lobsters live on the sea floor.", "Maine is a state."]]


# --- damage: each returns a function of the copied folder -------------------------------------------------------

def edit_json(name: str, **changes) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        data = json.loads((folder / name).read_text())
        data.update(changes)
        (folder / name).write_text(json.dumps(data))
    return damage


def drop_json_key(name: str, key: str) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        data = json.loads((folder / name).read_text())
        del data[key]
        (folder / name).write_text(json.dumps(data))
    return damage


def write(name: str, data: bytes | str) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        (folder / name).write_bytes(data.encode() if isinstance(data, str) else data)
    return damage


def truncate(name: str, keep: float) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[:int(len(data) * keep)])
    return damage


def edit_weights(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        state = load_file(str(folder / "model.safetensors"))
        change(state)
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return damage


def edit_pt(name: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        state = torch.load(folder / name, weights_only=True)
        change(state)
        torch.save(state, folder / name)
    return damage


def scaled(state: dict, factor: float = 3.0) -> dict:
    return {key: tensor * factor if tensor.is_floating_point() else tensor for key, tensor in state.items()}


def stray_backup(folder: Path) -> None:
    """A backup with other weights beside model.safetensors (sorted before it by name)."""
    save_file(scaled(load_file(str(folder / "model.safetensors"))), str(folder / "model_old_backup.safetensors"))


def only_stray(folder: Path) -> None:
    (folder / "model.safetensors").rename(folder / "model_old_backup.safetensors")


def shard(kind: str = "safetensors", index_change: Callable[[dict, list], None] | None = None,
          shard_change: Callable[[list], None] | None = None) -> Callable[[Path], None]:
    """Splits model.safetensors into two shards plus an index (as transformers' sharded save_pretrained writes);
    a stray ``model_old_backup`` file with other weights lies beside them."""
    def damage(folder: Path) -> None:
        state = load_file(str(folder / "model.safetensors"))
        (folder / "model.safetensors").unlink()
        keys = sorted(state)
        names = [f"model-0000{i}-of-00002.{'safetensors' if kind == 'safetensors' else 'bin'}" for i in (1, 2)]
        weight_map = {key: names[0] if i < len(keys) // 2 else names[1] for i, key in enumerate(keys)}
        parts = [{k: state[k] for k in keys if weight_map[k] == name} for name in names]
        if shard_change:  # the shards change, the index stays
            shard_change(parts)
        for name, part in zip(names, parts):
            if kind == "safetensors":
                save_file(part, str(folder / name), metadata={"format": "pt"})
            else:
                torch.save(part, folder / name)
        index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
        if index_change:
            index_change(index, names)
        index_name = "model.safetensors.index.json" if kind == "safetensors" else "pytorch_model.bin.index.json"
        (folder / index_name).write_text(json.dumps(index))
        save_file(scaled(state), str(folder / "model_old_backup.safetensors"))
    return damage


def to_bin(extra: Callable[[Path], None] | None = None) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        state = load_file(str(folder / "model.safetensors"))
        (folder / "model.safetensors").unlink()
        torch.save(state, folder / "pytorch_model.bin")
        save_file(scaled(state), str(folder / "model_old_backup.safetensors"))
        if extra:
            extra(folder)
    return damage


def remove_line(name: str, line: str) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        lines = (folder / name).read_text().split("\n")
        (folder / name).write_text("\n".join(x for x in lines if x != line))
    return damage


def replace_text(name: str, old: str, new: str) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        (folder / name).write_text((folder / name).read_text().replace(old, new))
    return damage


def add_vocab_lines(name: str, count: int) -> Callable[[Path], None]:
    """More word pieces than the model's embedding matrix has rows (a tokenizer of another, larger model)."""
    def damage(folder: Path) -> None:
        text = (folder / name).read_text(encoding="utf-8").rstrip("\n")
        (folder / name).write_text(text + "".join(f"\nextraword{i}" for i in range(count)) + "\n", encoding="utf-8")
    return damage


def tokenizer_json(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
        change(data)
        (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    return damage


def without_unk(data: dict) -> None:
    """The [UNK] entry renamed in the vocabulary (the model still names [UNK] as its unknown token)."""
    data["model"]["vocab"]["[XNK]"] = data["model"]["vocab"].pop("[UNK]")
    for token in data["added_tokens"]:
        if token["content"] == "[UNK]":
            token["content"] = "[XNK]"


def more_added_tokens(data: dict) -> None:
    top = max(token["id"] for token in data["added_tokens"]) if data["added_tokens"] else 0
    top = max(top, max(data["model"]["vocab"].values()))
    data["added_tokens"] += [dict(id=top + 1 + i, content=f"[EXTRA{i}]", single_word=False, lstrip=False,
                                  rstrip=False, normalized=False, special=True) for i in range(8)]


def both(*damages: Callable[[Path], None]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        for d in damages:
            d(folder)
    return damage


# --- the cases ----------------------------------------------------------------------------------------------------

SAME = "same scores"  # the documented outcome: loads, scores identical to the undamaged checkpoint


@dataclass
class Case:
    id: str
    fixture: str  # a folder of tests/fixtures, or "hf-bert"/"hf-electra" (save_pretrained cross-encoders)
    damage: Callable[[Path], None]
    outcome: type | str  # CheckpointError, ValueError or SAME
    file: str | None = None  # the file whose path the message must contain
    what: str = ""  # a regular expression the message must match
    max_length: int | None = None


def rows(group: str, *cases: Case) -> list:
    return [pytest.param(case, id=f"{group}:{case.id}") for case in cases]


E = CheckpointError
CASES = [
    *rows(
        "declared weight files",
        Case("stray backup beside model.safetensors is ignored", "setenc-int", stray_backup, SAME),
        Case("stray backup beside a mono model is ignored", "mono", stray_backup, SAME),
        Case("only a stray backup: no weights", "setenc-int", only_stray, E, None,
             r"has no weights: expected model\.safetensors.*found \['model_old_backup\.safetensors'\], which no "
             r"index declares"),
        Case("safetensors shards of the index, stray backup ignored", "setenc-int", shard(), SAME),
        Case("pytorch_model.bin shards of the index, stray backup ignored", "mono", shard("bin"), SAME),
        Case("pytorch_model.bin beside a stray safetensors file", "setenc-noint", to_bin(), SAME),
        Case("index lists a missing shard", "setenc-int",
             shard(index_change=lambda index, names: index["weight_map"].update(
                 {"linear.weight": "model-00003-of-00002.safetensors"})),
             E, "model.safetensors.index.json", r"lists the shard model-00003-of-00002\.safetensors, which is missing"),
        Case("a shard holds a weight its index does not assign to it", "setenc-int",
             shard(shard_change=lambda parts: parts[0].update({"linear.weight": parts[1].pop("linear.weight")})),
             E, "model-00001-of-00002.safetensors", r"holds weights \['linear\.weight'\] that "
             r"model\.safetensors\.index\.json does not assign to it"),
        Case("index lists a weight no shard holds", "setenc-int",
             shard(index_change=lambda index, names: index["weight_map"].update({"extra.weight": names[0]})),
             E, "model.safetensors.index.json", r"lists weights \['extra\.weight'\] that are not in their shards"),
        Case("index points outside the folder", "setenc-int",
             shard(index_change=lambda index, names: index["weight_map"].update(
                 {"linear.weight": "../model.safetensors"})),
             E, "model.safetensors.index.json", r"'linear\.weight' is in '\.\./model\.safetensors', not a file name"),
        Case("index without weight_map", "setenc-int",
             shard(index_change=lambda index, names: index.pop("weight_map")),
             E, "model.safetensors.index.json", r"weight_map must be a non-empty object"),
    ),
    *rows(
        "weights that do not fit the model",
        Case("config with fewer layers than the weights", "setenc-int", edit_json("config.json", num_hidden_layers=1),
             E, "model.safetensors", r"holds weights the model does not use: \['encoder\.layer\.1\..*"
             r"num_hidden_layers 1, the weights have 2 layers"),
        Case("unknown weight", "mono", edit_weights(lambda s: s.update({"classifier.extra": torch.zeros(2)})),
             E, "model.safetensors", r"does not use: \['classifier\.extra'\]"),
        Case("an MLM head is not harmless", "hf-bert",
             edit_weights(lambda s: s.update({"cls.predictions.bias": torch.zeros(30522)})),
             E, "model.safetensors", r"does not use: \['cls\.predictions\.bias'\]"),
        Case("the other backbone's prefix", "hf-electra",
             edit_weights(lambda s: s.update({"bert.embeddings.LayerNorm.bias": torch.zeros(16)})),
             E, "model.safetensors", r"does not use: \['bert\.embeddings\.LayerNorm\.bias'\]"),
        Case("one weight twice, with and without prefix", "setenc-int",
             edit_weights(lambda s: s.update({"electra.linear.weight": s["linear.weight"].clone()})),
             E, "model.safetensors", r"weights 'electra\.linear\.weight' and 'linear\.weight' are the same weight"
             r"|weights 'linear\.weight' and 'electra\.linear\.weight' are the same weight"),
        Case("missing scoring head", "setenc-int", edit_weights(lambda s: s.pop("linear.weight")),
             E, "model.safetensors", r"lacks weights \['linear\.weight'\]"),
        Case("missing pooler of a BERT classifier", "hf-bert",
             edit_weights(lambda s: [s.pop(k) for k in ("bert.pooler.dense.weight", "bert.pooler.dense.bias")]),
             E, "model.safetensors", r"lacks weights \['pooler\.dense\.bias', 'pooler\.dense\.weight'\]"),
        Case("config wider than the weights", "mono", edit_json("config.json", intermediate_size=48),
             E, "model.safetensors", r"weight encoder\.layer\.0\.intermediate\.dense\.bias has shape \(64,\), "
             r"config\.json implies \(48,\)"),
        Case("vocabulary rows differ from config", "mono", edit_json("config.json", vocab_size=30600),
             E, "model.safetensors", r"embeddings\.word_embeddings\.weight has shape \(30522, 8\), config\.json says "
             r"vocab_size 30600"),
        Case("integer weights", "mono",
             edit_weights(lambda s: s.update({"linear.weight": s["linear.weight"].to(torch.int64)})),
             E, "model.safetensors", r"weight linear\.weight holds torch\.int64 values"),
        Case("lightning-ir BERT with an unused pooler and position ids", "mono-2class",
             edit_weights(lambda s: s.update({"pooler.dense.weight": torch.ones(16, 16),
                                              "pooler.dense.bias": torch.ones(16),
                                              "embeddings.position_ids": torch.arange(512)[None]})), SAME),
        Case("HF cross-encoder with position and token type id buffers", "hf-bert",
             edit_weights(lambda s: s.update({"bert.embeddings.position_ids": torch.arange(512)[None],
                                              "bert.embeddings.token_type_ids": torch.zeros(1, 512).long()})),
             SAME),
        Case("HF ELECTRA cross-encoder with position id buffer", "hf-electra",
             edit_weights(lambda s: s.update({"electra.embeddings.position_ids": torch.arange(512)[None]})), SAME),
    ),
    *rows(
        "lengths",
        Case("query_length -1", "setenc-int", edit_json("config.json", query_length=-1), E, "config.json",
             r"query_length must be a whole number from 1 to max_position_embeddings \(512\), found -1"),
        Case("query_length 0", "mono", edit_json("config.json", query_length=0), E, "config.json",
             r"query_length .* found 0"),
        Case("query_length as a string", "mono", edit_json("config.json", query_length="32"), E, "config.json",
             r"query_length .* found '32'"),
        Case("doc_length 0", "setenc-int", edit_json("config.json", doc_length=0), E, "config.json",
             r"doc_length .* found 0"),
        Case("doc_length 1.5", "setenc-noint", edit_json("config.json", doc_length=1.5), E, "config.json",
             r"doc_length .* found 1\.5"),
        Case("doc_length beyond the position embeddings", "mono", edit_json("config.json", doc_length=513),
             E, "config.json", r"doc_length must be a whole number from 1 to max_position_embeddings \(512\), "
             r"found 513"),
        Case("doc_length true", "mono", edit_json("config.json", doc_length=True), E, "config.json",
             r"doc_length .* found True"),
        Case("model_max_length 4 with [INT]: no room for text", "setenc-int",
             edit_json("tokenizer_config.json", model_max_length=4), E, "tokenizer_config.json",
             r"model_max_length 4 cannot hold the 4 special tokens plus one query and one passage token "
             r"\(at least 6\)"),
        Case("model_max_length 5 with [INT]", "setenc-int", edit_json("tokenizer_config.json", model_max_length=5),
             E, "tokenizer_config.json", r"model_max_length 5 cannot hold the 4 special tokens"),
        Case("model_max_length 4 without [INT]", "mono", edit_json("tokenizer_config.json", model_max_length=4),
             E, "tokenizer_config.json", r"model_max_length 4 cannot hold the 3 special tokens .* \(at least 5\)"),
        Case("model_max_length as a string", "hf-bert", edit_json("tokenizer_config.json", model_max_length="512"),
             E, "tokenizer_config.json", r"model_max_length '512' cannot hold"),
        Case("max_position_embeddings 4", "hf-bert", edit_json("config.json", max_position_embeddings=4),
             E, "config.json", r"max_position_embeddings 4 cannot hold the 3 special tokens"),
        Case("max_length 5 below [INT] template's 4 specials + 2", "setenc-int", lambda folder: None, ValueError,
             None, r"max_length must be a whole number from 6 \(the 4 special tokens plus one query and one passage "
             r"token\) to 512 \(the model's position embeddings\), got 5", max_length=5),
        Case("max_length 3", "mono", lambda folder: None, ValueError, None, r"max_length .* from 5 .* got 3",
             max_length=3),
        Case("max_length 0", "hf-bert", lambda folder: None, ValueError, None, r"max_length .* got 0", max_length=0),
        Case("max_length -1", "setenc-noint", lambda folder: None, ValueError, None, r"max_length .* got -1",
             max_length=-1),
        Case("max_length above the position embeddings", "setenc-int", lambda folder: None, ValueError, None,
             r"max_length .* to 512 \(the model's position embeddings\), got 513", max_length=513),
        Case("max_length as a string", "mono", lambda folder: None, ValueError, None, r"max_length .* got '128'",
             max_length="128"),
        Case("max_length as a float", "mono", lambda folder: None, ValueError, None, r"max_length .* got 64\.0",
             max_length=64.0),
    ),
    *rows(
        "corrupt files",
        Case("truncated model.safetensors", "setenc-int", truncate("model.safetensors", 0.5), E, "model.safetensors",
             r"is not a readable safetensors file \(SafetensorError"),
        Case("garbage model.safetensors", "mono", write("model.safetensors", b"\x00garbage" * 100), E,
             "model.safetensors", r"is not a readable safetensors file \(SafetensorError"),
        Case("empty model.safetensors", "hf-bert", write("model.safetensors", b""), E, "model.safetensors",
             r"is not a readable safetensors file"),
        Case("garbage pytorch_model.bin", "mono", to_bin(write("pytorch_model.bin", b"PK\x03\x04 broken")), E,
             "pytorch_model.bin", r"is not a readable PyTorch weights file of tensors only"),
        Case("pytorch_model.bin holding a list", "mono",
             to_bin(lambda folder: torch.save([torch.zeros(1)], folder / "pytorch_model.bin")), E,
             "pytorch_model.bin", r"holds a list, not a mapping of weight names to tensors"),
        Case("pytorch_model.bin holding a number", "mono",
             to_bin(lambda folder: torch.save({"linear.weight": 1.0}, folder / "pytorch_model.bin")), E,
             "pytorch_model.bin", r"entry 'linear\.weight' is a float, not a tensor"),
        Case("config.json not JSON", "setenc-int", write("config.json", "{\"hidden_size\": 32,"), E, "config.json",
             r"is not valid JSON"),
        Case("config.json empty", "mono", write("config.json", ""), E, "config.json", r"is not valid JSON"),
        Case("config.json an array", "mono", write("config.json", "[1, 2]"), E, "config.json",
             r"must hold a JSON object, found an array"),
        Case("config.json a string", "hf-bert", write("config.json", "\"bert\""), E, "config.json",
             r"must hold a JSON object, found a string"),
        Case("config.json not UTF-8", "mono", write("config.json", b"\xff\xfe{}"), E, "config.json",
             r"cannot be read"),
        Case("config without hidden_size", "setenc-int", drop_json_key("config.json", "hidden_size"), E,
             "config.json", r"has no hidden_size"),
        Case("config without max_position_embeddings", "hf-electra",
             drop_json_key("config.json", "max_position_embeddings"), E, "config.json",
             r"has no max_position_embeddings"),
        Case("config without vocab_size", "mono", drop_json_key("config.json", "vocab_size"), E, "config.json",
             r"has no vocab_size"),
        Case("truncated tokenizer.json", "setenc-int", truncate("tokenizer.json", 0.5), E, "tokenizer.json",
             r"is not a readable tokenizer"),
        Case("garbage tokenizer.json", "hf-bert", write("tokenizer.json", "{\"model\": 12}"), E, "tokenizer.json",
             r"is not a readable tokenizer"),
        Case("tokenizer_config.json not JSON", "mono", write("tokenizer_config.json", "model_max_length=512"), E,
             "tokenizer_config.json", r"is not valid JSON"),
        Case("added_tokens.json not JSON", "setenc-bert-nosample", write("added_tokens.json", "[INT]"), E,
             "added_tokens.json", r"is not valid JSON"),
        Case("added_tokens.json with a non-id", "setenc-bert-nosample",
             write("added_tokens.json", "{\"[INT]\": \"last\"}"), E, "added_tokens.json",
             r"must map token strings to token ids"),
        Case("vocab.txt without [CLS]", "mono", remove_line("vocab.txt", "[CLS]"), E, "vocab.txt",
             r"is not a readable WordPiece vocabulary: cls_token not found"),
        Case("tokenizer.json without [SEP]", "hf-bert", replace_text("tokenizer.json", "[SEP]", "[XEP]"), E,
             "tokenizer.json", r"has no \[SEP\] token; only BERT-style vocabularies are supported"),
        Case("index not JSON", "setenc-int", both(shard(), write("model.safetensors.index.json", "{")), E,
             "model.safetensors.index.json", r"is not valid JSON"),
    ),
    *rows(
        "tokenizers that do not fit the weights",
        Case("vocab.txt without [UNK]", "mono", replace_text("vocab.txt", "\n[UNK]\n", "\n[XNK]\n"), E, "vocab.txt",
             r"has no \[UNK\] token, which a BERT-style vocabulary needs"),
        Case("tokenizer.json without [UNK]", "setenc-int", tokenizer_json(without_unk), E, "tokenizer.json",
             r"has no \[UNK\] token"),
        Case("HF tokenizer.json without [UNK]", "hf-bert", tokenizer_json(without_unk), E, "tokenizer.json",
             r"has no \[UNK\] token"),
        Case("vocab.txt of a larger model (mono)", "mono", add_vocab_lines("vocab.txt", 10), E, "config.json",
             r"vocab_size 30522 is smaller than the 30532 token ids of .*vocab\.txt"),
        Case("vocab.txt of a larger model (Set-Encoder without [INT])", "setenc-noint",
             add_vocab_lines("vocab.txt", 3), E, "config.json",
             r"vocab_size 30522 is smaller than the 30525 token ids"),
        Case("tokenizer.json with more added tokens than embeddings", "hf-electra", tokenizer_json(more_added_tokens),
             E, "config.json", r"vocab_size 30522 is smaller than the 30530 token ids of .*tokenizer\.json"),
    ),
    *rows(
        "configurations that cannot work",
        Case("heads do not divide the hidden size", "setenc-int", edit_json("config.json", num_attention_heads=5), E,
             "config.json", r"num_attention_heads 5 does not divide hidden_size 32"),
        Case("no attention heads", "mono", edit_json("config.json", num_attention_heads=0), E, "config.json",
             r"num_attention_heads must be a whole number of at least 1, found 0"),
        Case("intermediate_size 0", "mono", edit_json("config.json", intermediate_size=0), E, "config.json",
             r"intermediate_size must be a whole number of at least 1, found 0"),
        Case("num_hidden_layers 0", "setenc-noint", edit_json("config.json", num_hidden_layers=0), E, "config.json",
             r"num_hidden_layers must be a whole number of at least 1, found 0"),
        Case("hidden_size a string", "hf-bert", edit_json("config.json", hidden_size="32"), E, "config.json",
             r"hidden_size must be a whole number of at least 1, found '32'"),
        Case("embedding_size 0", "mono", edit_json("config.json", embedding_size=0), E, "config.json",
             r"embedding_size must be a whole number of at least 1, found 0"),
        Case("vocabulary smaller than the tokenizer's ids", "setenc-int", edit_json("config.json", vocab_size=30522),
             E, "config.json", r"vocab_size 30522 is smaller than the 30523 token ids of .*tokenizer\.json"),
        Case("HF vocabulary smaller than the tokenizer", "hf-electra", edit_json("config.json", vocab_size=30000), E,
             "config.json", r"vocab_size 30000 is smaller than the 30522 token ids"),
        Case("one token type for query and passage", "mono", edit_json("config.json", type_vocab_size=1), E,
             "config.json", r"type_vocab_size 1 cannot tell query from passage tokens"),
        Case("pad_token_id beyond the vocabulary", "mono", edit_json("config.json", pad_token_id=40000), E,
             "config.json", r"pad_token_id 40000 is not a token id below vocab_size 30522"),
        Case("unknown activation", "setenc-int", edit_json("config.json", hidden_act="swishy"), E, "config.json",
             r"hidden_act 'swishy' is not supported"),
        Case("negative layer norm epsilon", "mono", edit_json("config.json", layer_norm_eps=-1), E, "config.json",
             r"layer_norm_eps must be a small positive number, found -1"),
        Case("relative position embeddings", "hf-bert",
             edit_json("config.json", position_embedding_type="relative_key"), E,
             "config.json", r"position_embedding_type 'relative_key' is not supported"),
        Case("a cross-encoder with 3 labels", "hf-bert",
             edit_json("config.json", id2label={"0": "a", "1": "b", "2": "c"}), E, "config.json",
             r"a cross-encoder with 3 labels \(num_labels/id2label\) is not a relevance model"),
    ),
]


# --- running the rows ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hf")
    return {"hf-bert": build_hf_cross_encoder(folder / "bert", "bert", 1),
            "hf-electra": build_hf_cross_encoder(folder / "electra", "electra", 2)}


_BASELINES: dict[str, torch.Tensor] = {}


def source_folder(name: str, sources: dict[str, Path]) -> Path:
    return sources[name] if name in sources else FIXTURES / name


def scores(folder: Path, max_length: int | None = None) -> torch.Tensor:
    return CrossEncoder.from_pretrained(folder, max_length=max_length).score_lists(QUERIES, LISTS)[0]


def baseline(name: str, sources: dict[str, Path]) -> torch.Tensor:
    if name not in _BASELINES:
        _BASELINES[name] = scores(source_folder(name, sources))
    return _BASELINES[name]


@pytest.mark.parametrize("case", CASES)
def test_bad_checkpoint(case: Case, tmp_path, sources):
    folder = shutil.copytree(source_folder(case.fixture, sources), tmp_path / "ckpt")
    for generated in ("reference_scores.jsonl", "reference_meta.json"):
        (folder / generated).unlink(missing_ok=True)
    case.damage(folder)
    if case.outcome == SAME:
        assert torch.equal(scores(folder), baseline(case.fixture, sources))
        return
    with pytest.raises(case.outcome) as caught:
        scores(folder, case.max_length)
    assert type(caught.value) is case.outcome  # a bad argument is a ValueError, not a CheckpointError
    message = str(caught.value)
    if case.file is not None:
        assert str(folder / case.file) in message, (message, case.file)
    elif case.outcome is CheckpointError:
        assert str(folder) in message, message
    assert re.search(case.what, message), (message, case.what)


def test_every_class_has_several_cases():
    groups: dict[str, int] = {}
    for param in CASES:
        group = param.id.split(":")[0]
        groups[group] = groups.get(group, 0) + 1
    assert len(groups) == 6 and min(groups.values()) >= 5, groups


def test_the_stray_backup_would_change_the_scores(tmp_path):
    """The rows that ignore ``model_old_backup.safetensors`` could fail: read as the weights, it changes the scores."""
    folder = shutil.copytree(FIXTURES / "setenc-int", tmp_path / "ckpt")
    stray_backup(folder)
    (folder / "model_old_backup.safetensors").replace(folder / "model.safetensors")
    assert not torch.allclose(scores(folder), scores(FIXTURES / "setenc-int"), atol=1e-3)


def test_harmless_weights_are_only_those_the_model_does_not_have(tmp_path):
    """A pooler in a lightning-ir BERT checkpoint is dropped, but a BERT classifier's pooler is used: changing it
    changes the scores."""
    bert = build_hf_cross_encoder(tmp_path / "bert", "bert", 1)
    before = scores(bert)
    edit_weights(lambda s: s.update({"bert.pooler.dense.bias": s["bert.pooler.dense.bias"] + 1}))(bert)
    assert not torch.allclose(scores(bert), before, atol=1e-4)


@pytest.mark.parametrize("name", ["setenc-int", "setenc-noint", "setenc-bert-nosample", "mono", "mono-2class"])
def test_committed_fixtures_load_with_every_weight_used(name):
    model = CrossEncoder.from_pretrained(FIXTURES / name)
    stored = load_file(str(FIXTURES / name / "model.safetensors"))
    assert len(model.state_dict()) == len(stored)  # nothing tolerated, nothing dropped


def test_max_length_bounds_are_accepted(tmp_path):
    """The limits themselves are fine: 6 = 4 special tokens + 2 for [INT] checkpoints, 512 position embeddings."""
    assert len(CrossEncoder.from_pretrained(FIXTURES / "setenc-int", max_length=6).tokenizer(
        QUERIES, LISTS[0][:1]).input_ids[0]) == 6
    assert CrossEncoder.from_pretrained(FIXTURES / "setenc-int", max_length=512).tokenizer.max_length == 512
    folder = shutil.copytree(FIXTURES / "mono", tmp_path / "mono")
    edit_json("tokenizer_config.json", model_max_length=5)(folder)
    assert CrossEncoder.from_pretrained(folder).tokenizer.max_length == 5


def test_the_reranker_passes_max_length_on():
    with pytest.raises(ValueError, match=r"max_length .* got 2") as caught:
        SetEncoderReRanker(str(FIXTURES / "setenc-int"), max_length=2)
    assert type(caught.value) is ValueError


LISTCON = FIXTURES / "listconranker"


@pytest.mark.parametrize("damage,file,what", [
    (truncate("list_transformer.pt", 0.5), "list_transformer.pt", r"is not a readable PyTorch weights file"),
    (write("linear_in_embedding.pt", b"garbage"), "linear_in_embedding.pt", r"is not a readable PyTorch weights"),
    (truncate("model.safetensors", 0.3), "model.safetensors", r"is not a readable safetensors file"),
    (write("config.json", "[]"), "config.json", r"must hold a JSON object, found an array"),
    (edit_json("config.json", num_attention_heads=3), "config.json", r"num_attention_heads 3 does not divide"),
    (write("vocab.txt", b"\xff\xfe\x00"), "vocab.txt", r"is not a readable WordPiece vocabulary"),
    (add_vocab_lines("vocab.txt", 5), "config.json", r"vocab_size 30522 is smaller than the 30527 token ids of "
                                                     r".*vocab\.txt; the tokenizer does not belong to these weights"),
    (replace_text("vocab.txt", "\n[UNK]\n", "\n[XNK]\n"), "vocab.txt", r"has no \[UNK\] token"),
    (remove_line("vocab.txt", "[SEP]"), "vocab.txt", r"is not a readable WordPiece vocabulary: sep_token not found"),
    # the fixture: BERT hidden_size 8, intermediate_size 16; linear_in_embedding 8 -> 12; ListTransformer layers of
    # width 12 whose first one (linear1) sizes the feed-forward layers
    (edit_weights(lambda s: s.pop("encoder.layer.0.output.dense.bias")), "model.safetensors",
     r"the checkpoint lacks weights \['encoder\.layer\.0\.output\.dense\.bias'\]"),
    (edit_json("config.json", intermediate_size=24), "model.safetensors",
     r"weight encoder\.layer\.0\.intermediate\.dense\.bias has shape \(16,\), config\.json implies \(24,\)"),
    (edit_weights(lambda s: s.update({"bert.embeddings.LayerNorm.bias": s["embeddings.LayerNorm.bias"].clone()})),
     "model.safetensors", r"weights '(bert\.)?embeddings\.LayerNorm\.bias' and '(bert\.)?embeddings\.LayerNorm\.bias' "
     r"are the same weight"),
    (edit_pt("linear_in_embedding.pt", lambda s: s.pop("weight")), "linear_in_embedding.pt",
     r"the checkpoint lacks weights \['weight'\]"),
    (edit_pt("list_transformer.pt", lambda s: s.pop("list_transformer.layers.0.linear1.weight")),
     "list_transformer.pt", r"the checkpoint lacks weights \['list_transformer\.layers\.0\.linear1\.weight'\]"),
    (edit_pt("list_transformer.pt", lambda s: s.pop("query_embedding.layerNorm.bias")), "list_transformer.pt",
     r"the checkpoint lacks weights \['query_embedding\.layerNorm\.bias'\]"),
    (edit_pt("list_transformer.pt", lambda s: s.update({"linear_score1.weight": s["linear_score1.weight"][:, :12]})),
     "list_transformer.pt", r"weight linear_score1\.weight has shape \(1, 12\), the model expects \(1, 24\)"),
    (edit_pt("list_transformer.pt", lambda s: s.update({"extra.weight": torch.zeros(2)})), "list_transformer.pt",
     r"holds weights the model does not use: \['extra\.weight'\]"),
    (edit_pt("list_transformer.pt", lambda s: s.update({"linear_score1.bias": s["linear_score1.bias"].long()})),
     "list_transformer.pt", r"weight linear_score1\.bias holds torch\.int64 values, not floating-point numbers"),
], ids=["truncated list_transformer.pt", "garbage linear_in_embedding.pt", "truncated model.safetensors",
        "config.json an array", "heads do not divide", "vocab.txt not text", "vocab.txt of a larger model",
        "vocab.txt without [UNK]", "vocab.txt without [SEP]", "encoder weight missing", "config wider than the encoder",
        "encoder weight twice, with and without prefix", "projection weight missing",
        "weight that sizes the ListTransformer missing", "ListTransformer weight missing",
        "ListTransformer weight of the wrong shape", "unknown ListTransformer weight",
        "integer ListTransformer weights"])
def test_bad_listconranker_checkpoints(damage, file, what, tmp_path):
    folder = shutil.copytree(LISTCON, tmp_path / "ckpt")
    damage(folder)
    with pytest.raises(CheckpointError) as caught:
        ListConRankerModel.from_pretrained(folder)
    assert str(folder / file) in str(caught.value) and re.search(what, str(caught.value)), str(caught.value)


def test_listconranker_ignores_a_stray_backup(tmp_path):
    folder = shutil.copytree(LISTCON, tmp_path / "ckpt")
    stray_backup(folder)
    expected = ListConRankerModel.from_pretrained(LISTCON).score_lists(QUERIES, LISTS)[0]
    got = ListConRankerModel.from_pretrained(folder).score_lists(QUERIES, LISTS)[0]
    assert (expected == got).all()


def test_listconranker_refuses_encoder_weights_it_does_not_use(tmp_path):
    # a config with one layer fewer than the weights: the last layer's weights would be dropped silently
    folder = shutil.copytree(LISTCON, tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["num_hidden_layers"] -= 1
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(CheckpointError) as caught:
        ListConRankerModel.from_pretrained(folder)
    assert re.fullmatch(re.escape(str(folder / "model.safetensors")) + r": holds weights the model does not use: "
                        r"\['encoder\.layer\.1\..* \(config\.json has num_hidden_layers 1, the weights have 2 layers\)",
                        str(caught.value)), str(caught.value)
