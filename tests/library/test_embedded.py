"""The shipped checkpoints (``pyterrier_setenc.embedded``): they load offline, score as lightning-ir 0.0.6 scores
them (golden scores made by lightning-ir itself, ``tests/reference/make_embedded_golden.py``), and the shipped
Set-Encoder's scores do not depend on the order of its list. Agreement is float32's (``tests/agreement.py``), and
both comparisons fail under each deliberate error."""

import json

import pytest

from pyterrier_setenc import MonoReRanker, SetEncoderReRanker, embedded, load_reranker

from agreement import ERRORS, POINTWISE_ERRORS, check_scores, deliberate, depth
from builders import FIXTURES

pytestmark = pytest.mark.numerics

GOLDEN = json.loads((FIXTURES / "embedded-golden.json").read_text(encoding="utf-8"))
CLASSES = {"set-encoder": (embedded.SET_ENCODER, SetEncoderReRanker), "mono": (embedded.MONO, MonoReRanker)}


def test_shipped_folders_are_small_fp16_lightning_ir_checkpoints():
    total = 0
    for folder, _ in CLASSES.values():
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        assert config["dtype"] == "float16" and (folder / "README.md").is_file()
        total += sum(f.stat().st_size for f in folder.iterdir())
    assert total < 100 * 2**20


def compare_with_lightning_ir(dl19, name: str, error: str | None = None) -> None:
    folder, cls = CLASSES[name]
    reranker = load_reranker(folder, verbose=False)
    assert type(reranker) is cls
    golden = GOLDEN["models"][name]
    frame = dl19[dl19["qid"].isin(golden)]
    with deliberate(error):
        out = reranker.transform(frame)
    ours = {(r.qid, r.docno): r.score for r in out.itertuples()}
    theirs = {(q, d): s for q, docs in golden.items() for d, s in docs.items()}
    assert set(ours) == set(theirs)
    check_scores([ours[key] for key in theirs], list(theirs.values()), depth(reranker), error, name)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_scores_equal_lightning_ir(dl19, name):
    compare_with_lightning_ir(dl19, name)


@pytest.mark.parametrize("name,error", [(name, error) for name in sorted(CLASSES)
                                        for error in (ERRORS if name == "set-encoder" else POINTWISE_ERRORS)])
def test_the_comparison_catches_a_deliberate_error(dl19, name, error):
    compare_with_lightning_ir(dl19, name, error)


def shuffled_scores_agree(dl19, error: str | None = None) -> None:
    reranker = SetEncoderReRanker(embedded.SET_ENCODER, verbose=False)
    frame = dl19[dl19["qid"] == sorted(dl19["qid"].unique())[0]]
    base = reranker.transform(frame).set_index("docno")["score"]
    for seed in range(3 if error is None else 1):
        shuffled = frame.sample(frac=1.0, random_state=seed)
        with deliberate(error):
            again = reranker.transform(shuffled).set_index("docno")["score"]
        check_scores(again[base.index], base, depth(reranker), error, f"shuffle {seed}")


def test_set_encoder_is_order_invariant(dl19):
    shuffled_scores_agree(dl19)


@pytest.mark.parametrize("error", ERRORS)
def test_order_invariance_catches_a_deliberate_error(dl19, error):
    shuffled_scores_agree(dl19, error)
