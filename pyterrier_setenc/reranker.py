"""The base of the suite's re-rankers: arguments and input checked before any work, grouping by query, the order of
scoring, scores checked, ranks and empty frames. Subclasses say only how they batch lists and score them.

The rules every re-ranker follows:

- the input is a result frame with ``qid``, ``query``, ``docno`` and the text column (checked through
  ``pt.validate``, so ``pt.inspect.transformer_inputs`` reports them); other columns are kept, ``score`` and ``rank``
  are replaced, the output is sorted by qid, then rank;
- a passage text that is missing (``None``, NaN) or empty or blank (only whitespace, control and format characters
  such as NUL or zero-width spaces, combining marks and U+FFFD: what the tokenizers drop) is scored as the empty
  passage (the model's template with nothing in the passage's place), with one :class:`EmptyTextWarning` per call
  that says how many rows and names the first; any other text that is not a string is an error;
- a missing, empty, blank or non-string query, a docno twice in one query's list, a qid with two query texts, an id a
  TREC run cannot hold (empty or with whitespace), text the tokenizer cannot encode and a score that is not finite
  are errors that name the qid and docno;
- ids are strings or integers. A column that mixes the two is read as TIREx's reader reads ids
  (:func:`pyterrier_setenc.io.read_rerank`): an integer is its decimal text, so qid ``1`` and ``"1"`` are one query
  (as they are in a run) and docno ``1`` beside ``"1"`` in one list is a repeated docno; any other mix of types, or
  a column holding lists, is an error naming the column and an example;
- a passage longer than the model reads is cut (as the checkpoint was trained), with one :class:`LongTextWarning`
  per call that says how many were cut, the longest and the first (qid, docno);
- the progress bar (``verbose``) counts passages and advances within a long list as the model works through it.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import numbers
import os
import re
import sys
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TypeVar

import numpy as np
import pandas as pd
import pyterrier as pt
import torch
from torch import nn

from ._engine.batching import list_batches
from ._engine.numerics import quantize_int8
from ._engine.precision import has_precision, resolve_dtype, set_precision
from .model import CrossEncoder

_WHITESPACE = re.compile(r"\s")
_NOTHING_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Me"})  # what BERT's normaliser drops or splits on


def is_blank(text: str) -> bool:
    """Whether ``text`` has nothing a tokenizer keeps: only whitespace, control and format characters (NUL,
    zero-width space, ...), combining marks and U+FFFD. Such a query is refused, such a passage scored as empty.

    >>> is_blank("\\x00\\x07 \\u200b"), is_blank("a\\x00")
    (True, False)
    """
    return not text.strip() or all(c == "\ufffd" or unicodedata.category(c) in _NOTHING_CATEGORIES for c in text)


class InputColumnsError(pt.validate.InputValidationError, ValueError):
    """Columns the re-ranker needs are missing (a ``pt.validate.InputValidationError`` and a ``ValueError``)."""

    def __str__(self) -> str:  # the message alone, without PyTerrier's list of the transformer's input modes
        return str(self.args[0])


class EmptyTextWarning(UserWarning):
    """Passages without text were scored as empty passages."""


class LongTextWarning(UserWarning):
    """Passages longer than the model reads were cut (see :meth:`ReRanker.transform`)."""


class PointwiseCheckpointWarning(UserWarning):
    """A pointwise checkpoint (mono, a Hugging Face cross-encoder) was given to the Set-Encoder class: it scores each
    passage on its own, as :class:`~pyterrier_setenc.MonoReRanker` does."""


class ListwiseCacheWarning(UserWarning):
    """A cache keyed on (query, docno) wraps a listwise re-ranker, whose scores depend on the whole list."""


# ------------------------------------------------------------------------------------------------------ arguments


def check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"batch_size must be an integer, got {batch_size!r} ({type(batch_size).__name__})")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return int(batch_size)


def check_positive_or_none(name: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer or None, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return int(value)


def check_flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``: CUDA when available, else the CPU. A device that is not there is refused with its name."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a string, a torch.device or None, got {device!r} ({type(device).__name__})")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"device {device!r} is not a device torch knows (e.g. 'cpu', 'cuda', 'cuda:1'): "
                         f"{error}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asks for CUDA, which is not available here (use device='cpu')")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: there are only {torch.cuda.device_count()} CUDA device(s)")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} asks for MPS, which is not available here (use device='cpu')")
    return resolved


def check_revision(revision) -> str | None:
    if revision is not None and (not isinstance(revision, str) or not revision.strip()):
        raise TypeError(f"revision must be a non-empty string (a branch, tag or commit) or None, got {revision!r}")
    return revision


def check_text_field(text_field) -> str:
    if not isinstance(text_field, str) or not text_field:
        raise TypeError(f"text_field must be a non-empty column name, got {text_field!r}")
    return text_field


def check_model_argument(model, module_type: type) -> None:
    if not isinstance(model, (str, os.PathLike, module_type)):
        raise TypeError(f"model must be a checkpoint name or folder or a {module_type.__name__}, got {model!r} "
                        f"({type(model).__name__})")


_Module = TypeVar("_Module", bound=nn.Module)


def place(module: _Module, device: torch.device, dtype: torch.dtype, given: bool, convert_more: bool = False) \
        -> _Module:
    """``module`` on ``device`` computing in ``dtype`` (:func:`~.precision.set_precision`). A module the caller
    ``given`` is never changed: when it must be converted (device, dtype, or ``convert_more``, e.g. int8) a copy is
    converted instead."""
    tensors = [*module.parameters(), *module.buffers()]
    needs_conversion = convert_more or not has_precision(module, dtype) or any(t.device != device for t in tensors)
    if given and needs_conversion:
        module = copy.deepcopy(module)
    return set_precision(module.to(device=device), dtype)


# ----------------------------------------------------------------------------------------------------- the input


def check_frame(inp, text_field: str, context: pt.Transformer | None = None) -> None:
    """The input's type and columns: a DataFrame with unique column names and the result-frame columns."""
    if not isinstance(inp, pd.DataFrame):
        raise TypeError(f"{type(context).__name__ if context else 'the re-ranker'} takes a pandas DataFrame (a result "
                        f"frame with qid, query, docno, {text_field}), got {type(inp).__name__}")
    repeated = inp.columns[inp.columns.duplicated()].unique().tolist()
    if repeated:
        raise ValueError(f"the input has several columns named {repeated}; column names must be unique")
    try:
        pt.validate.result_frame(inp, extra_columns=["query", text_field], context=context)
    except pt.validate.InputValidationError as error:
        missing = sorted({c for mode in error.modes for c in mode.missing_columns})
        hint = f" (add passage texts, e.g. with pt.text.get_text(dataset, {text_field!r}))" \
            if text_field in missing else ""
        raise InputColumnsError(f"input lacks column(s) {missing}{hint}; found {list(inp.columns)}.",
                                error.modes) from None


def plain_columns(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """Categorical id, query and text columns as plain columns of their categories' type (grouping and checks
    then see the values, not the categories)."""
    for column in columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(frame[column].cat.categories.dtype)
    return frame


def _where(frame: pd.DataFrame, rows) -> str:
    row = frame.loc[rows].iloc[0]
    return f"qid={row['qid']!r} docno={row['docno']!r}"


def _id_kind(value) -> str:
    if isinstance(value, str):
        return "str"
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, numbers.Integral):
        return "int"
    if isinstance(value, (list, tuple, dict, set, np.ndarray, pd.Series)):
        return "container"
    return type(value).__name__


def id_kinds(frame: pd.DataFrame, columns: Iterable[str] = ("qid", "docno")) -> dict[str, pd.Series]:
    """The kind of each id (``"str"``, ``"int"``, ``"container"``, ...) of the id columns of Python objects (columns
    of another dtype hold ids of one type); :func:`normalize_ids` and :func:`check_id_types` read them."""
    return {column: frame[column].map(_id_kind) for column in columns if frame[column].dtype == object}


def normalize_ids(frame: pd.DataFrame, kinds: dict[str, pd.Series]) -> pd.DataFrame:
    """A column of strings and integers as strings, integers in decimal (TIREx's rule); others as they are.
    ``kinds`` (:func:`id_kinds`) is updated to the new values."""
    for column, kind in kinds.items():
        if set(kind) == {"str", "int"}:
            frame[column] = [str(int(v)) if k == "int" else v for v, k in zip(frame[column], kind)]
            kinds[column] = kind.replace("int", "str")
    return frame


def check_id_types(frame: pd.DataFrame, kinds: dict[str, pd.Series]) -> None:
    """Ids in one column are of one type (after :func:`normalize_ids`; ``kinds`` from :func:`id_kinds`): lists and a
    mix of types are errors naming the column and an example."""
    for column, of_column in kinds.items():
        container = of_column == "container"
        if container.any():
            value = frame.loc[container, column].iloc[0]
            raise ValueError(f"column {column!r} holds {type(value).__name__}s, not ids: each {column} must be one "
                             f"string or integer, e.g. {_where(frame, container)}")
        present = of_column[~frame[column].map(_missing)]
        types = list(dict.fromkeys(present))
        if len(types) > 1:
            examples = ", ".join(f"{frame.loc[present.index[present == kind][0], column]!r} ({kind})"
                                 for kind in types[:3])
            raise ValueError(f"column {column!r} mixes ids of types {' and '.join(types)}, e.g. {examples}; give "
                             f"every {column} as a string (or every one as an integer)")


def check_contents(frame: pd.DataFrame, text_field: str, kinds: dict[str, pd.Series]) -> None:
    """Ids, queries and texts (see the module's rules); ``frame`` has a plain index, ``kinds`` its ids' kinds
    (:func:`id_kinds`, after :func:`normalize_ids`)."""
    for column in ("qid", "docno"):
        missing = frame[column].isna()
        if missing.any():
            raise ValueError(f"{int(missing.sum())} row(s) have a missing {column!r}, e.g. {_where(frame, missing)}")
    check_id_types(frame, kinds)
    for column in ("qid", "docno"):
        broken = frame[column].map(lambda v: isinstance(v, str) and (v == "" or bool(_WHITESPACE.search(v))))
        if broken.any():
            raise ValueError(f"{int(broken.sum())} row(s) have a {column!r} that is empty or holds whitespace, which "
                             f"a TREC run cannot hold, e.g. {_where(frame, broken)}")
    bad_query = ~frame["query"].map(lambda v: isinstance(v, str) and v.strip() != "")
    if bad_query.any():
        raise ValueError(f"{int(bad_query.sum())} row(s) have a missing, empty or not a string 'query', e.g. "
                         f"{_where(frame, bad_query)}")
    blank_query = frame["query"].map(is_blank)
    if blank_query.any():
        raise ValueError(f"{int(blank_query.sum())} row(s) have a 'query' with no characters a tokenizer keeps (only "
                         "control or format characters such as NUL, whitespace or combining marks), e.g. "
                         f"{_where(frame, blank_query)}")
    bad_text = ~frame[text_field].map(lambda v: isinstance(v, str) or _missing(v))
    if bad_text.any():
        kind = type(frame.loc[bad_text, text_field].iloc[0]).__name__
        raise ValueError(f"{int(bad_text.sum())} row(s) have a {text_field!r} that is not a string (e.g. {kind}), "
                         f"e.g. {_where(frame, bad_text)}")
    duplicated = frame.duplicated(["qid", "docno"])
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise ValueError(f"docno {row['docno']!r} occurs more than once for qid {row['qid']!r}; "
                         "each passage of a query's list must be unique")
    queries_per_qid = frame.groupby("qid", sort=False)["query"].nunique()
    if (queries_per_qid > 1).any():
        raise ValueError(f"qid {queries_per_qid[queries_per_qid > 1].index[0]!r} has more than one query text")
    for column in ("query", text_field):
        values = [v if isinstance(v, str) else "" for v in frame[column].tolist()]
        try:
            "\n".join(dict.fromkeys(values)).encode("utf-8")
        except UnicodeEncodeError:
            unencodable = np.array([_unencodable(v) for v in values])
            raise ValueError(f"{int(unencodable.sum())} row(s) have a {column!r} the tokenizer cannot encode (not "
                             f"valid Unicode, e.g. a lone surrogate), e.g. {_where(frame, unencodable)}") from None


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _unencodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def passage_texts(frame: pd.DataFrame, text_field: str) -> list[str]:
    """The texts the model scores: missing, empty or whitespace-only texts become ``""`` (with one warning)."""
    texts = [v if isinstance(v, str) and not is_blank(v) else "" for v in frame[text_field].tolist()]
    empty = np.array([not text for text in texts])
    if empty.any():
        warnings.warn(f"{int(empty.sum())} passage(s) have a missing, empty or blank (whitespace or control "
                      f"characters only) {text_field!r} and are scored as empty passages, e.g. {_where(frame, empty)}",
                      EmptyTextWarning, stacklevel=4)
    return texts


def validate_frame(inp, text_field: str, context: pt.Transformer | None = None) -> pd.DataFrame:
    """The input checked by every rule (raising errors that name the problem), without ``score`` and ``rank``,
    with a plain index and plain (non-categorical) columns."""
    check_frame(inp, text_field, context)
    frame = inp.drop(columns=["score", "rank"], errors="ignore").reset_index(drop=True)
    frame = plain_columns(frame, ["qid", "docno", "query", text_field])
    kinds = id_kinds(frame)
    frame = normalize_ids(frame, kinds)
    if len(frame):
        check_contents(frame, text_field, kinds)
    return frame


def with_ranks(frame: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    """``frame`` with ``score`` and ``rank`` (0 = best, per qid), sorted by qid, then rank."""
    frame = frame.assign(score=scores)
    if len(frame) == 0:
        return frame.assign(score=pd.Series(dtype="float64"), rank=pd.Series(dtype="int64"))
    frame = pt.model.add_ranks(frame)
    order = np.lexsort((frame["rank"].to_numpy(), pd.factorize(frame["qid"], sort=True)[0]))
    return frame.iloc[order].reset_index(drop=True)


# -------------------------------------------------------------------------------------------------------- the base


class ReRanker(pt.Transformer):
    """Base of the suite's re-rankers (see the module for the rules they share).

    A subclass loads its model into :attr:`module` (the given ``model`` argument is kept as it was given, so
    ``pt.inspect.transformer_attributes`` and ``transformer_apply_attributes`` work), and implements
    :meth:`score_lists`; a pointwise one may also batch otherwise than whole lists (:meth:`batches`).
    """

    #: whether a passage's score depends on the other passages of its list (then caches must key on the whole list)
    listwise: bool = False
    module: nn.Module
    text_field: str
    batch_size: int
    device: torch.device
    dtype: torch.dtype
    verbose: bool

    def _setup(self, *, text_field, batch_size, device, dtype, verbose) -> None:
        """Checks and keeps the arguments every re-ranker has; errors name the argument."""
        self.text_field = check_text_field(text_field)
        self.batch_size = check_batch_size(batch_size)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.verbose = check_flag("verbose", verbose)

    @property
    def name(self) -> str:  # type: ignore[override]  # pt.Transformer's class attribute, read-only here
        """The checkpoint's name."""
        return str(self.module.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def schematic(self, *, input_columns: list[str] | None = None) -> dict:
        """The label of the re-ranker's box in ``pt.schematic`` drawings: the kind and the checkpoint's folder name
        or id, e.g. ``SetEncoder(set-encoder-minilm-l6)``."""
        kind = type(self).__name__.removesuffix("ReRanker") or type(self).__name__
        name = Path(self.name).name if Path(self.name).exists() else self.name
        return {"label": f"{kind}({name})", "help_url": None}  # help_url: no look-up in PyTerrier's online docs

    # Two re-rankers are equal when they compute the same scores: same class, same passage column and the same
    # cache_key (settings, checkpoint configuration and a digest of the weights; not the batch size, progress or
    # device index). pt.Experiment(precompute_prefix=True) then runs a re-ranker shared by several pipelines once.
    def _identity(self) -> tuple:
        return type(self), self.text_field, self.cache_key()

    def __eq__(self, other) -> bool:
        if self is other:
            return True
        if not isinstance(other, ReRanker) or type(other) is not type(self):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def rank(self, query: str, passages: Sequence[str], top_k: int | None = None,
             return_documents: bool = False) -> list[dict]:
        """The ``passages`` ranked for ``query``, as sentence-transformers' ``CrossEncoder.rank`` returns them: a list
        of ``{"corpus_id": index, "score": score}`` (with ``"text"`` when ``return_documents``), best first, ties by
        index, at most ``top_k``. The scores are those of :meth:`transform` on the same list: a listwise model
        scores the whole list as one input (its scores depend on all the passages given, not on ``top_k``).

        >>> from pyterrier_setenc import SetEncoderReRanker, embedded
        >>> reranker = SetEncoderReRanker(embedded.SET_ENCODER, device="cpu", verbose=False)
        >>> reranker.rank("what is a flea", ["Fleas are insects.", "Paris is in France."], top_k=1)[0]["corpus_id"]
        0
        """
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"query must be a non-empty string, got {query!r}")
        if isinstance(passages, (str, bytes)) or not isinstance(passages, Iterable):
            raise TypeError(f"passages must be a list of strings, got {type(passages).__name__}")
        passages = list(passages)
        if not passages:
            raise ValueError("passages is empty: there is nothing to rank")
        bad = next((i for i, passage in enumerate(passages) if not isinstance(passage, str)), None)
        if bad is not None:
            raise TypeError(f"passages[{bad}] is a {type(passages[bad]).__name__}, not a string")
        top_k = check_positive_or_none("top_k", top_k)
        check_flag("return_documents", return_documents)
        frame = pd.DataFrame({"qid": "query", "query": query, "docno": [str(i) for i in range(len(passages))],
                              self.text_field: passages})
        scored = self.transform(frame)
        scores = np.empty(len(passages), dtype=np.float64)
        scores[scored["docno"].astype(int).to_numpy()] = scored["score"].to_numpy()
        order = np.lexsort((np.arange(len(passages)), -scores))[:top_k]
        return [{"corpus_id": int(i), "score": float(scores[i])} | ({"text": passages[i]} if return_documents else {})
                for i in order]

    def batches(self, query_rows: list[np.ndarray]) -> Iterator[list[np.ndarray]]:
        """The row indices of each query's list (``query_rows``), in batches of one forward pass each: whole lists,
        up to ``batch_size`` passages together (a longer list alone); a pointwise re-ranker may split them."""
        for batch in list_batches([len(rows) for rows in query_rows], self.batch_size):
            yield [query_rows[number] for number in batch]

    def score_lists(self, queries: list[str], lists: list[list[str]],
                    progress: Callable[[float], None] | None = None) -> list[np.ndarray]:
        """Scores (float64) of each query's passages, for the lists of one forward pass; ``progress``, where the
        subclass takes it, is told the share of the pass done (0 to 1) as the model works through it."""
        raise NotImplementedError

    def cut_lengths(self) -> list[int] | None:
        """For the passages of the last :meth:`score_lists` call (flat, in order): each one's length in word pieces
        when the model did not read all of it, else 0; ``None`` when the re-ranker does not tell."""
        return None

    def length_limits(self) -> str:
        """The limits that cut passages, in words (for :class:`LongTextWarning`)."""
        return "the model's limits"

    def cache_key(self) -> str:
        """A digest of everything that decides the scores: the class, the settings, the checkpoint's name and
        configuration, the tokenizer and the weights (hashed once per re-ranker; the identity of the model's scores for
        :class:`~pyterrier_setenc.ListwiseCache` and for the stored outputs of ``pipelines``)."""
        if getattr(self, "_cache_key", None) is None:
            digest = hashlib.sha256()
            ignored = {"model", "text_field", "batch_size", "verbose", "device"}
            settings = {a.name: a.value for a in pt.inspect.transformer_attributes(self) if a.name not in ignored}
            description = dict(cls=type(self).__name__, name=self.name, settings=settings, device=self.device.type,
                               config=getattr(self.module, "config", None))
            digest.update(json.dumps(description, sort_keys=True, default=str).encode())
            tokenizer = getattr(self.module, "tokenizer", None)
            backend = getattr(tokenizer, "pair", None) or getattr(tokenizer, "backend", None)
            if backend is not None:  # vocabulary, normalizer, special tokens and template as the tokenizer holds them
                digest.update(backend.to_str().encode())
            for key, value in self.module.state_dict().items():
                digest.update(key.encode())
                _hash_value(digest, value)
            self._cache_key = digest.hexdigest()
        return self._cache_key

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        frame = validate_frame(inp, self.text_field, self)
        if len(frame) == 0:
            return with_ranks(frame, np.empty(0))
        texts = passage_texts(frame, self.text_field)
        if self.listwise:
            _warn_if_cached_by_pair(self)
        query_rows = list(frame.groupby("qid", sort=False).indices.values())
        queries = frame["query"].tolist()
        scores = np.empty(len(frame), dtype=np.float64)
        cut_lengths = np.zeros(len(frame), dtype=np.int64)
        progress = pt.tqdm(total=len(frame), desc=repr(self), unit="passage", disable=not self.verbose)
        takes_progress = "progress" in inspect.signature(self.score_lists).parameters
        with progress, torch.inference_mode():
            for rows in self.batches(query_rows):
                passages = sum(len(r) for r in rows)
                done = [0]

                def advance(share: float, passages=passages, done=done) -> None:
                    """Moves the bar to ``share`` of this batch's passages (within a long list)."""
                    reached = min(passages, int(share * passages))
                    if reached > done[0]:
                        progress.update(reached - done[0])
                        done[0] = reached

                extra = {"progress": advance} if takes_progress and not progress.disable else {}
                batch_scores = self.score_lists([queries[r[0]] for r in rows], [[texts[i] for i in r] for r in rows],
                                                **extra)
                cut = self.cut_lengths()
                if cut is not None and len(cut) == passages:
                    cut_lengths[np.concatenate(rows)] = cut
                for r, s in zip(rows, batch_scores):
                    scores[r] = s
                    finite = np.isfinite(scores[r])
                    if not finite.all():
                        raise ValueError(f"the model gave {int((~finite).sum())} score(s) that are not finite "
                                         f"({scores[r][~finite][0]}), e.g. {_where(frame, r[~finite])}; no result "
                                         "was returned")
                advance(1.0)
        warn_if_cut(frame, cut_lengths, self.length_limits())
        return with_ranks(frame, scores)

    def transform_iter(self, inp):
        if isinstance(inp, (dict, pd.Series, str)):
            raise TypeError(f"{type(self).__name__} takes a pandas DataFrame or a list of dicts (one a row), got "
                            f"{type(inp).__name__}")
        rows = list(inp)
        bad = next((row for row in rows if not isinstance(row, dict)), None)
        if bad is not None:
            raise TypeError(f"{type(self).__name__} takes a pandas DataFrame or a list of dicts (one a row), got a "
                            f"{type(bad).__name__} row")
        return self.transform(pd.DataFrame(rows)).to_dict(orient="records")


def warn_if_cut(frame: pd.DataFrame, cut_lengths: np.ndarray, limits: str) -> None:
    """One :class:`LongTextWarning` for the passages of ``frame`` that were cut (``cut_lengths`` > 0)."""
    cut = cut_lengths > 0
    if cut.any():
        longest = int(np.argmax(cut_lengths))
        first = frame.loc[cut].iloc[0]
        warnings.warn(f"{int(cut.sum())} of {len(frame)} passage(s) are longer than the model reads and were cut to "
                      f"{limits}; the longest has {int(cut_lengths[longest])} word pieces (qid="
                      f"{frame['qid'].iat[longest]!r} docno={frame['docno'].iat[longest]!r}), the first cut is "
                      f"qid={first['qid']!r} docno={first['docno']!r}. For documents, score passages: "
                      "pt.text.sliding(...) >> reranker >> pt.text.max_passage()", LongTextWarning, stacklevel=3)


def _hash_value(digest, value) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.dequantize() if value.is_quantized else value
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, (tuple, list)):
        for item in value:
            _hash_value(digest, item)
    else:
        digest.update(repr(value).encode())


def _warn_if_cached_by_pair(reranker: ReRanker, depth: int = 8) -> None:
    """Warns when a pyterrier-caching scorer cache (keyed on query and docno) is calling ``reranker``."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(depth):
        if frame is None:
            return
        caller = frame.f_locals.get("self")
        if type(caller).__module__.startswith("pyterrier_caching"):
            wrapped = getattr(caller, "scorer", None) or getattr(getattr(caller, "cache", None), "scorer", None)
            if wrapped is reranker:
                warnings.warn(f"{type(caller).__name__} keys scores on (query, docno), but {type(reranker).__name__} "
                              "is listwise: a passage's score depends on the whole list, so cached scores are wrong "
                              "for any other list. Use pyterrier_setenc.ListwiseCache, which keys on the whole list.",
                              ListwiseCacheWarning, stacklevel=2)
                return
        frame = frame.f_back


# ------------------------------------------------------------------------------------------------ cross-encoders


class CrossEncoderReRanker(ReRanker):
    """Base of the re-rankers that run a :class:`~pyterrier_setenc.CrossEncoder` (Set-Encoder, mono, Hugging Face
    cross-encoders); subclasses say which checkpoint kinds they take and how lists are batched."""

    accepted_kinds: tuple[str, ...] = ()
    module: CrossEncoder

    def __init__(self, model: str | os.PathLike | CrossEncoder, *, text_field: str = "text", batch_size: int = 128,
                 device: str | torch.device | None = None, dtype: torch.dtype | str | None = None,
                 verbose: bool = True, max_length: int | None = None, int8: bool = False,
                 revision: str | None = None):
        """
        Args:
            model: a checkpoint name (Hugging Face id) or folder, or a loaded :class:`~pyterrier_setenc.CrossEncoder`
                (kept as given and never changed: a conversion to ``device``/``dtype``/int8 works on a copy).
            text_field: the passage column.
            batch_size: passages per forward pass (a listwise re-ranker never splits a query's list).
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...; default CUDA when available, else the CPU.
            dtype: the numbers the model computes with: ``"float32"`` (the default; reproduces the published
                scores), ``"bfloat16"`` or ``"float16"`` (half precision that keeps the head in float32), or
                ``"auto"`` (what is fast on this machine); a torch dtype or its name (:mod:`.precision`).
            verbose: a progress bar over passages (advancing within a long list).
            max_length: the longest tokenized (query, passage) sequence; default the checkpoint's.
            int8: int8 linear layers in the encoder (CPU, float32; changes the scores; see :mod:`.numerics`).
            revision: the Hugging Face revision (branch, tag or commit) of a hub id ``model``; part of
                :meth:`cache_key` and of equality.
        """
        check_model_argument(model, CrossEncoder)
        self._setup(text_field=text_field, batch_size=batch_size, device=device, dtype=dtype, verbose=verbose)
        self.max_length = check_positive_or_none("max_length", max_length)
        self.int8 = check_flag("int8", int8)
        self.revision = check_revision(revision)
        if self.int8 and (self.device.type != "cpu" or self.dtype != torch.float32):
            raise ValueError(f"int8=True runs on the CPU in float32 only, got device={str(self.device)!r} "
                             f"dtype={self.dtype}")
        given = isinstance(model, CrossEncoder)
        module = model if isinstance(model, CrossEncoder) else CrossEncoder.from_pretrained(
            model, max_length=self.max_length, revision=self.revision)
        self.check_kind(module)
        self.model = model
        self.module = place(module, self.device, self.dtype, given, convert_more=self.int8)
        if self.int8:
            quantize_int8(self.module)

    def check_kind(self, model: CrossEncoder) -> None:
        """Refuses a checkpoint kind the class does not score (:meth:`kind_error`)."""
        if model.kind not in self.accepted_kinds:
            raise ValueError(self.kind_error(model))

    def kind_error(self, model: CrossEncoder) -> str:
        return f"{type(self).__name__} does not score {model.kind} checkpoints ({model.name})"

    def score_lists(self, queries: list[str], lists: list[list[str]],
                    progress: Callable[[float], None] | None = None) -> list[np.ndarray]:
        self.module.last_cut_lengths = None
        return [s.double().numpy() for s in self.module.score_lists(queries, lists, progress=progress)]

    def cut_lengths(self) -> list[int] | None:
        return getattr(self.module, "last_cut_lengths", None)

    def length_limits(self) -> str:
        tokenizer = self.module.tokenizer
        doc = f"{tokenizer.doc_length} word pieces (doc_length), " if tokenizer.doc_length is not None else ""
        return f"{doc}{tokenizer.max_length} tokens with the query (max_length)"

