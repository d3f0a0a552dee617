"""Score-for-score parity with the reference implementation, lightning-ir 0.0.6.

Golden scores were produced by lightning-ir itself (tests/reference/make_fixtures.py, run in a separate venv with
lightning-ir==0.0.6 and transformers<5) on random-weight checkpoints it saved with its own ``save_pretrained``, for
real DL19 BM25 lists in first-stage order. Lists of exactly ``depth`` passages (no random fill in the reference),
and for ``sample_missing_docs=False`` also shorter lists."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import FIXTURES
from pyterrier_setenc import MonoReRanker, SetEncoderReRanker

TOLERANCE = 1e-5
CASES = {"setenc-int": SetEncoderReRanker, "setenc-noint": SetEncoderReRanker,
         "setenc-bert-nosample": SetEncoderReRanker, "mono": MonoReRanker, "mono-2class": MonoReRanker}


def reference(name: str) -> pd.DataFrame:
    with open(FIXTURES / name / "reference_scores.jsonl") as file:
        return pd.DataFrame([json.loads(line) for line in file])


@pytest.mark.parametrize("name", sorted(CASES))
def test_scores_match_lightning_ir(name, dl19):
    golden = reference(name)
    reranker = CASES[name](str(FIXTURES / name))
    checked = 0
    for case, expected in golden.groupby("case"):
        # the case's passages, in the reference's order (first-stage rank order)
        frame = dl19.merge(expected[["qid", "docno"]], on=["qid", "docno"])
        assert len(frame) == len(expected), case
        result = reranker(frame).merge(expected, on=["qid", "docno"], suffixes=("", "_reference"))
        difference = np.abs(result["score"] - result["score_reference"]).max()
        assert difference <= TOLERANCE, (case, difference)
        checked += len(result)
    assert checked == len(golden)
    assert golden["score"].std() > 0.1  # scores differ clearly between passages


def test_set_encoder_checkpoints_really_see_the_list(dl19):
    """Sanity of the fixtures: a Set-Encoder's scores for a passage change when the other passages change."""
    golden = reference("setenc-bert-nosample")
    short = golden[golden["case"] == "first7"].merge(golden[golden["case"] == "first30"], on=["qid", "docno"])
    assert np.abs(short["score_x"] - short["score_y"]).max() > 1e-3
