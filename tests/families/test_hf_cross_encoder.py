"""Plain Hugging Face cross-encoders: golden scores come from transformers' AutoModelForSequenceClassification on
the same (query, passage) pairs of real DL19 lists, tokenized by transformers' own tokenizer. Agreement is float32's
(``tests/agreement.py``), and the comparison fails under a deliberate error."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from pyterrier_setenc import MonoReRanker, SetEncoderReRanker

from agreement import MASK_ENTRY, check_scores, deliberate, depth
from builders import build_hf_cross_encoder

pytestmark = pytest.mark.numerics


def golden_scores(path, queries, docs, num_labels):
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoding = tokenizer(queries, docs, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**encoding).logits
    return logits[:, 0] if num_labels == 1 else torch.log_softmax(logits, -1)[:, 1]


def compare_with_transformers(tmp_path, dl19, backbone: str, num_labels: int, error: str | None = None) -> None:
    path = build_hf_cross_encoder(tmp_path / "ce", backbone, num_labels)
    frame = dl19[dl19["qid"].isin(dl19["qid"].unique()[:2])]
    expected = golden_scores(path, frame["query"].tolist(), frame["text"].tolist(), num_labels)
    reranker = MonoReRanker(str(path), batch_size=37)
    with deliberate(error):
        result = reranker(frame)
    merged = frame[["qid", "docno"]].assign(expected=expected.numpy()).merge(result, on=["qid", "docno"])
    assert len(merged) == len(frame)
    check_scores(merged["score"], merged["expected"], depth(reranker), error, f"{backbone}, {num_labels} labels")
    assert merged["expected"].std() > 1e-3  # the scores really differ between passages


@pytest.mark.parametrize("backbone,num_labels", [("bert", 1), ("bert", 2), ("electra", 1), ("electra", 2)])
def test_scores_match_transformers(tmp_path, dl19, backbone, num_labels):
    compare_with_transformers(tmp_path, dl19, backbone, num_labels)


@pytest.mark.parametrize("backbone", ["bert", "electra"])
def test_the_comparison_catches_a_deliberate_error(tmp_path, dl19, backbone):
    compare_with_transformers(tmp_path, dl19, backbone, 1, MASK_ENTRY)


def test_set_encoder_reranker_scores_pointwise_checkpoints_pair_by_pair(tmp_path, dl19):
    path = build_hf_cross_encoder(tmp_path / "ce", "bert", 1)
    frame = dl19[dl19["qid"] == dl19["qid"].iloc[0]]
    mono = MonoReRanker(str(path))
    listwise = SetEncoderReRanker(str(path))(frame)
    check_scores(listwise["score"], mono(frame)["score"], depth(mono), what="SetEncoderReRanker against mono")


def test_long_pairs_are_cut_like_transformers(tmp_path, dl19):
    """Pairs longer than the model's maximum length are cut longest-first, as transformers' tokenizer does."""
    path = build_hf_cross_encoder(tmp_path / "ce", "bert", 1)
    query, doc = dl19["query"].iloc[0], " ".join(dl19["text"].iloc[:12])
    expected = golden_scores(path, [query], [doc], 1)
    from pyterrier_setenc import CrossEncoder

    model = CrossEncoder.from_pretrained(path)
    assert len(model.tokenizer([query], [doc]).input_ids[0]) == 512
    check_scores(model.score_lists([query], [[doc]])[0], expected, depth(model), what="a pair cut to 512 tokens")
