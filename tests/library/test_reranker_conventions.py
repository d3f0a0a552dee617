"""PyTerrier 1.x conventions of all three re-rankers: validation through pt.validate (so pt.inspect reports inputs
and outputs), constructor arguments kept under their own names (transformer_attributes / apply_attributes round
trip), verbose by default, documented arguments, one base class, the listwise declaration."""

from __future__ import annotations

import inspect
import typing

import pandas as pd
import pyterrier as pt
import pytest

from pyterrier_setenc import (
    CrossEncoderReRanker,
    ListConRankerReRanker,
    MonoReRanker,
    ReRanker,
    SetEncoderReRanker,
    load_reranker,
)

from agreement import check_frames, check_scores, depth
from builders import FIXTURES

pytestmark = pytest.mark.numerics

CLASSES = {"setenc": (SetEncoderReRanker, FIXTURES / "setenc-int"), "mono": (MonoReRanker, FIXTURES / "mono"),
           "listconranker": (ListConRankerReRanker, FIXTURES / "listconranker")}
COLUMNS = ["qid", "query", "docno", "text"]


def small_frame() -> pd.DataFrame:
    """Two queries with 25 and 4 hand-written passages (ListConRanker's iterative rounds start above 20)."""
    rows = [dict(qid="q1", query="how do lobsters molt", docno=f"a{i}",
                 text=f"lobster shell number {i} grows {'slowly' if i % 3 else 'fast'} after molting in {i} days")
            for i in range(25)]
    rows += [dict(qid="q2", query="boiling point of water", docno=f"b{i}", text=text) for i, text in
             enumerate(["water boils at 100 degrees celsius at sea level", "the boiling point drops with altitude",
                        "ice melts at zero degrees", "a kettle switches off when the water boils"])]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module", params=sorted(CLASSES))
def reranker(request, fixture_rerankers) -> ReRanker:
    return fixture_rerankers[request.param]


def test_inspect_inputs_and_outputs(reranker):
    assert pt.inspect.transformer_inputs(reranker) == [["qid", "docno", "query", "text"]]
    outputs = pt.inspect.transformer_outputs(reranker, COLUMNS + ["extra"])
    assert outputs == COLUMNS + ["extra", "score", "rank"]
    with pytest.raises(pt.validate.InputValidationError, match="text"):
        pt.inspect.transformer_outputs(reranker, ["qid", "query", "docno"])


def test_missing_columns_are_an_input_validation_error(reranker):
    with pytest.raises(pt.validate.InputValidationError) as caught:
        reranker(small_frame().drop(columns=["text"]))
    assert caught.value.modes[0].missing_columns == ["text"]
    assert "pt.text.get_text" in str(caught.value)
    assert isinstance(caught.value, ValueError)  # as before pt.validate was used


def test_experiment_can_validate_the_pipeline(reranker):
    first_stage = pt.Transformer.from_df(pt.model.add_ranks(small_frame().assign(score=1.0)))
    topics = small_frame()[["qid", "query"]].drop_duplicates()
    qrels = pd.DataFrame([dict(qid="q1", docno="a0", label=1), dict(qid="q2", docno="b0", label=1)])
    result = pt.Experiment([first_stage >> reranker], topics, qrels, ["ndcg_cut_10"], validate="error")
    assert len(result) == 1


def test_attributes_round_trip(reranker):
    attributes = {a.name: a.value for a in pt.inspect.transformer_attributes(reranker)}
    parameters = list(inspect.signature(type(reranker).__init__).parameters)[1:]
    assert list(attributes) == parameters
    assert attributes["model"] == reranker.model and isinstance(attributes["model"], str)
    changed = pt.inspect.transformer_apply_attributes(reranker, batch_size=3)
    assert type(changed) is type(reranker) and changed.batch_size == 3 and changed is not reranker
    assert {a.name: a.value for a in pt.inspect.transformer_attributes(changed)} == attributes | {"batch_size": 3}
    check_frames(changed(small_frame()), reranker(small_frame()), depth(reranker), what="another batch size")


def test_attributes_round_trip_with_a_loaded_model(fixture_model):
    model = fixture_model("setenc-int")
    reranker = SetEncoderReRanker(model, verbose=False)
    changed = pt.inspect.transformer_apply_attributes(reranker, batch_size=2)
    assert changed.model is model and changed.module is model  # no conversion needed: no copy
    check_frames(changed(small_frame()), reranker(small_frame()), depth(model), what="another batch size")


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_verbose_by_default_and_documented_arguments(name):
    cls, _ = CLASSES[name]
    signature = inspect.signature(cls.__init__)
    assert signature.parameters["verbose"].default is True
    doc = inspect.getdoc(cls.__init__)
    for parameter in list(signature.parameters)[1:]:
        assert f"{parameter}:" in doc, parameter
    assert ">>>" in inspect.getdoc(cls)  # a usage example


def test_one_base_class():
    for cls, _ in CLASSES.values():
        below_base = cls.__mro__[:cls.__mro__.index(ReRanker)]  # the class and its CrossEncoderReRanker parent
        assert not any("transform" in vars(c) for c in below_base)
        assert any("score_lists" in vars(c) for c in below_base)
        # whole lists are batched by the base; only the pointwise re-ranker splits them
        assert any("batches" in vars(c) for c in below_base) == (cls is MonoReRanker)
    assert "transform" in vars(ReRanker) and "batches" in vars(ReRanker)
    assert not issubclass(ListConRankerReRanker, CrossEncoderReRanker)
    assert typing.get_type_hints(load_reranker)["return"] is ReRanker


def test_listwise_declaration(tmp_path):
    assert SetEncoderReRanker(FIXTURES / "setenc-int", verbose=False).listwise is True
    assert ListConRankerReRanker(FIXTURES / "listconranker", verbose=False).listwise is True
    assert MonoReRanker(FIXTURES / "mono", verbose=False).listwise is False
    # a pointwise checkpoint in the Set-Encoder class scores each pair alone: not listwise
    assert SetEncoderReRanker(FIXTURES / "mono", verbose=False).listwise is False


def test_load_reranker_keeps_the_name(tmp_path):
    for cls, path in CLASSES.values():
        reranker = load_reranker(str(path), verbose=False, max_length=None)  # None: the checkpoint's default
        assert type(reranker) is cls and reranker.model == str(path)


def test_list_of_dicts_input(reranker):
    frame = small_frame()
    records = reranker(frame.to_dict(orient="records"))
    assert isinstance(records, list) and len(records) == len(frame)
    expected = reranker(frame)
    check_scores([r["score"] for r in records], expected["score"], depth(reranker), what="records against frame")
