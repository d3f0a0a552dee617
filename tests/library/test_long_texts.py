"""Passages longer than the model reads: counted and reported once per call (:class:`LongTextWarning`), and the
README's ``pt.text.sliding(...) >> reranker >> pt.text.max_passage()`` recipe for documents.

Word-piece counts come from the ``tokenizers`` library directly (the checkpoint's ``tokenizer.json`` or vocabulary,
no special tokens), not from the code under test."""

from __future__ import annotations

import re
import warnings

import pandas as pd
import pytest
from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer

from pyterrier_setenc import LongTextWarning, SetEncoderReRanker, embedded

from builders import REPO


def wordpiece(folder) -> Tokenizer:
    """A checkpoint's uncased BERT WordPiece vocabulary, read by the tokenizers library."""
    return BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=True)._tokenizer


def word_pieces(text: str) -> int:
    """Word pieces of ``text`` for the shipped checkpoints' vocabulary."""
    return len(wordpiece(embedded.SET_ENCODER).encode(text, add_special_tokens=False).ids)


def frame(texts: list[str], query: str = "how long do fleas live") -> pd.DataFrame:
    return pd.DataFrame({"qid": "q1", "query": query, "docno": [f"d{i}" for i in range(len(texts))],
                         "text": texts})


@pytest.fixture(scope="module")
def setenc(shipped_set_encoder):
    return shipped_set_encoder


def test_cut_passages_are_reported_once_per_call(setenc):
    long_text = "an adult flea lives for two to three months " * 20
    longer_text = "fleas feed on blood " * 60
    texts = ["fleas are insects", long_text, "paris is in france", longer_text]
    assert word_pieces(long_text) > 128 and word_pieces(longer_text) > word_pieces(long_text)  # doc_length 128
    with pytest.warns(LongTextWarning) as caught:
        setenc(frame(texts))
    assert len([w for w in caught if w.category is LongTextWarning]) == 1
    message = str(caught[0].message)
    assert message.startswith("2 of 4 passage(s) are longer than the model reads")
    assert f"the longest has {word_pieces(longer_text)} word pieces (qid='q1' docno='d3')" in message
    assert "the first cut is qid='q1' docno='d1'" in message
    assert "128 word pieces (doc_length)" in message


def test_no_warning_when_every_passage_fits(setenc):
    with warnings.catch_warnings():
        warnings.simplefilter("error", LongTextWarning)
        setenc(frame(["fleas are insects", "flea " * 100]))  # 100 word pieces: fits doc_length 128


def test_a_passage_cut_by_max_length_with_the_query_is_counted(set_encoder_path):
    vocab = wordpiece(set_encoder_path)
    passage = "fleas feed on blood and live for months"
    query = "how long do fleas live"
    pieces = len(vocab.encode(passage, add_special_tokens=False).ids)
    query_pieces = len(vocab.encode(query, add_special_tokens=False).ids)
    room = pieces + query_pieces + 4 - 2  # two word pieces too few for [CLS] [INT] query [SEP] passage [SEP]
    reranker = SetEncoderReRanker(set_encoder_path, device="cpu", verbose=False, max_length=room)
    with pytest.warns(LongTextWarning, match=rf"1 of 2 passage\(s\).*the longest has {pieces} word pieces "
                                             r"\(qid='q1' docno='d1'\)"):
        reranker(frame(["fleas", passage], query=query))
    with warnings.catch_warnings():
        warnings.simplefilter("error", LongTextWarning)
        SetEncoderReRanker(set_encoder_path, device="cpu", verbose=False, max_length=room + 2)(
            frame(["fleas", passage], query=query))


def readme_recipe() -> dict:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    code = next(block for block in re.findall(r"```python\n(.*?)```", text, flags=re.S)
                if "pt.text.max_passage()" in block)
    namespace = {"__name__": "readme"}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


def test_the_readme_recipe_scores_documents_by_their_best_passage(dl19, setenc):
    documents = readme_recipe()["documents"]
    lists = dl19[dl19["qid"] == dl19["qid"].iloc[0]].head(12)
    # documents of three passages each: longer than the model reads
    docs = pd.DataFrame({"qid": lists["qid"].iloc[0], "query": lists["query"].iloc[0],
                         "docno": [f"doc{i}" for i in range(4)],
                         "text": [" ".join(lists["text"].iloc[3 * i:3 * i + 3]) for i in range(4)]})
    assert max(map(word_pieces, docs["text"])) > 128
    with pytest.warns(LongTextWarning):
        setenc(docs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LongTextWarning)  # the passages of 64 words fit
        scored = documents(docs)
    assert sorted(scored["docno"]) == sorted(docs["docno"])
    # independently: the passages' scores (sliding >> reranker), each document's maximum, with pandas
    sliding, reranker = documents[0], documents[1]
    passages = reranker(sliding(docs))
    best = passages.assign(docno=passages["docno"].str.split("%p").str[0]).groupby("docno")["score"].max()
    assert dict(zip(scored["docno"], scored["score"])) == best.to_dict()
    assert scored.sort_values("rank")["score"].is_monotonic_decreasing
