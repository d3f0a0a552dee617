"""Plain Hugging Face cross-encoders: golden scores come from transformers' AutoModelForSequenceClassification on
the same (query, passage) pairs of real DL19 lists, tokenized by transformers' own tokenizer."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from conftest import build_hf_cross_encoder
from pyterrier_setenc import MonoReRanker, SetEncoderReRanker


def golden_scores(path, queries, docs, num_labels):
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoding = tokenizer(queries, docs, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**encoding).logits
    return logits[:, 0] if num_labels == 1 else torch.log_softmax(logits, -1)[:, 1]


@pytest.mark.parametrize("backbone,num_labels", [("bert", 1), ("bert", 2), ("electra", 1), ("electra", 2)])
def test_scores_match_transformers(tmp_path, dl19, backbone, num_labels):
    path = build_hf_cross_encoder(tmp_path / "ce", backbone, num_labels)
    frame = dl19[dl19["qid"].isin(dl19["qid"].unique()[:2])]
    expected = golden_scores(path, frame["query"].tolist(), frame["text"].tolist(), num_labels)
    result = MonoReRanker(str(path), batch_size=37)(frame)
    merged = frame[["qid", "docno"]].assign(expected=expected.numpy()).merge(result, on=["qid", "docno"])
    assert len(merged) == len(frame)
    assert (merged["score"] - merged["expected"]).abs().max() <= 1e-5
    assert merged["expected"].std() > 1e-3  # the scores really differ between passages


def test_set_encoder_reranker_scores_pointwise_checkpoints_pair_by_pair(tmp_path, dl19):
    path = build_hf_cross_encoder(tmp_path / "ce", "bert", 1)
    frame = dl19[dl19["qid"] == dl19["qid"].iloc[0]]
    mono = MonoReRanker(str(path))(frame)
    listwise = SetEncoderReRanker(str(path))(frame)
    assert (mono["score"].to_numpy() - listwise["score"].to_numpy()).__abs__().max() <= 1e-5


def test_long_pairs_are_cut_like_transformers(tmp_path, dl19):
    """Pairs longer than the model's maximum length are cut longest-first, as transformers' tokenizer does."""
    path = build_hf_cross_encoder(tmp_path / "ce", "bert", 1)
    query, doc = dl19["query"].iloc[0], " ".join(dl19["text"].iloc[:12])
    expected = golden_scores(path, [query], [doc], 1)
    from pyterrier_setenc import CrossEncoder

    model = CrossEncoder.from_pretrained(path)
    assert len(model.tokenizer([query], [doc]).input_ids[0]) == 512
    assert abs(model.score_lists([query], [[doc]])[0][0] - expected[0]) <= 1e-5
