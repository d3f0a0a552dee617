"""PyTerrier conventions of the re-rankers: validation, kept columns, ranks, sorting, empty frames, pt.inspect."""

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest

import pyterrier_setenc as pt_setenc
from pyterrier_setenc import CrossEncoder, MonoReRanker, SetEncoderReRanker, load_reranker

from agreement import check_scores, depth


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
