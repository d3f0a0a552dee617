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
