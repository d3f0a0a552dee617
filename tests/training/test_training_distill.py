"""Distillation data and its training source: the ListNet loss against a hand computation, the teacher-score source
and repeats on a small hand-written file, and pseudo-queries cut from a known passage."""

import gzip
import json
import math
import random

import pytest
import torch

from training.data import Repeated, TeacherScores, build_source
from training.distill import pseudo_query
from training.losses import get_loss, listnet

from agreement import check_scores, depth

pytestmark = pytest.mark.numerics


def test_listnet_against_hand_computation():
    # teacher softmax of (1, 0) / 0.5 = (e^2, 1) / (e^2 + 1); student log-softmax of (0, 0) = log(1/2) each
    loss = listnet(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0]), temperature=0.5)
    assert float(loss) == pytest.approx(math.log(2), rel=1e-6)
    # student (2, 0): log-probs 2 - log(e^2 + 1) and -log(e^2 + 1); teacher (p, 1 - p) with p = e / (e + 1) at T=1
    p = math.e / (math.e + 1)
    z = math.log(math.exp(2) + 1)
    expected = -(p * (2 - z) + (1 - p) * (-z))
    assert float(listnet(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0]))) == pytest.approx(expected, rel=1e-6)


def test_loss_options_are_bound_and_checked():
    bound = get_loss("listnet", temperature=0.5)
    assert float(bound(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0]))) == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="no options"):
        get_loss("ranknet", temperature=0.5)


@pytest.fixture
def teacher_file(tmp_path):
    rows = [dict(qid="q1", query="first", docno=f"d{i}", text=f"text {i}", rank=i + 1, score=10.0 - i,
                 teacher_score=round(0.1 * (5 - i), 3)) for i in range(5)]
    rows += [dict(qid="q2", query="second", docno=f"e{i}", text=f"other {i}", rank=i + 1, score=1.0,
                  teacher_score=-0.5 + i) for i in range(3)]
    path = tmp_path / "lists.teacher.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as file:
        file.writelines(json.dumps(row) + "\n" for row in rows)
    return path


def test_teacher_scores_take_first_stage_prefix_with_teacher_targets(teacher_file):
    source = TeacherScores.from_files(teacher_file, list_sizes=[2])
    assert source.qids == ["q1", "q2"]
    sample = source.sample(0, seed=3, epoch=0)
    assert sorted(sample.docnos) == ["d0", "d1"]  # the first-stage top 2, in some order
    assert dict(zip(sample.docnos, sample.targets)) == {"d0": 0.5, "d1": 0.4}
    whole = TeacherScores.from_files(teacher_file).sample(1)
    assert dict(zip(whole.docnos, whole.targets)) == {"e0": -0.5, "e1": 0.5, "e2": 1.5}
    with pytest.raises(ValueError, match="list_sizes"):
        TeacherScores.from_files(teacher_file, list_sizes=[1])


def test_repeat_in_config(teacher_file):
    source = build_source({"kind": "teacher_scores", "candidates": teacher_file.name, "repeat": 3},
                          root=teacher_file.parent)
    assert isinstance(source, Repeated) and len(source) == 6
    assert source.sample(1).qid == "q2" and source.sample(3).qid == "q2"


def test_missing_teacher_score_names_line(tmp_path):
    path = tmp_path / "bad.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as file:
        file.write(json.dumps(dict(qid="q", query="x", docno="d", text="t", rank=1, score=1)) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl.gz, line 1: no teacher_score"):
        TeacherScores.from_files(path)


def test_pseudo_query_is_a_span_of_one_sentence():
    text = "The cat sat on the mat today. Dogs bark loudly at night in the city!"
    for seed in range(20):
        query = pseudo_query(text, random.Random(seed), drop=0.0)
        words = query.split()
        assert 3 <= len(words) <= 10
        sentences = ["the cat sat on the mat today", "dogs bark loudly at night in the city"]
        assert any(query in s for s in sentences), query
    assert pseudo_query("too short", random.Random(0)) is None


def test_mean_pooling_head_equals_transformers_mean_of_the_last_hidden_state(tmp_path):
    # a mono model with mean pooling, built from a random BERT saved by transformers: its score of (q, d) must be
    # linear.weight . mean over the pair's tokens of transformers' BertModel last_hidden_state
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from training.model import build_model

    from builders import vocab_folder

    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=64), add_pooling_layer=False).eval()
    bert.save_pretrained(tmp_path / "bert")
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        (tmp_path / "bert" / name).write_bytes((vocab_folder() / name).read_bytes())
    model = build_model(tmp_path / "bert", kind="mono", pooling_strategy="mean", query_length=8, doc_length=16,
                        workdir=tmp_path / "work").eval()
    pairs = [("what is a cat", "a cat is a small animal that purrs"), ("rain", "water falling from clouds")]
    with torch.no_grad():
        ours = torch.cat([model.score_lists([q], [[d]])[0] for q, d in pairs])
        tokenizer = BertTokenizerFast.from_pretrained(str(vocab_folder()))
        expected = []
        for q, d in pairs:
            tokens = tokenizer(q, d, return_tensors="pt")
            states = bert(**tokens).last_hidden_state[0]
            expected.append(model.head.linear.weight[0] @ states.mean(0))
    check_scores(ours, torch.stack(expected).detach(), depth(model), what="mean pooling")
