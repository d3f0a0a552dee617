"""Query-passage tokenization exactly as lightning-ir 0.0.6 and Hugging Face cross-encoders do it.

lightning-ir cuts the query to ``query_length`` and the passage to ``doc_length`` word pieces by encoding, cutting
and decoding the text, then encodes the pair ``[CLS] ([INT]) query [SEP] passage [SEP]`` (token types 0 up to and
including the first ``[SEP]``, 1 after it), cut by longest-first to the model's maximum length."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer
from tokenizers.processors import TemplateProcessing

INTERACTION_TOKEN = "[INT]"


@dataclass
class Encoded:
    """Token ids and token type ids of each (query, passage) sequence, unpadded."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]


def _load_backend(path: Path) -> Tokenizer:
    tokenizer_file = path / "tokenizer.json"
    if tokenizer_file.is_file():
        return Tokenizer.from_file(str(tokenizer_file))
    vocab = path / "vocab.txt"
    if not vocab.is_file():
        raise FileNotFoundError(f"{path} has neither tokenizer.json nor vocab.txt")
    from tokenizers.implementations import BertWordPieceTokenizer

    config = _tokenizer_config(path)
    lowercase = config.get("do_lower_case", True)
    wordpiece = BertWordPieceTokenizer(str(vocab), lowercase=lowercase, strip_accents=config.get("strip_accents"),
                                       handle_chinese_chars=config.get("tokenize_chinese_chars", True))
    backend = wordpiece._tokenizer
    added = path / "added_tokens.json"
    if added.is_file():
        with open(added, encoding="utf-8") as file:
            for token, _ in sorted(json.load(file).items(), key=lambda item: item[1]):
                backend.add_special_tokens([token])
    return backend


def _tokenizer_config(path: Path) -> dict:
    config_file = path / "tokenizer_config.json"
    if not config_file.is_file():
        return {}
    with open(config_file, encoding="utf-8") as file:
        return json.load(file)


class PairTokenizer:
    """Encodes (query, passage) pairs for one checkpoint.

    >>> tok = PairTokenizer.from_folder(path, query_length=32, doc_length=256, interaction_token=True)  # doctest: +SKIP
    >>> tok(["query"], ["a passage"]).input_ids  # doctest: +SKIP
    """

    def __init__(self, backend: Tokenizer, *, query_length: int | None, doc_length: int | None,
                 interaction_token: bool, max_length: int):
        self.query_length = query_length
        self.doc_length = doc_length
        self.max_length = max_length
        self.plain = backend  # used for cutting texts: no special tokens, no truncation
        self.plain.no_truncation()
        self.plain.no_padding()
        self.cls_id = self._id("[CLS]")
        self.sep_id = self._id("[SEP]")
        self.pad_id = self._id("[PAD]")
        self.int_id: int | None = None
        special = [("[CLS]", self.cls_id), ("[SEP]", self.sep_id)]
        template = "[CLS] $A [SEP] $B:1 [SEP]:1"
        if interaction_token:
            self.int_id = backend.token_to_id(INTERACTION_TOKEN)
            if self.int_id is None:  # lightning-ir adds the token at the end of the vocabulary when it is missing
                backend.add_special_tokens([INTERACTION_TOKEN])
                self.int_id = backend.token_to_id(INTERACTION_TOKEN)
            special.append((INTERACTION_TOKEN, self.int_id))
            template = f"[CLS] {INTERACTION_TOKEN} $A [SEP] $B:1 [SEP]:1"
        self.pair = Tokenizer.from_str(backend.to_str())
        self.pair.post_processor = TemplateProcessing(single="[CLS] $0 [SEP]", pair=template, special_tokens=special)
        self.pair.enable_truncation(max_length, strategy="longest_first")
        self.pair.no_padding()

    def _id(self, token: str) -> int:
        token_id = self.plain.token_to_id(token)
        if token_id is None:
            raise ValueError(f"the tokenizer has no {token} token; only BERT-style vocabularies are supported")
        return token_id

    @classmethod
    def from_folder(cls, path: Path, *, query_length: int | None, doc_length: int | None, interaction_token: bool,
                    max_position_embeddings: int, max_length: int | None = None) -> PairTokenizer:
        if max_length is None:
            max_length = int(min(_tokenizer_config(path).get("model_max_length", max_position_embeddings),
                                 max_position_embeddings))
        return cls(_load_backend(path), query_length=query_length, doc_length=doc_length,
                   interaction_token=interaction_token, max_length=max_length)

    @property
    def interaction_position(self) -> int:
        """Where the token whose states other passages attend to stands: ``[INT]`` at 1, else ``[CLS]`` at 0."""
        return 1 if self.int_id is not None else 0

    def cut(self, texts: Sequence[str], length: int | None) -> list[str]:
        """Cuts texts to ``length`` word pieces by encoding and decoding, as lightning-ir does."""
        if length is None:
            return list(texts)
        ids = [encoding.ids[:length] for encoding in self.plain.encode_batch(list(texts), add_special_tokens=False)]
        return self.plain.decode_batch(ids, skip_special_tokens=False)

    def __call__(self, queries: Sequence[str], docs: Sequence[str]) -> Encoded:
        """Encodes ``queries[i]`` with ``docs[i]``; queries that repeat are cut once."""
        unique = list(dict.fromkeys(queries))
        cut_query = dict(zip(unique, self.cut(unique, self.query_length)))
        pairs = list(zip((cut_query[q] for q in queries), self.cut(docs, self.doc_length)))
        encodings = self.pair.encode_batch(pairs)
        return Encoded([e.ids for e in encodings], [e.type_ids for e in encodings])
