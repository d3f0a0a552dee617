"""Memory for long lists: the encoder keeps one copy of the hidden states. Embedding, whose three lookups and their
sums would hold four copies at once, runs bucket by bucket into one tensor; the result equals the embedding of all
tokens in one call (the way autograd runs it)."""

import pytest
import torch

from pyterrier_setenc._engine.batching import DEFAULT_TOKEN_BUDGET
from pyterrier_setenc._engine.encoder import Embeddings

from agreement import check_scores

pytestmark = pytest.mark.numerics


def test_a_long_list_is_embedded_bucket_by_bucket(dl19, monkeypatch, fixture_model):
    model = fixture_model("setenc-int")
    texts = list(dict.fromkeys(dl19["text"]))[:300]
    batch = model.encode([dl19["query"].iloc[0]] * len(texts), texts, [len(texts)])
    assert len(batch.buckets) > 1
    with torch.no_grad():
        whole = model.backbone.embeddings(batch.input_ids, batch.token_type_ids, batch.position_ids)
        whole = model.backbone.embeddings_project(whole)  # this fixture's embeddings are narrower than its layers
    rows_seen = []
    forward = Embeddings.forward
    monkeypatch.setattr(Embeddings, "forward",
                        lambda self, ids, *rest: rows_seen.append(len(ids)) or forward(self, ids, *rest))
    with torch.inference_mode():
        bucketed = model.backbone.embed(batch)
    assert rows_seen == [bucket.rows.stop - bucket.rows.start for bucket in batch.buckets]
    assert max(rows_seen) <= DEFAULT_TOKEN_BUDGET
    assert bucketed.shape == whole.shape
    check_scores(bucketed, whole, layers=0, what="embeddings, bucket by bucket against all at once")


@pytest.mark.parametrize("name", ["setenc-int", "setenc-noint", "mono"])
@pytest.mark.parametrize("appended_max", [10_000, 0], ids=["appended", "merged"])
def test_the_last_layer_on_first_rows_only_gives_their_states(name, appended_max, dl19, monkeypatch, fixture_model):
    """``first_only``: the last layer's output block and feed-forward run on each sequence's first row alone; those
    rows' last states equal the whole pass's, over several buckets and two lists, on both attention ways."""
    from pyterrier_setenc._engine import attention

    monkeypatch.setattr(attention, "APPENDED_PARTNERS_MAX", appended_max)
    model = fixture_model(name)
    texts = list(dict.fromkeys(dl19["text"]))[:240]
    queries = [dl19["query"].iloc[0]] * 120 + [dl19["query"].iloc[-1]] * 120
    batch = model.encode(queries, texts, [120, 120])
    assert len(batch.buckets) > 1
    with torch.inference_mode():
        whole = model.backbone(batch)[batch.starts].clone()
        firsts = model.backbone(batch, first_only=True)[batch.starts]
    check_scores(firsts, whole, len(model.backbone.encoder.layer), what="first rows' last states, first_only")


def test_a_pooling_head_gets_every_last_state(set_encoder_path, tmp_path, dl19):
    """A head that pools all tokens (``mean``) scores from every row's last state: its scores equal the mean of the
    whole pass's states put through its linear layer by hand."""
    import json
    import shutil

    from pyterrier_setenc.model import CrossEncoder

    folder = tmp_path / "mean"
    shutil.copytree(set_encoder_path, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"pooling_strategy": "mean"}))
    model = CrossEncoder.from_pretrained(folder)
    assert not model.head.first_token_only
    texts = list(dl19["text"][:20])
    [scores] = model.score_lists([dl19["query"].iloc[0]], [texts])
    batch = model.encode([dl19["query"].iloc[0]] * len(texts), texts, [len(texts)])
    with torch.inference_mode():
        states = model.backbone(batch)
        ends = [*batch.starts[1:].tolist(), len(states)]
        means = torch.stack([states[start:end].mean(0) for start, end in zip(batch.starts.tolist(), ends)])
        by_hand = (means @ model.head.linear.weight.T)[:, 0]
        by_hand = by_hand.new_empty(batch.size).index_copy(0, batch.order, by_hand)
    check_scores(scores, by_hand, len(model.backbone.encoder.layer), what="mean pooling against the whole pass")
