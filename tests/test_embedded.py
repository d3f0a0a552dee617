"""The shipped checkpoints (``pyterrier_setenc.embedded``): they load offline, score as lightning-ir 0.0.6 scores
them (golden scores made by lightning-ir itself, ``tests/reference/make_embedded_golden.py``), and the shipped
Set-Encoder's scores do not depend on the order of its list."""

import json
from pathlib import Path

import numpy as np
import pytest

from pyterrier_setenc import MonoReRanker, SetEncoderReRanker, embedded, load_reranker

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "embedded-golden.json").read_text(encoding="utf-8"))
CLASSES = {"set-encoder": (embedded.SET_ENCODER, SetEncoderReRanker), "mono": (embedded.MONO, MonoReRanker)}


def test_shipped_folders_are_small_fp16_lightning_ir_checkpoints():
    total = 0
    for folder, _ in CLASSES.values():
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        assert config["dtype"] == "float16" and (folder / "README.md").is_file()
        total += sum(f.stat().st_size for f in folder.iterdir())
    assert total < 100 * 2**20


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_scores_equal_lightning_ir(dl19, name):
    folder, cls = CLASSES[name]
    reranker = load_reranker(folder, verbose=False)
    assert type(reranker) is cls
    golden = GOLDEN["models"][name]
    frame = dl19[dl19["qid"].isin(golden)]
    out = reranker.transform(frame)
    ours = {(r.qid, r.docno): r.score for r in out.itertuples()}
    theirs = {(q, d): s for q, docs in golden.items() for d, s in docs.items()}
    assert set(ours) == set(theirs)
    assert max(abs(ours[key] - theirs[key]) for key in theirs) <= 1e-5


def test_set_encoder_is_order_invariant(dl19):
    reranker = SetEncoderReRanker(embedded.SET_ENCODER, verbose=False)
    frame = dl19[dl19["qid"] == sorted(dl19["qid"].unique())[0]]
    base = reranker.transform(frame).set_index("docno")["score"]
    for seed in range(3):
        shuffled = frame.sample(frac=1.0, random_state=seed)
        again = reranker.transform(shuffled).set_index("docno")["score"]
        assert np.abs(again[base.index].to_numpy() - base.to_numpy()).max() <= 1e-5
