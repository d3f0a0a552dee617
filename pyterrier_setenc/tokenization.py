"""Query-passage tokenization exactly as lightning-ir 0.0.6 and Hugging Face cross-encoders do it.

lightning-ir cuts the query to ``query_length`` and the passage to ``doc_length`` word pieces by encoding, cutting
and decoding the text, then encodes the pair ``[CLS] ([INT]) query [SEP] passage [SEP]`` (token types 0 up to and
including the first ``[SEP]``, 1 after it), cut by longest-first to the model's maximum length."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from tokenizers import Tokenizer
from tokenizers.processors import TemplateProcessing

from .checkpoint import CheckpointError, read_json

INTERACTION_TOKEN = "[INT]"


@dataclass
class Encoded:
    """Token ids and token type ids of each (query, passage) sequence, unpadded; ``cut_lengths``: for each pair,
    the passage's length in word pieces when the model does not read all of it (cut to ``doc_length``, or with the
    query to ``max_length``), else 0."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    cut_lengths: list[int] = field(default_factory=list)


def tokenizer_source(path: Path) -> Path:
    """The file that defines a checkpoint's tokenizer: ``tokenizer.json``, else ``vocab.txt``."""
    return path / "tokenizer.json" if (path / "tokenizer.json").is_file() else path / "vocab.txt"


def load_backend(path: Path) -> Tokenizer:
    """The ``tokenizers`` tokenizer of a checkpoint folder (from :func:`tokenizer_source`)."""
    source = tokenizer_source(path)
    if source.name == "tokenizer.json":
        try:
            return Tokenizer.from_file(str(source))
        except Exception as error:  # the tokenizers library raises a bare Exception for any unreadable file
            raise CheckpointError(f"{source} is not a readable tokenizer: {error}") from error
    if not source.is_file():
        raise CheckpointError(f"{path} has neither tokenizer.json nor vocab.txt")
    from tokenizers.implementations import BertWordPieceTokenizer

    config = _tokenizer_config(path)
    try:
        wordpiece = BertWordPieceTokenizer(str(source), lowercase=config.get("do_lower_case", True),
                                           strip_accents=config.get("strip_accents"),
                                           handle_chinese_chars=config.get("tokenize_chinese_chars", True))
    except Exception as error:  # not a text file, or settings of the wrong type
        raise CheckpointError(f"{source} (with tokenizer_config.json) is not a readable WordPiece vocabulary: "
                              f"{error}") from error
    backend = wordpiece._tokenizer
    added = path / "added_tokens.json"
    if added.is_file():
        tokens = read_json(added)
        if not all(isinstance(token, str) and isinstance(i, int) and not isinstance(i, bool)
                   for token, i in tokens.items()):
            raise CheckpointError(f"{added} must map token strings to token ids")
        for token, _ in sorted(tokens.items(), key=lambda item: item[1]):
            backend.add_special_tokens([token])
    return backend


def check_vocabulary(backend: Tokenizer, source: str, vocab_size: int | None = None,
                     config_file: str | None = None) -> None:
    """Refuses a tokenizer that does not fit its model, naming ``source``: a WordPiece vocabulary without its unknown
    token (words outside the vocabulary would vanish without a word), or more token ids than the model's embedding
    matrix has rows (``vocab_size`` of ``config_file``)."""
    unknown = getattr(backend.model, "unk_token", None)
    if unknown is not None and backend.token_to_id(unknown) is None:
        raise CheckpointError(f"{source} has no {unknown} token, which a BERT-style vocabulary needs (words it does "
                              "not know would be dropped from queries and passages)")
    count = backend.get_vocab_size(with_added_tokens=True)
    if vocab_size is not None and count > vocab_size:
        raise CheckpointError(f"{config_file or source}: vocab_size {vocab_size} is smaller than the {count} token ids "
                              f"of {source}; the tokenizer does not belong to these weights")


def _tokenizer_config(path: Path) -> dict:
    config_file = path / "tokenizer_config.json"
    return read_json(config_file) if config_file.is_file() else {}


def _is_length(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def special_token_count(interaction_token: bool) -> int:
    """Special tokens of a pair: ``[CLS]``, two ``[SEP]`` and, for the Set-Encoder, ``[INT]``."""
    return 4 if interaction_token else 3


class PairTokenizer:
    """Encodes (query, passage) pairs for one checkpoint.

    >>> from pathlib import Path
    >>> tok = PairTokenizer.from_folder(Path("tests/fixtures/setenc-int"), query_length=32, doc_length=256,
    ...                                 interaction_token=True, max_position_embeddings=512)
    >>> tok(["query"], ["a passage"]).input_ids  # [CLS] [INT] query [SEP] a passage [SEP] (BERT's vocabulary)
    [[101, 30522, 23032, 102, 1037, 6019, 102]]
    """

    def __init__(self, backend: Tokenizer, *, query_length: int | None, doc_length: int | None,
                 interaction_token: bool, max_length: int, source: str = "the tokenizer"):
        self.source = source
        self.query_length = query_length
        self.doc_length = doc_length
        self.max_length = max_length
        self.plain = backend  # used for cutting texts: no special tokens, no truncation
        self.plain.no_truncation()
        self.plain.no_padding()
        check_vocabulary(backend, source)
        self.cls_id = self._id("[CLS]")
        self.sep_id = self._id("[SEP]")
        self.pad_id = self._id("[PAD]")
        self.int_id: int | None = None
        special: list[tuple[str, int | None]] = [("[CLS]", self.cls_id), ("[SEP]", self.sep_id)]
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
            raise CheckpointError(f"{self.source} has no {token} token; only BERT-style vocabularies are supported")
        return token_id

    @classmethod
    def from_folder(cls, path: Path, *, query_length: int | None, doc_length: int | None, interaction_token: bool,
                    max_position_embeddings: int, max_length: int | None = None) -> PairTokenizer:
        """The tokenizer of a checkpoint folder; ``max_length`` (default: the tokenizer's ``model_max_length``, at
        most the position embeddings) must hold the special tokens plus one query and one passage token."""
        specials = special_token_count(interaction_token)
        least = specials + 2
        room = f"the {specials} special tokens plus one query and one passage token"
        if max_length is not None:
            if not _is_length(max_length) or not least <= max_length <= max_position_embeddings:
                raise ValueError(f"max_length must be a whole number from {least} ({room}) to "
                                 f"{max_position_embeddings} (the model's position embeddings), got {max_length!r}")
        else:
            if max_position_embeddings < least:
                raise CheckpointError(f"{path / 'config.json'}: max_position_embeddings {max_position_embeddings} "
                                      f"cannot hold {room}")
            limit = _tokenizer_config(path).get("model_max_length", max_position_embeddings)
            if isinstance(limit, bool) or not isinstance(limit, numbers.Real) or not cast(float, limit) >= least:
                raise CheckpointError(f"{path / 'tokenizer_config.json'}: model_max_length {limit!r} cannot hold "
                                      f"{room} (at least {least})")
            max_length = int(min(cast(float, limit), max_position_embeddings))
        return cls(load_backend(path), query_length=query_length, doc_length=doc_length,
                   interaction_token=interaction_token, max_length=max_length, source=str(tokenizer_source(path)))

    @property
    def vocab_size(self) -> int:
        """How many token ids the tokenizer can produce (added tokens such as ``[INT]`` included)."""
        return self.pair.get_vocab_size(with_added_tokens=True)

    @property
    def interaction_position(self) -> int:
        """Where the token whose states other passages attend to stands: ``[INT]`` at 1, else ``[CLS]`` at 0."""
        return 1 if self.int_id is not None else 0

    def cut(self, texts: Sequence[str], length: int | None) -> list[str]:
        """Cuts texts to ``length`` word pieces by encoding and decoding, as lightning-ir does."""
        return self._cut_counted(texts, length)[0]

    def _cut_counted(self, texts: Sequence[str], length: int | None) -> tuple[list[str], list[int]]:
        """:meth:`cut`, and the length in word pieces of each text that was cut (0 for the others)."""
        if length is None:
            return list(texts), [0] * len(texts)
        encodings = self.plain.encode_batch(list(texts), add_special_tokens=False)
        ids = [encoding.ids[:length] for encoding in encodings]
        return self.plain.decode_batch(ids, skip_special_tokens=False), \
            [len(e.ids) if len(e.ids) > length else 0 for e in encodings]

    def __call__(self, queries: Sequence[str], docs: Sequence[str]) -> Encoded:
        """Encodes ``queries[i]`` with ``docs[i]``; queries that repeat are cut once."""
        unique = list(dict.fromkeys(queries))
        cut_query = dict(zip(unique, self.cut(unique, self.query_length)))
        cut_docs, cut_lengths = self._cut_counted(docs, self.doc_length)
        pairs = list(zip((cut_query[q] for q in queries), cut_docs))
        encodings = self.pair.encode_batch(pairs)
        # pairs longer than max_length: is it the passage that lost word pieces? (counted for these pairs only)
        overflowed = [i for i, e in enumerate(encodings) if e.overflowing and not cut_lengths[i]]
        if overflowed:
            whole = self.plain.encode_batch([cut_docs[i] for i in overflowed], add_special_tokens=False)
            for i, encoding in zip(overflowed, whole):
                if sum(encodings[i].type_ids) - 1 < len(encoding.ids):  # passage tokens read, without its [SEP]
                    cut_lengths[i] = len(encoding.ids)
        return Encoded([e.ids for e in encodings], [e.type_ids for e in encodings], cut_lengths)
