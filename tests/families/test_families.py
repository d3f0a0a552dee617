"""The registry of model families and the lightning-ir layout: each checkpoint folder is recognised by its files,
never by its name; the weight names the package writes are the ones lightning-ir wrote (the fixtures were saved by
lightning-ir 0.0.6, ``tests/reference/make_fixtures.py``); the typed options have lightning-ir 0.0.6's defaults."""

import json
import shutil

import pytest
from safetensors import safe_open

from pyterrier_setenc import (
    FAMILIES,
    CheckpointError,
    CrossEncoder,
    ListConRankerReRanker,
    MonoReRanker,
    SetEncoderReRanker,
    family_of,
    load_reranker,
)
from pyterrier_setenc.checkpoint import read_config
from pyterrier_setenc.lightning_ir import LightningIRConfig, checkpoint_weight_names, model_weight_name
from pyterrier_setenc.model import HARMLESS_WEIGHTS

from builders import FIXTURES, build_hf_cross_encoder

# (fixture, family, re-ranker): what each fixture is, from its reference_meta.json / tests/reference/README.md
KNOWN = [("setenc-int", "set-encoder", SetEncoderReRanker), ("setenc-noint", "set-encoder", SetEncoderReRanker),
         ("setenc-bert-nosample", "set-encoder", SetEncoderReRanker), ("mono", "mono", MonoReRanker),
         ("mono-2class", "mono", MonoReRanker), ("listconranker", "listconranker", ListConRankerReRanker)]


@pytest.mark.parametrize("fixture,family,reranker", KNOWN)
def test_each_fixture_is_recognised_and_served_by_its_reranker(fixture, family, reranker):
    assert family_of(FIXTURES / fixture).name == family
    assert type(load_reranker(str(FIXTURES / fixture), verbose=False)) is reranker


def test_hugging_face_cross_encoders_are_their_own_family(tmp_path):
    folder = build_hf_cross_encoder(tmp_path / "ce", "bert", 1)
    assert family_of(folder).name == "hf-cross-encoder"
    assert type(load_reranker(str(folder), verbose=False)) is MonoReRanker


def test_config_json_is_read_once_whatever_the_families_asked(tmp_path, monkeypatch):
    """A Hugging Face cross-encoder is the last family asked (three ask config.json): its config is read once."""
    import pyterrier_setenc.families as families

    folder = build_hf_cross_encoder(tmp_path / "ce", "bert", 1)
    reads = []
    monkeypatch.setattr(families, "read_config", lambda path: reads.append(path) or read_config(path))
    assert family_of(folder).name == "hf-cross-encoder"
    assert reads == [folder]


def test_a_name_decides_nothing(tmp_path):
    """A Set-Encoder in a folder named like a ListConRanker is a Set-Encoder; a ListConRanker in any folder is one."""
    disguised = shutil.copytree(FIXTURES / "setenc-int", tmp_path / "ByteDance-ListConRanker")
    assert family_of(disguised).name == "set-encoder"
    plain = shutil.copytree(FIXTURES / "listconranker", tmp_path / "my-model")
    assert family_of(plain).name == "listconranker"


def test_unknown_and_unsupported_folders_name_what_was_found(tmp_path):
    folder = tmp_path / "gpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(CheckpointError, match="GPT2LMHeadModel"):
        family_of(folder)
    pooled = shutil.copytree(FIXTURES / "mono", tmp_path / "pooled")
    config = json.loads((pooled / "config.json").read_text())
    (pooled / "config.json").write_text(json.dumps(config | {"pooling_strategy": "cls"}))
    with pytest.raises(CheckpointError, match="pooling_strategy 'cls' is not supported"):
        load_reranker(str(pooled))
    assert [family.name for family in FAMILIES] == ["listconranker", "set-encoder", "mono", "hf-cross-encoder"]


def test_options_have_lightning_irs_defaults():
    """lightning-ir 0.0.6's defaults (its SetEncoderConfig/MonoConfig): query_length 32, doc_length 512, pooling
    'first', scoring 'rank', no linear bias, no extra token."""
    options = LightningIRConfig.from_json({"model_type": "cross-encoder", "backbone_model_type": "bert"})
    assert (options.model_type, options.query_length, options.doc_length, options.pooling_strategy,
            options.scoring_strategy, options.linear_bias, options.interaction_token) == \
        ("mono", 32, 512, "first", "rank", False, False)
    for bad, message in [({"linear_bias": "yes"}, "linear_bias must be true or false"),
                         ({"query_length": 1.5}, "query_length must be a whole number"),
                         ({"scoring_strategy": "max"}, "scoring_strategy 'max'")]:
        with pytest.raises(ValueError, match=message):
            LightningIRConfig.from_json({"model_type": "mono", "backbone_model_type": "bert"} | bad)


@pytest.mark.parametrize("fixture", ["setenc-int", "mono-2class", "setenc-bert-nosample"])
def test_weight_names_are_lightning_irs(fixture):
    folder = FIXTURES / fixture
    with safe_open(str(folder / "model.safetensors"), "pt") as file:
        written_by_lightning_ir = set(file.keys()) - HARMLESS_WEIGHTS
    own = CrossEncoder.from_pretrained(folder).state_dict()
    assert set(checkpoint_weight_names(own)) == written_by_lightning_ir
    assert {model_weight_name(key, own) for key in written_by_lightning_ir} == set(own)
