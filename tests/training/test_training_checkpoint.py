"""Models built from a backbone, saved in lightning-ir's format and loaded back: the files are what lightning-ir
0.0.6 writes (compared with the reference fixtures in tests/fixtures), and the re-rankers of this package give the
scores the trained model gave. With ``SETENC_REFERENCE_PYTHON`` pointing to a Python with lightning-ir 0.0.6, the
saved checkpoint is also scored by lightning-ir itself and compared."""

import json
import os

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from pyterrier_setenc import MonoReRanker, SetEncoderReRanker
from pyterrier_setenc.atomic import current_umask
from pyterrier_setenc.checkpoint import load_checkpoint
from training.check_lightning_ir import lightning_ir_scores
from training.export import save_checkpoint
from training.model import build_model, load_model, score

from agreement import check_scores, depth
from builders import FIXTURES, build_backbone

pytestmark = pytest.mark.numerics

QUERIES = ["what is a lobster roll", "how do plants make food"]
LISTS = [["A lobster roll is a sandwich of lobster meat.", "Lobsters live in the sea.", "Bread is baked."],
         ["Photosynthesis turns light into sugar.", "Plants need water.", "Lobster rolls are tasty.",
          "Leaves are green because of chlorophyll."]]


@pytest.fixture(scope="module", params=["bert", "electra"])
def backbone(request, tmp_path_factory):
    return request.param, build_backbone(tmp_path_factory.mktemp("backbone") / request.param, request.param)


def trained_like(model):
    """Perturbs the head so the scores are not those of a fresh head."""
    with torch.no_grad():
        model.head.linear.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(1))
    return model


def frame() -> pd.DataFrame:
    rows = [dict(qid=str(q), query=QUERIES[q], docno=f"{q}-{d}", text=text, score=float(-d), rank=d)
            for q, docs in enumerate(LISTS) for d, text in enumerate(docs)]
    return pd.DataFrame(rows)


def test_set_encoder_files_match_lightning_ir_layout(backbone, tmp_path):
    name, path = backbone
    model = trained_like(build_model(path, "set-encoder", query_length=16, doc_length=64, depth=50))
    folder = save_checkpoint(model, tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "set-encoder" and config["backbone_model_type"] == name
    assert config["add_extra_token"] is True and config["depth"] == 50 and config["sample_missing_docs"] is True
    assert (config["query_length"], config["doc_length"]) == (16, 64)
    assert config["vocab_size"] == 30528  # 30522 + [INT], rounded up to a multiple of 8 as lightning-ir resizes
    assert config["architectures"] == [f"SetEncoder{name.capitalize()}Model"]
    reference = json.loads((FIXTURES / "setenc-int" / "config.json").read_text())
    lightning_keys = {"model_type", "backbone_model_type", "query_length", "doc_length", "add_extra_token", "depth",
                      "sample_missing_docs", "linear_bias", "pooling_strategy", "scoring_strategy"}
    assert lightning_keys <= set(reference) and lightning_keys <= set(config)
    weights = load_file(str(folder / "model.safetensors"))
    reference_weights = load_file(str(FIXTURES / "setenc-int" / "model.safetensors"))
    assert "linear.weight" in weights and weights["linear.weight"].shape == (1, 32)
    assert not any(key.startswith(("bert.", "electra.", "backbone.", "head.")) for key in weights)
    if name == "electra":  # same architecture as the reference fixture: the same weight names
        assert set(weights) == set(reference_weights)
    assert weights["embeddings.word_embeddings.weight"].shape[0] == 30528
    assert json.loads((folder / "added_tokens.json").read_text()) == {"[INT]": 30522}
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "SetEncoderTokenizer" and tokenizer_config["add_extra_token"]
    assert load_checkpoint(folder).kind == "set-encoder"
    for file in folder.iterdir():  # every file as readable as the umask lets new files be (a shipped or shared model)
        assert file.stat().st_mode & 0o777 == 0o666 & ~current_umask(), file


def test_set_encoder_round_trip_scores(backbone, tmp_path):
    _, path = backbone
    model = trained_like(build_model(path, "set-encoder", query_length=16, doc_length=64)).eval()
    expected = model.score_lists(QUERIES, LISTS)
    encoded = model.tokenizer([QUERIES[0]], [LISTS[0][0]])
    assert encoded.input_ids[0][:2] == [101, 30522]  # [CLS] [INT]
    folder = save_checkpoint(model, tmp_path / "ckpt")
    result = SetEncoderReRanker(str(folder), batch_size=16)(frame())
    scores = result.set_index("docno")["score"]
    for q, docs in enumerate(LISTS):
        got = [scores[f"{q}-{d}"] for d in range(len(docs))]
        check_scores(got, expected[q], depth(model), what=f"list {q}")
    assert float(expected[1].std()) > 1e-3  # the scores differ between passages: the comparison means something


def test_mono_round_trip_scores(tmp_path):
    path = build_backbone(tmp_path / "bert")
    model = trained_like(build_model(path, "mono", query_length=16, doc_length=64)).eval()
    expected = model.score_lists(QUERIES, LISTS)
    folder = save_checkpoint(model, tmp_path / "mono")
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "mono" and "add_extra_token" not in config and config["vocab_size"] == 30522
    assert not (folder / "added_tokens.json").exists()
    scores = MonoReRanker(str(folder))(frame()).set_index("docno")["score"]
    for q, docs in enumerate(LISTS):
        got = [scores[f"{q}-{d}"] for d in range(len(docs))]
        check_scores(got, expected[q], depth(model), what=f"list {q}")


def test_backbone_weights_are_taken_over(tmp_path):
    from safetensors.torch import load_file as load

    path = build_backbone(tmp_path / "bert")
    source = load(str(path / "model.safetensors"))
    model = build_model(path, "set-encoder")
    rows = model.backbone.embeddings.word_embeddings.weight.detach()
    torch.testing.assert_close(rows[:30522], source["embeddings.word_embeddings.weight"])
    torch.testing.assert_close(rows[30522], source["embeddings.word_embeddings.weight"].mean(0))  # [INT]: the mean
    key = "encoder.layer.1.attention.self.query.weight"
    torch.testing.assert_close(model.backbone.state_dict()[key], source[key])


def test_reload_for_training_and_resave(tmp_path):
    path = build_backbone(tmp_path / "bert")
    model = trained_like(build_model(path, "set-encoder"))
    first = save_checkpoint(model, tmp_path / "a")
    again = save_checkpoint(load_model(first), tmp_path / "b")
    a, b = load_file(str(first / "model.safetensors")), load_file(str(again / "model.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_gradient_checkpointing_gives_the_same_scores_and_gradients(tmp_path):
    path = build_backbone(tmp_path / "bert")
    model = trained_like(build_model(path, "set-encoder"))
    queries = [q for q, docs in zip(QUERIES, LISTS) for _ in docs]
    batch = model.encode(queries, [d for docs in LISTS for d in docs], [len(docs) for docs in LISTS])
    results = []
    for checkpointing in (False, True):
        model.zero_grad()
        scores = score(model, batch, gradient_checkpointing=checkpointing)
        (scores * torch.arange(len(scores))).sum().backward()
        results.append((scores.detach(), model.backbone.encoder.layer[0].attention.self.key.weight.grad.clone()))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])
    assert float(results[0][1].abs().sum()) > 0


def test_unsupported_backbone(tmp_path):
    folder = tmp_path / "gpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": 10}))
    with pytest.raises(ValueError, match="gpt2"):
        build_model(folder, "set-encoder")


# (kind, build options, lists scored): a Set-Encoder that samples missing passages is compared on a list of exactly
# ``depth`` passages only, where lightning-ir draws no random fill-in passages
REFERENCE_CASES = {
    "set-encoder-nosample": ("set-encoder", dict(sample_missing_docs=False), [0, 1]),
    "set-encoder-depth4": ("set-encoder", dict(depth=4, sample_missing_docs=True), [1]),
    "mono": ("mono", {}, [0, 1]),
}


@pytest.mark.skipif(not os.environ.get("SETENC_REFERENCE_PYTHON"),
                    reason="set SETENC_REFERENCE_PYTHON to a Python with lightning-ir 0.0.6 (e.g. /work/refvenv)")
@pytest.mark.parametrize("case", sorted(REFERENCE_CASES))
def test_lightning_ir_loads_saved_checkpoints(case, tmp_path):
    kind, options, which = REFERENCE_CASES[case]
    path = build_backbone(tmp_path / "bert")
    model = trained_like(build_model(path, kind, query_length=16, doc_length=64, **options)).eval()
    queries, lists = [QUERIES[i] for i in which], [LISTS[i] for i in which]
    expected = model.score_lists(queries, lists)
    folder = save_checkpoint(model, tmp_path / "ckpt")
    reference = lightning_ir_scores(os.environ["SETENC_REFERENCE_PYTHON"], folder, queries, lists)
    for ours, theirs in zip(expected, reference):
        check_scores(ours, theirs, depth(model), what=case)
