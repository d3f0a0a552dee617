"""The re-rankers (``pyterrier_setenc.reranker``: SetEncoderReRanker, MonoReRanker, ListConRankerReRanker) on normal
and on bad input.

Normal input: PyTerrier conventions of the re-rankers: validation, kept columns, ranks, sorting, empty frames,
pt.inspect.

Bad input, table-driven: each row is a case of a class of bad input and the exact outcome it must have, an error of
the right type whose message names the argument, the qid or the docno, or the documented behaviour. Every input case
runs against all three re-rankers (Set-Encoder, mono, ListConRanker).

A loaded model must not change under the caller's feet: converting it for a re-ranker works on a copy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest
import torch

import pyterrier_setenc as pt_setenc
from pyterrier_setenc import (
    CrossEncoder,
    EmptyTextWarning,
    ListConRankerReRanker,
    MonoReRanker,
    SetEncoderReRanker,
    load_reranker,
)
from pyterrier_setenc.listconranker_model import ListConRankerModel

from agreement import check_scores, depth
from builders import FIXTURES

# ------------------------------------------------------------------------------------------------------ normal input

@pytest.fixture(scope="module")
def setenc(set_encoder_path):
    return SetEncoderReRanker(CrossEncoder.from_pretrained(set_encoder_path))


@pytest.fixture()
def frame(dl19):
    qids = dl19["qid"].unique()[:3]
    return dl19[dl19["qid"].isin(qids)].groupby("qid").head(12).reset_index(drop=True)


def test_output_columns_ranks_and_order(setenc, frame):
    frame = frame.assign(extra=np.arange(len(frame)))
    result = setenc(frame.iloc[::-1])
    assert set(frame.columns) <= set(result.columns)
    assert (result.merge(frame, on=["qid", "docno"])["extra_x"] == result.merge(frame, on=["qid", "docno"])
            ["extra_y"]).all()
    assert list(result["qid"]) == sorted(result["qid"])
    for _, group in result.groupby("qid"):
        assert list(group["rank"]) == list(range(len(group)))
        assert (np.diff(group["score"].to_numpy()) <= 0).all()
    assert result["score"].dtype == np.float64 and result["rank"].dtype.kind == "i"


def test_first_stage_score_and_rank_are_replaced(setenc, frame):
    result = setenc(frame.assign(score=-1.0, rank=99))
    assert (result["score"] != -1.0).any() and result["rank"].max() < 99


def test_empty_frame(setenc, frame):
    result = setenc(frame.iloc[:0])
    assert len(result) == 0
    assert {"qid", "docno", "query", "text", "score", "rank"} <= set(result.columns)
    assert result["score"].dtype == np.float64 and result["rank"].dtype == np.int64


def test_pt_inspect(setenc):
    outputs = pt.inspect.transformer_outputs(setenc, ["qid", "query", "docno", "text"])
    assert {"score", "rank"} <= set(outputs)


def test_text_field_argument(set_encoder_path, frame):
    reranker = SetEncoderReRanker(str(set_encoder_path), text_field="body")
    result = reranker(frame.rename(columns={"text": "body"}))
    assert len(result) == len(frame)
    with pytest.raises(ValueError, match="body"):
        reranker(frame)


@pytest.mark.parametrize("column", ["qid", "query", "docno", "text"])
def test_missing_column(setenc, frame, column):
    with pytest.raises(ValueError, match=f"'{column}'"):
        setenc(frame.drop(columns=[column]))


@pytest.mark.parametrize("value", [None, "", "   ", float("nan")])
def test_missing_or_empty_text_is_scored_as_the_empty_passage(setenc, frame, value):
    """The rule for passages without text: scored as the empty string, one warning naming the count and a row. The
    expected scores come from the model itself, given the list with "" in that passage's place."""
    frame = frame.astype({"text": object})
    frame.loc[4, "text"] = value
    with pytest.warns(pt_setenc.EmptyTextWarning, match=f"1 passage.*qid={frame.loc[4, 'qid']!r} "
                                                        f"docno={frame.loc[4, 'docno']!r}"):
        result = setenc(frame)
    assert len(result) == len(frame)
    group = frame[frame["qid"] == frame.loc[4, "qid"]]
    texts = ["" if i == 4 else t for i, t in zip(group.index, group["text"])]
    expected = setenc.module.score_lists([group["query"].iloc[0]], [texts])[0].double().numpy()
    got = result.set_index("docno").loc[group["docno"], "score"].to_numpy()
    check_scores(got, expected, depth(setenc), what="an empty passage")


def test_text_of_another_type_is_an_error(setenc, frame):
    frame = frame.astype({"text": object})
    frame.loc[4, "text"] = 3
    with pytest.raises(ValueError, match="'text' that is not a string"):
        setenc(frame)


def test_empty_query(setenc, frame):
    frame.loc[frame["qid"] == frame["qid"].iloc[0], "query"] = ""
    with pytest.raises(ValueError, match="'query'"):
        setenc(frame)


def test_duplicate_docno_in_a_query(setenc, frame):
    with pytest.raises(ValueError, match="more than once"):
        setenc(pd.concat([frame, frame.iloc[[0]]]))


def test_two_query_texts_for_one_qid(setenc, frame):
    frame.loc[0, "query"] = "another query"
    with pytest.raises(ValueError, match="more than one query text"):
        setenc(frame)


def test_non_string_ids_are_kept_as_they_are(setenc, frame):
    """Integer qids and docnos are grouped and returned unchanged; scores equal those of the string ids."""
    ints = frame.assign(qid=pd.factorize(frame["qid"])[0] + 1, docno=np.arange(len(frame)) + 1000)
    result = setenc(ints)
    assert result["qid"].dtype.kind == "i" and result["docno"].dtype.kind == "i"
    expected = setenc(frame).merge(frame.assign(new=ints["docno"])[["docno", "new"]], on="docno")
    merged = result.merge(expected, left_on="docno", right_on="new")
    check_scores(merged["score_x"], merged["score_y"], depth(setenc), what="integer ids")


def test_batch_size_must_be_positive(set_encoder_path):
    with pytest.raises(ValueError, match="batch_size"):
        SetEncoderReRanker(str(set_encoder_path), batch_size=0)


def test_mono_reranker_refuses_set_encoder(set_encoder_path):
    with pytest.raises(ValueError, match="SetEncoderReRanker"):
        MonoReRanker(str(set_encoder_path))


def test_load_reranker_picks_the_class(set_encoder_path):
    assert isinstance(load_reranker(str(set_encoder_path)), SetEncoderReRanker)


def test_verbose_progress_over_passages(set_encoder_path, frame, capsys):
    SetEncoderReRanker(str(set_encoder_path), verbose=True, batch_size=1)(frame)
    err = capsys.readouterr().err
    assert f"{len(frame)}/{len(frame)} [" in err and "passage" in err


def test_pipeline_composition(setenc, frame):
    first_stage = pt.Transformer.from_df(pt.model.add_ranks(frame.copy()))
    pipeline = first_stage % 5 >> setenc
    result = pipeline(frame[["qid", "query"]].drop_duplicates())
    assert result.groupby("qid").size().max() == 5


# ----------------------------------------------------------------------------------------- bad input: common parts

CLASSES = {"setenc": (SetEncoderReRanker, FIXTURES / "setenc-int"), "mono": (MonoReRanker, FIXTURES / "mono"),
           "listconranker": (ListConRankerReRanker, FIXTURES / "listconranker")}
NO_CUDA = not torch.cuda.is_available()


def two_lists() -> pd.DataFrame:
    return pd.DataFrame([dict(qid="q1", query="lobster molting", docno=f"d{i}", text=f"passage {i} on lobsters")
                         for i in range(4)] +
                        [dict(qid="q2", query="boiling water", docno="e0", text="water boils at 100 degrees")])


@pytest.fixture(scope="module", params=sorted(CLASSES))
def reranker(request, fixture_rerankers):
    return fixture_rerankers[request.param]


# ---------------------------------------------------------------------------------------------- constructor arguments

ARGUMENTS = [  # (case, keyword arguments, exception, words the message must contain)
    ("batch_size as a string", dict(batch_size="8"), TypeError, "batch_size"),
    ("batch_size as a float", dict(batch_size=8.0), TypeError, "batch_size"),
    ("batch_size as a bool", dict(batch_size=True), TypeError, "batch_size"),
    ("batch_size zero", dict(batch_size=0), ValueError, "batch_size must be at least 1"),
    ("batch_size negative", dict(batch_size=-3), ValueError, "batch_size must be at least 1"),
    ("dtype unknown string", dict(dtype="fp8"), ValueError, "dtype"),
    ("dtype int8 string", dict(dtype="int8"), ValueError, "int8=True"),
    ("dtype integer torch dtype", dict(dtype=torch.int64), ValueError, "dtype"),
    ("dtype as a number", dict(dtype=32), ValueError, "dtype"),
    ("device unknown", dict(device="gpu"), ValueError, "device 'gpu'"),
    ("device as a number", dict(device=0.5), TypeError, "device"),
    pytest.param("device cuda without CUDA", dict(device="cuda"), ValueError, "CUDA, which is not available",
                 marks=pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")),
    pytest.param("device cuda:1 without CUDA", dict(device="cuda:1"), ValueError, "device 'cuda:1'",
                 marks=pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")),
    ("text_field empty", dict(text_field=""), TypeError, "text_field"),
    ("text_field not a string", dict(text_field=3), TypeError, "text_field"),
    ("verbose not a bool", dict(verbose="yes"), TypeError, "verbose"),
    ("max_length as a string", dict(max_length="512"), TypeError, "max_length"),
    ("max_length zero", dict(max_length=0), ValueError, "max_length"),
]
CROSS_ENCODER_ARGUMENTS = [
    ("int8 not a bool", dict(int8="yes"), TypeError, "int8"),
    ("int8 with bfloat16", dict(int8=True, dtype=torch.bfloat16), ValueError, "int8=True"),
]
LISTCONRANKER_ARGUMENTS = [
    ("iterative not a bool", dict(iterative="no"), TypeError, "iterative"),
    ("list_transformer_layers zero", dict(list_transformer_layers=0), ValueError, "list_transformer_layers"),
    ("revision not a string", dict(revision=3), TypeError, "revision"),
]


def _ids(rows):
    return [row.values[0] if hasattr(row, "values") else row[0] for row in rows]


@pytest.mark.parametrize("name", sorted(CLASSES))
@pytest.mark.parametrize("case,kwargs,error,words", ARGUMENTS, ids=_ids(ARGUMENTS))
def test_bad_argument(name, case, kwargs, error, words):
    cls, path = CLASSES[name]
    with pytest.raises(error, match=words):
        cls(path, **kwargs)


@pytest.mark.parametrize("cls", [SetEncoderReRanker, MonoReRanker])
@pytest.mark.parametrize("case,kwargs,error,words", CROSS_ENCODER_ARGUMENTS, ids=_ids(CROSS_ENCODER_ARGUMENTS))
def test_bad_cross_encoder_argument(cls, case, kwargs, error, words):
    with pytest.raises(error, match=words):
        cls(FIXTURES / "mono", **kwargs)


@pytest.mark.parametrize("case,kwargs,error,words", LISTCONRANKER_ARGUMENTS, ids=_ids(LISTCONRANKER_ARGUMENTS))
def test_bad_listconranker_argument(case, kwargs, error, words):
    with pytest.raises(error, match=words):
        ListConRankerReRanker(FIXTURES / "listconranker", **kwargs)


@pytest.mark.parametrize("name", sorted(CLASSES))
@pytest.mark.parametrize("model", [3, None, ["a", "b"]])
def test_bad_model_argument(name, model):
    cls, _ = CLASSES[name]
    with pytest.raises(TypeError, match="model must be a checkpoint name or folder"):
        cls(model)


@pytest.mark.parametrize("dtype", ["bfloat16", "torch.bfloat16", torch.bfloat16])
def test_dtype_names_are_accepted(dtype):
    """Documented behaviour: a floating dtype's name is the dtype."""
    reranker = MonoReRanker(FIXTURES / "mono", dtype=dtype, verbose=False)
    assert reranker.dtype is torch.bfloat16
    # half precision: the encoder's linear layers in bfloat16; embeddings, layer norms and the head in float32
    types = {name: p.dtype for name, p in reranker.module.named_parameters()}
    kept = [name for name in types if name.startswith(("head.", "backbone.embeddings.")) or ".LayerNorm." in name]
    assert kept and all(types[name] is torch.float32 for name in kept)
    assert all(dtype is torch.bfloat16 for name, dtype in types.items() if name not in kept)


# -------------------------------------------------------------------------------------------------- the input frame


def _edit(column, row, value):
    def edited():
        f = two_lists().astype({column: object})
        f.at[row, column] = value
        return f
    return edited


def _duplicate_columns():
    f = two_lists()
    return pd.concat([f, f[["text"]]], axis=1)


INPUTS = [  # (case, input maker, exception, regular expression the message must match)
    ("a dict", lambda: two_lists().iloc[0].to_dict(), TypeError, "takes a pandas DataFrame.*got dict"),
    ("a Series", lambda: two_lists()["text"], TypeError, "takes a pandas DataFrame.*got Series"),
    ("a list of strings", lambda: ["q1", "d0"], TypeError, "got a str row"),
    ("a string", lambda: "lobster", TypeError, "got str"),
    ("two columns named text", _duplicate_columns, ValueError, "several columns named \\['text'\\]"),
    ("missing text column", lambda: two_lists().drop(columns="text"), ValueError, "lacks column.*'text'"),
    ("empty docno", _edit("docno", 1, ""), ValueError, "'docno' that is empty or holds whitespace.*docno=''"),
    ("whitespace docno", _edit("docno", 1, " "), ValueError, "'docno' that is empty or holds whitespace.*qid='q1'"),
    ("docno with a space", _edit("docno", 1, "d 1"), ValueError, "'docno'.*docno='d 1'"),
    ("docno with a tab", _edit("docno", 1, "d\t1"), ValueError, "'docno'.*docno='d\\\\t1'"),
    ("empty qid", _edit("qid", 4, ""), ValueError, "'qid' that is empty or holds whitespace.*docno='e0'"),
    ("qid with a space", _edit("qid", 4, "q 2"), ValueError, "'qid'.*qid='q 2'"),
    ("missing docno", _edit("docno", 2, None), ValueError, "missing 'docno'.*qid='q1'"),
    ("missing qid", _edit("qid", 2, None), ValueError, "missing 'qid'.*docno='d2'"),
    ("empty query", _edit("query", 4, ""), ValueError, "'query'.*qid='q2'"),
    ("query not a string", _edit("query", 4, 7), ValueError, "'query'.*qid='q2'"),
    ("text not a string", _edit("text", 3, 12.5), ValueError, "'text' that is not a string.*docno='d3'"),
    ("text a list", _edit("text", 3, ["a"]), ValueError, "'text' that is not a string.*docno='d3'"),
    ("lone surrogate in a text", _edit("text", 2, "lobster \ud800 shell"), ValueError,
     "'text' the tokenizer cannot encode.*qid='q1' docno='d2'"),
    ("lone surrogate in a query", _edit("query", 4, "boiling \udfff"), ValueError,
     "'query' the tokenizer cannot encode.*qid='q2'"),
    ("docno twice in a list", lambda: pd.concat([two_lists(), two_lists().iloc[[1]]]), ValueError,
     "docno 'd1' occurs more than once for qid 'q1'"),
    ("two query texts for a qid", _edit("query", 1, "another query"), ValueError,
     "qid 'q1' has more than one query text"),
    # inputs that become nothing: no character a tokenizer keeps (the tokenizers drop them: see
    # test_blank_texts_are_nothing_to_the_tokenizer), refused like "" and "   "
    ("query only NUL characters", _edit("query", 4, "\x00\x00"), ValueError,
     "'query' with no characters a tokenizer keeps.*qid='q2'"),
    ("query only control characters", _edit("query", 4, "\x07\x1b\x7f"), ValueError,
     "'query' with no characters a tokenizer keeps.*qid='q2'"),
    ("query only zero-width and format characters", _edit("query", 4, "\u200b\u200e\ufeff"), ValueError,
     "'query' with no characters a tokenizer keeps.*qid='q2'"),
    ("query only NUL and whitespace", _edit("query", 4, " \x00\t\x00 "), ValueError,
     "'query' with no characters a tokenizer keeps.*qid='q2'"),
    ("query only replacement characters", _edit("query", 4, "\ufffd\ufffd"), ValueError,
     "'query' with no characters a tokenizer keeps.*qid='q2'"),
    # inputs that become two things: ids of several types in one column (strings and integers are read as TIREx
    # reads them, an integer as its decimal text: see test_string_and_integer_ids_are_read_as_tirex_reads_them)
    ("docno 1 and '1' in one list", lambda: two_lists().assign(docno=[1, "1", 2, 3, 4]), ValueError,
     "docno '1' occurs more than once for qid 'q1'"),
    ("qid 1 and '1' for two queries", lambda: two_lists().assign(qid=[1, 1, 1, 1, "1"]), ValueError,
     "qid '1' has more than one query text"),
    ("docno float among strings", _edit("docno", 0, 1.5), ValueError,
     "column 'docno' mixes ids of types float and str, e.g. 1.5 \\(float\\), 'd1' \\(str\\)"),
    ("qid bool among strings", _edit("qid", 4, True), ValueError, "column 'qid' mixes ids of types str and bool"),
    # columns holding lists
    ("qid a list", _edit("qid", 4, ["q2"]), ValueError, "column 'qid' holds lists, not ids.*docno='e0'"),
    ("docno a list", _edit("docno", 1, ["d1", "d9"]), ValueError, "column 'docno' holds lists, not ids.*qid='q1'"),
    ("docno a tuple", _edit("docno", 1, ("d1",)), ValueError, "column 'docno' holds tuples, not ids"),
    ("query a list", _edit("query", 4, ["boiling", "water"]), ValueError, "'query'.*qid='q2'"),
]


@pytest.mark.parametrize("case,make,error,pattern", INPUTS, ids=_ids(INPUTS))
def test_bad_input(reranker, case, make, error, pattern):
    with pytest.raises(error, match=pattern):
        reranker(make())


def test_nan_scores_name_the_query_and_passage():
    reranker = MonoReRanker(FIXTURES / "mono", verbose=False)
    with torch.no_grad():
        water = reranker.module.tokenizer.plain.token_to_id("water")  # only in q2's query and passage
        reranker.module.backbone.embeddings.word_embeddings.weight[water] = float("nan")
    with pytest.raises(ValueError, match="1 score\\(s\\) that are not finite \\(nan\\), e.g. qid='q2' docno='e0'"):
        reranker(two_lists())


def test_inf_scores_name_the_query_and_passage():
    reranker = SetEncoderReRanker(FIXTURES / "setenc-int", verbose=False)
    with torch.no_grad():
        reranker.module.head.linear.weight.mul_(float("inf"))
    with pytest.raises(ValueError, match="not finite.*qid='q1' docno='d0'"):
        reranker(two_lists())


@pytest.mark.parametrize("value", [None, float("nan"), "", "  \n "])
def test_missing_or_empty_text_is_scored_as_empty_with_a_warning(reranker, value):
    """Documented behaviour: scored as the empty passage; one warning naming the count and the first row."""
    bad = two_lists().astype({"text": object})
    bad.at[2, "text"] = value
    bad.at[3, "text"] = value
    with pytest.warns(EmptyTextWarning, match="2 passage\\(s\\).*qid='q1' docno='d2'") as caught:
        result = reranker(bad)
    assert len([w for w in caught if issubclass(w.category, EmptyTextWarning)]) == 1
    expected = reranker(bad.assign(text=bad["text"].map(lambda t: t if isinstance(t, str) and t.strip() else "")))
    pd.testing.assert_series_equal(result.set_index("docno")["score"], expected.set_index("docno")["score"],
                                   check_exact=True)  # the same tokens, the same call
    assert result["score"].notna().all() and len(result) == len(bad)


@pytest.mark.parametrize("blank", ["\x00", "\x00\x01\x02", " \x07\u200b\t", "\ufffd", "\u0301"])
def test_blank_passages_are_scored_as_empty_passages_with_a_warning(reranker, blank):
    """Documented behaviour: a passage with no character a tokenizer keeps is the empty passage, as ""."""
    bad, empty = two_lists(), two_lists()
    bad.at[1, "text"], empty.at[1, "text"] = blank, ""
    with pytest.warns(EmptyTextWarning, match="1 passage\\(s\\).*blank.*qid='q1' docno='d1'"):
        result = reranker(bad)
    with pytest.warns(EmptyTextWarning):
        expected = reranker(empty)
    pd.testing.assert_frame_equal(result.drop(columns="text"), expected.drop(columns="text"), check_exact=True)


@pytest.mark.parametrize("blank", ["\x00\x00", "\x07\x1b\x7f", "\u200b\u200e\ufeff", " \x00\t\x00 ", "\ufffd",
                                   "\u0301"])
def test_blank_texts_are_nothing_to_the_tokenizer(blank, fixture_model):
    """The independent source of the rule: the checkpoints' own tokenizer (Hugging Face ``tokenizers``) gives no
    word piece for these texts."""
    from pyterrier_setenc.reranker import is_blank

    model = fixture_model("mono")
    assert model.tokenizer.plain.encode(blank, add_special_tokens=False).ids == []
    assert is_blank(blank) and not is_blank(blank + "a")


def test_progress_advances_within_one_long_list(monkeypatch):
    """One list of many passages: the bar counts passages and moves while the list is scored, not only at its end."""
    import pyterrier as pt

    updates = []

    class Recorder:
        def __init__(self, total=None, disable=False, **kwargs):
            self.total, self.disable, self.n = total, disable, 0

        def update(self, n):
            self.n += n
            updates.append(self.n)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(pt, "tqdm", Recorder)
    reranker = SetEncoderReRanker(FIXTURES / "setenc-int", verbose=True)
    monkeypatch.setattr("pyterrier_setenc.model.token_budget_for", lambda device: 256)  # many buckets
    long = pd.DataFrame([dict(qid="q1", query="lobster", docno=f"d{i}", text=f"passage {i} on lobsters and the sea")
                         for i in range(120)])
    result = reranker(long)
    assert updates[-1] == 120 and len(updates) > 4, updates  # per bucket and layer, up to all passages
    assert updates == sorted(updates) and updates[0] < 120
    quiet = SetEncoderReRanker(FIXTURES / "setenc-int", verbose=False)(long)
    pd.testing.assert_frame_equal(result, quiet, check_exact=True)  # reporting changes no score


def test_string_and_integer_ids_are_read_as_tirex_reads_them(reranker):
    """Documented behaviour: in a column of strings and integers an integer is its decimal text (TIREx's reader's
    rule, pyterrier_setenc.io.read_id), so qid 1 and "1" are one query, as they are in a run."""
    mixed = two_lists().assign(qid=[1, 1, "1", 1, "q2"], docno=[10, "11", 12, "13", "e0"])
    text = two_lists().assign(qid=["1", "1", "1", "1", "q2"], docno=["10", "11", "12", "13", "e0"])
    pd.testing.assert_frame_equal(reranker(mixed), reranker(text), check_exact=True)
    assert reranker(mixed)["qid"].tolist() == ["1"] * 4 + ["q2"]


def test_categorical_columns_score_like_plain_ones(reranker):
    """Documented behaviour: categorical id, query and text columns are read as their values."""
    plain = reranker(two_lists())
    categorical = reranker(two_lists().astype({c: "category" for c in ["qid", "query", "docno", "text"]}))
    pd.testing.assert_frame_equal(categorical, plain, check_exact=True)


def test_integer_ids_are_fine(reranker):
    result = reranker(two_lists().assign(qid=[1, 1, 1, 1, 2], docno=[10, 11, 12, 13, 20]))
    assert result["qid"].tolist() == [1, 1, 1, 1, 2]


# --------------------------------------------------------------------------------------- the caller's model unchanged


def _linear_types(model: CrossEncoder) -> set[type]:
    return {type(m) for m in model.backbone.encoder.modules() if "Linear" in type(m).__name__}


@pytest.mark.parametrize("kwargs", [dict(int8=True), dict(dtype=torch.bfloat16), dict(dtype="bfloat16")])
def test_a_given_cross_encoder_is_not_converted_in_place(kwargs):
    model = CrossEncoder.from_pretrained(FIXTURES / "setenc-int")
    before = SetEncoderReRanker(model, verbose=False)(two_lists())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    converted = SetEncoderReRanker(model, verbose=False, **kwargs)
    assert converted.module is not model and converted.model is model
    assert _linear_types(model) == {torch.nn.Linear}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    pd.testing.assert_frame_equal(SetEncoderReRanker(model, verbose=False)(two_lists()), before, check_exact=True)
    assert not converted(two_lists())["score"].equals(before["score"])  # the copy really is converted


def test_a_given_listconranker_model_is_not_converted_in_place():
    model = ListConRankerModel.from_pretrained(FIXTURES / "listconranker")
    before = ListConRankerReRanker(model, verbose=False)(two_lists())
    converted = ListConRankerReRanker(model, dtype=torch.bfloat16, verbose=False)
    assert converted.module is not model
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    # half precision: the BERT encoder's linear layers in bfloat16, the list transformer in float32
    assert {p.dtype for p in converted.module.encoder.encoder.parameters() if p.dim() == 2} == {torch.bfloat16}
    assert {p.dtype for p in converted.module.list_transformer.parameters()} == {torch.float32}
    pd.testing.assert_frame_equal(ListConRankerReRanker(model, verbose=False)(two_lists()), before, check_exact=True)


def test_a_given_model_that_needs_no_conversion_is_shared(fixture_model):
    model = fixture_model("mono")
    assert MonoReRanker(model, device="cpu", verbose=False).module is model
    assert np.isfinite(MonoReRanker(model, verbose=False)(two_lists())["score"]).all()
