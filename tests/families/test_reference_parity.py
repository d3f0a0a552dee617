"""Score-for-score parity with the reference implementation, lightning-ir 0.0.6.

Golden scores were produced by lightning-ir itself (tests/reference/make_fixtures.py, run in a separate venv with
lightning-ir==0.0.6 and transformers<5) on random-weight checkpoints it saved with its own ``save_pretrained``, for
real DL19 BM25 lists in first-stage order. Lists of exactly ``depth`` passages (no random fill in the reference),
and for ``sample_missing_docs=False`` also shorter lists. Agreement is float32's (``tests/agreement.py``), and the
same comparison fails under each deliberate error."""

import json

import numpy as np
import pandas as pd
import pytest

from pyterrier_setenc import MonoReRanker, SetEncoderReRanker

from agreement import ERRORS, POINTWISE_ERRORS, check_scores, config_depth, deliberate
from builders import FIXTURES

pytestmark = pytest.mark.numerics

CASES = {"setenc-int": SetEncoderReRanker, "setenc-noint": SetEncoderReRanker,
         "setenc-bert-nosample": SetEncoderReRanker, "mono": MonoReRanker, "mono-2class": MonoReRanker}


def reference(name: str) -> pd.DataFrame:
    with open(FIXTURES / name / "reference_scores.jsonl") as file:
        return pd.DataFrame([json.loads(line) for line in file])


def compare_with_lightning_ir(name: str, dl19: pd.DataFrame, error: str | None = None) -> None:
    golden = reference(name)
    reranker = CASES[name](str(FIXTURES / name))
    results = []
    for case, expected in golden.groupby("case"):
        # the case's passages, in the reference's order (first-stage rank order)
        frame = dl19.merge(expected[["qid", "docno"]], on=["qid", "docno"])
        assert len(frame) == len(expected), case
        with deliberate(error):
            scored = reranker(frame)
        results.append(scored.merge(expected, on=["qid", "docno"], suffixes=("", "_reference")))
    result = pd.concat(results)
    assert len(result) == len(golden)
    check_scores(result["score"], result["score_reference"], config_depth(FIXTURES / name), error, name)
    assert golden["score"].std() > 0.1  # scores differ clearly between passages


@pytest.mark.parametrize("name", sorted(CASES))
def test_scores_match_lightning_ir(name, dl19):
    compare_with_lightning_ir(name, dl19)


@pytest.mark.parametrize("name,error", [(name, error) for name in sorted(CASES)
                                        for error in (ERRORS if name.startswith("setenc") else POINTWISE_ERRORS)])
def test_the_comparison_catches_a_deliberate_error(name, error, dl19):
    compare_with_lightning_ir(name, dl19, error)


def test_set_encoder_checkpoints_really_see_the_list(dl19):
    """Sanity of the fixtures: a Set-Encoder's scores for a passage change when the other passages change."""
    golden = reference("setenc-bert-nosample")
    short = golden[golden["case"] == "first7"].merge(golden[golden["case"] == "first30"], on=["qid", "docno"])
    assert np.abs(short["score_x"] - short["score_y"]).max() > 1e-3
