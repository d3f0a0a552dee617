"""The distillation teacher (all-MiniLM-L6-v2 as a bi-encoder) and the default rows of the experiments: the
teacher's scores equal those of sentence-transformers itself loading the same package folder (an independent
implementation of mean pooling and cosine), and the commands' default rows are the shipped models and the teacher."""

import numpy as np
import pytest

from pipelines.models import TEACHER_ROW, default_models
from pyterrier_setenc import embedded

from agreement import check_scores
from builders import vocab_folder


@pytest.fixture(scope="module")
def rows():
    return default_models(verbose=False)


def test_default_rows_are_the_shipped_models_and_the_teacher(rows):
    shipped = {name for name, folder in (("set-encoder", embedded.SET_ENCODER), ("mono", embedded.MONO))
               if (folder / "config.json").is_file()}
    assert set(rows) == shipped | {TEACHER_ROW}


def test_teacher_scores_equal_sentence_transformers(rows, dl19):
    from sentence_transformers import SentenceTransformer

    frame = dl19[dl19["qid"] == dl19["qid"].iloc[0]].head(30)
    out = rows[TEACHER_ROW].transform(frame).set_index("docno")
    model = SentenceTransformer(str(vocab_folder()), device="cpu")
    model.max_seq_length = 256  # the teacher cuts passages at 256 tokens
    query = model.encode([frame["query"].iloc[0]], normalize_embeddings=True)[0]
    passages = model.encode(frame["text"].tolist(), normalize_embeddings=True)
    expected = passages @ query
    check_scores(out.loc[frame["docno"], "score"], expected, layers=6, what="teacher")  # all-MiniLM-L6-v2: 6 layers
    assert (out.loc[frame["docno"], "rank"].to_numpy() == np.argsort(np.argsort(-expected))).all()
