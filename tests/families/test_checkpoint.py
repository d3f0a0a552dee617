"""Recognising checkpoints and refusing what is not supported, with errors that say what was found."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from pyterrier_setenc import CheckpointError, CrossEncoder, load_checkpoint

from builders import build_hf_cross_encoder


def test_kinds(tmp_path, set_encoder_path):
    assert load_checkpoint(set_encoder_path).kind == "set-encoder"
    hf = build_hf_cross_encoder(tmp_path / "hf", "electra", 2)
    checkpoint = load_checkpoint(hf)
    assert (checkpoint.kind, checkpoint.backbone) == ("hf-cross-encoder", "electra")


def edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("changes,message", [
    ({"model_type": "col"}, "model_type 'col'"),
    ({"backbone_model_type": "t5"}, "backbone_model_type 't5'"),
    ({"pooling_strategy": "last"}, "pooling_strategy 'last'"),
    ({"use_adapter": True}, "adapters"),
])
def test_unsupported_lightning_ir_checkpoints(tmp_path, set_encoder_path, changes, message):
    folder = shutil.copytree(set_encoder_path, tmp_path / "ckpt")
    edit_config(folder, **changes)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(folder)


def test_unsupported_hf_architecture_names_what_was_found(tmp_path):
    folder = build_hf_cross_encoder(tmp_path / "hf")
    edit_config(folder, model_type="roberta", architectures=["RobertaForSequenceClassification"])
    with pytest.raises(CheckpointError, match="RobertaForSequenceClassification.*supported are"):
        load_checkpoint(folder)


def test_missing_config_and_weights(tmp_path, set_encoder_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_checkpoint(tmp_path)
    folder = shutil.copytree(set_encoder_path, tmp_path / "ckpt")
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights"):
        load_checkpoint(folder)


def test_missing_weights_are_named(tmp_path, set_encoder_path):
    from safetensors.torch import save_file

    folder = shutil.copytree(set_encoder_path, tmp_path / "ckpt")
    state = load_file(str(folder / "model.safetensors"))
    del state["linear.weight"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="linear.weight"):
        CrossEncoder.from_pretrained(folder)


def test_unknown_hub_id_offline_says_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="neither a local folder"):
        load_checkpoint("no-such-owner/no-such-model")


def test_pytorch_bin_loads_tensors_only(tmp_path, set_encoder_path):
    folder = shutil.copytree(set_encoder_path, tmp_path / "ckpt")
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    expected = CrossEncoder.from_pretrained(set_encoder_path).score_lists(["a query"], [["one text", "two"]])[0]
    got = CrossEncoder.from_pretrained(folder).score_lists(["a query"], [["one text", "two"]])[0]
    assert torch.equal(expected, got)


class Payload:
    def __reduce__(self):
        return (print, ("code from a checkpoint ran",))


def test_pickled_code_in_a_checkpoint_is_never_run(tmp_path, set_encoder_path, capsys):
    folder = shutil.copytree(set_encoder_path, tmp_path / "ckpt")
    (folder / "model.safetensors").unlink()
    torch.save({"payload": Payload()}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pytorch_model.bin is not a readable PyTorch weights file of tensors"):
        load_checkpoint(folder)
    assert "code from a checkpoint ran" not in capsys.readouterr().out
