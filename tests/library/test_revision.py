"""``revision=`` on the re-rankers and ``--model ID@REVISION`` on the command lines: the revision reaches the hub
download, is kept as an attribute (``pt.inspect``) and is part of the cache key and of equality. The hub is replaced
by a function that records what it was asked for and answers with a local checkpoint (no network)."""

from __future__ import annotations

import json

import pytest

from pyterrier_setenc import SetEncoderReRanker, load_reranker
from pyterrier_setenc.rerank_command import main
from pyterrier_setenc.settings import RerankerSettings, SettingsError, split_revision

from builders import SLICE

HUB_ID = "example-org/set-encoder-tiny"


@pytest.fixture
def hub(monkeypatch, set_encoder_path, no_network):
    import huggingface_hub

    asked = []

    def snapshot_download(repo_id, revision=None, **kwargs):
        asked.append((repo_id, revision))
        return str(set_encoder_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return asked


def test_the_revision_reaches_the_hub_and_the_cache_key(hub):
    v1 = SetEncoderReRanker(HUB_ID, revision="v1", device="cpu", verbose=False)
    assert hub == [(HUB_ID, "v1")] and v1.revision == "v1"
    import pyterrier as pt

    assert {a.name: a.value for a in pt.inspect.transformer_attributes(v1)}["revision"] == "v1"
    again = SetEncoderReRanker(HUB_ID, revision="v1", device="cpu", verbose=False)
    v2 = SetEncoderReRanker(HUB_ID, revision="v2", device="cpu", verbose=False)
    assert v1.cache_key() == again.cache_key() and v1 == again
    assert v1.cache_key() != v2.cache_key() and v1 != v2  # same files here, other revision: another key


def test_load_reranker_asks_for_the_revision_each_time(hub):
    reranker = load_reranker(HUB_ID, revision="abc123", device="cpu", verbose=False)
    assert isinstance(reranker, SetEncoderReRanker) and reranker.revision == "abc123"
    assert hub and all(call == (HUB_ID, "abc123") for call in hub)


def test_a_bad_revision_is_refused():
    with pytest.raises(TypeError, match="revision must be a non-empty string"):
        SetEncoderReRanker("unused", revision=3)


def test_model_at_revision_on_the_settings(hub):
    reranker = RerankerSettings(device="cpu", verbose=False).load(f"{HUB_ID}@v7")
    assert reranker.revision == "v7" and set(hub) == {(HUB_ID, "v7")}


def test_split_revision(tmp_path):
    folder = tmp_path / "ckpt@1"
    folder.mkdir()
    assert split_revision(str(folder)) == (str(folder), None)  # an existing folder is never split
    assert split_revision(f"{HUB_ID}@main") == (HUB_ID, "main")
    assert split_revision(HUB_ID) == (HUB_ID, None)
    for bad in (f"{HUB_ID}@", "@v1", "org@x/y"):
        with pytest.raises(SettingsError, match="ID@REVISION"):
            split_revision(bad)


def test_the_rerank_command_takes_model_at_revision(hub, tmp_path, capsys):
    output = tmp_path / "run.txt"
    code = main([str(SLICE / "tirex-sample" / "rerank.jsonl.gz"), "--model", f"{HUB_ID}@0123abc", "--quiet",
                 "--output", str(output)])
    assert code == 0, capsys.readouterr().err
    assert set(hub) == {(HUB_ID, "0123abc")}
    assert output.read_text().split("\n")[0].endswith(" example-org-set-encoder-tiny-0123abc")
    model = json.loads((tmp_path / "run.txt.manifest.json").read_text())["model"]
    assert (model["source"], model["revision"]) == (HUB_ID, "0123abc")
