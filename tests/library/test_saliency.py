"""Attention saliency (``pyterrier_setenc.saliency``, ``pipelines.saliency``).

Golden values come from independent sources: the scores from the engine's fast path; the attention of pointwise
models from transformers' own ``ElectraModel``/``BertModel`` with eager attention (``output_attentions=True``) on the
same checkpoint; the Set-Encoder's from a dense float64 attention written here from the checkpoint's weights (one
mask over all tokens of a list: each token sees its own sequence and the other sequences' ``[INT]`` tokens); and a
hand count where every attention score is equal (query and key weights zero), so the attention is uniform."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from pyterrier_setenc import CrossEncoder, load_reranker
from pyterrier_setenc.saliency import OTHERS, PASSAGE, QUERY, SELF, SPECIAL, TOKEN_TYPES, attention_saliency

from builders import FIXTURES, SLICE, build_hf_cross_encoder

TOLERANCE = 1e-5  # float32 against float64 / another float32 implementation


@pytest.fixture(scope="module")
def lists(dl19) -> list[tuple[str, list[str]]]:
    """Two real DL19 lists of 6 passages (one with an empty passage)."""
    result = []
    for _, frame in list(dl19.groupby("qid", sort=True))[:2]:
        result.append((frame["query"].iloc[0], frame["text"].head(6).tolist()))
    result[1][1][2] = ""
    return result


def types_by_ids(module: CrossEncoder, ids: list[int], kinds: list[int], chosen: int) -> list[int]:
    """Token types from the token ids: special ids are [CLS], [SEP], [INT]; the rest query (type 0) or passage."""
    specials = {module.tokenizer.cls_id, module.tokenizer.sep_id, module.tokenizer.int_id}
    return [SELF if i == chosen else SPECIAL if token in specials else QUERY if kind == 0 else PASSAGE
            for i, (token, kind) in enumerate(zip(ids, kinds))]


def shares_from_probabilities(rows: torch.Tensor, types: list[int], others: torch.Tensor | None = None) \
        -> torch.Tensor:
    """(heads, types): the probability rows (heads, len(types)) of one sequence summed by token type."""
    mass = torch.zeros(rows.shape[0], len(TOKEN_TYPES), dtype=torch.float64)
    for position, kind in enumerate(types):
        mass[:, kind] += rows[:, position].double()
    if others is not None:
        mass[:, OTHERS] = others.double()
    return mass


@pytest.mark.parametrize("fixture", ["setenc-int", "setenc-noint", "setenc-bert-nosample", "mono", "mono-2class"])
def test_scores_equal_the_fast_path(fixture, lists, fixture_model):
    module = fixture_model(fixture)
    for query, passages in lists:
        fast = module.score_lists([query], [passages])[0]
        for token in ("interaction", "first"):
            result = attention_saliency(module, query, passages, token=token)
            assert (result.scores - fast).abs().max().item() <= TOLERANCE
            assert result.shares.shape == (module.config["num_hidden_layers"], module.config["num_attention_heads"],
                                           len(passages), len(TOKEN_TYPES))
            assert torch.allclose(result.shares.sum(-1), torch.ones(()).double(), atol=TOLERANCE)
        pointwise = module.score_lists([query], [passages], listwise=False)[0]
        alone = attention_saliency(module, query, passages, listwise=False)
        assert (alone.scores - pointwise).abs().max().item() <= TOLERANCE
        assert alone.shares[..., OTHERS].abs().max().item() == 0


def transformers_encoder(folder, kind: str):
    """transformers' own encoder with eager attention on the checkpoint's weights."""
    from transformers import BertForSequenceClassification, ElectraConfig, ElectraModel

    if kind == "hf-bert":
        model = BertForSequenceClassification.from_pretrained(folder).bert
    else:
        config = json.loads((folder / "config.json").read_text())
        names = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps")
        model = ElectraModel(ElectraConfig(**{n: config[n] for n in names}))
        weights = load_file(folder / "model.safetensors")
        missing, _ = model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=False)
        assert not [name for name in missing if "position_ids" not in name], missing
    model.set_attn_implementation("eager")
    return model.eval()


@pytest.mark.parametrize("kind", ["electra", "hf-bert"])
def test_pointwise_shares_equal_transformers_attentions(kind, lists, tmp_path):
    folder = FIXTURES / "mono" if kind == "electra" else build_hf_cross_encoder(tmp_path / "bert", "bert")
    module = CrossEncoder.from_pretrained(folder)
    reference = transformers_encoder(folder, kind)
    query, passages = lists[1]
    result = attention_saliency(load_reranker(folder, verbose=False), query, passages)
    encoded = module.tokenizer([query] * len(passages), passages)
    for j, (ids, kinds) in enumerate(zip(encoded.input_ids, encoded.token_type_ids)):
        with torch.no_grad():
            out = reference(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([kinds]),
                            output_attentions=True)
        types = types_by_ids(module, ids, kinds, 0)
        for layer, attentions in enumerate(out.attentions):
            expected = shares_from_probabilities(attentions[0, :, 0, :], types)
            assert torch.allclose(result.shares[layer, :, j], expected, atol=TOLERANCE), (layer, j)


def dense_set_encoder(folder, input_ids: list[list[int]], token_type_ids: list[list[int]], position: int):
    """A Set-Encoder (ELECTRA, pooling "first", linear head without bias) in float64 over one flat sequence of all
    tokens of a list: a token sees its own sequence and the other sequences' tokens at ``position`` ([INT]).
    Returns the scores and, per layer, the attention probabilities (heads, T, T)."""
    w = {k: v.double() for k, v in load_file(folder / "model.safetensors").items()}
    config = json.loads((folder / "config.json").read_text())
    heads, eps = config["num_attention_heads"], config["layer_norm_eps"]
    seq = torch.tensor([i for i, ids in enumerate(input_ids) for _ in ids])
    pos = torch.tensor([p for ids in input_ids for p in range(len(ids))])
    ids = torch.tensor([t for row in input_ids for t in row])
    kinds = torch.tensor([t for row in token_type_ids for t in row])
    sees = (seq[:, None] == seq[None, :]) | (pos[None, :] == position)

    def norm(x, name):
        return F.layer_norm(x, x.shape[-1:], w[f"{name}.weight"], w[f"{name}.bias"], eps)

    def linear(x, name):
        return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]

    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][pos]
         + w["embeddings.token_type_embeddings.weight"][kinds])
    x = linear(norm(x, "embeddings.LayerNorm"), "embeddings_project")
    probabilities = []
    for layer in range(config["num_hidden_layers"]):
        name = f"encoder.layer.{layer}"
        q, k, v = (linear(x, f"{name}.attention.self.{p}").unflatten(-1, (heads, -1)).transpose(0, 1)
                   for p in ("query", "key", "value"))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        p = torch.softmax(scores.masked_fill(~sees, float("-inf")), dim=-1)
        probabilities.append(p)
        context = (p @ v).transpose(0, 1).flatten(1)
        x = norm(linear(context, f"{name}.attention.output.dense") + x, f"{name}.attention.output.LayerNorm")
        hidden = F.gelu(linear(x, f"{name}.intermediate.dense"))
        x = norm(linear(hidden, f"{name}.output.dense") + x, f"{name}.output.LayerNorm")
    scores = x[pos == 0] @ w["linear.weight"].T
    return scores[:, 0], probabilities


def test_set_encoder_shares_equal_a_dense_float64_attention(lists, fixture_model):
    folder = FIXTURES / "setenc-int"
    module = fixture_model("setenc-int")
    assert module.backbone.interaction_position == 1
    query, passages = lists[0]
    encoded = module.tokenizer([query] * len(passages), passages)
    scores, probabilities = dense_set_encoder(folder, encoded.input_ids, encoded.token_type_ids, 1)
    lengths = [len(ids) for ids in encoded.input_ids]
    starts = [sum(lengths[:j]) for j in range(len(lengths))]
    for token, chosen in (("interaction", 1), ("first", 0)):
        result = attention_saliency(module, query, passages, token=token)
        assert torch.allclose(result.scores.double(), scores, atol=TOLERANCE)
        for j, (ids, kinds) in enumerate(zip(encoded.input_ids, encoded.token_type_ids)):
            types = types_by_ids(module, ids, kinds, chosen)
            partners = [starts[i] + 1 for i in range(len(passages)) if i != j]
            for layer, p in enumerate(probabilities):
                row = p[:, starts[j] + chosen]
                expected = shares_from_probabilities(row[:, starts[j]:starts[j] + lengths[j]], types,
                                                     row[:, partners].sum(-1))
                assert torch.allclose(result.shares[layer, :, j], expected, atol=TOLERANCE), (token, layer, j)


def test_uniform_attention_gives_the_hand_counts():
    """With query and key weights zero every score is equal, so each key gets 1 / (number of keys). "the cat sat"
    is 3 word pieces, "on a mat" 3 and "dogs" 1: the [INT] token of the sequence ``[CLS] [INT] the cat sat [SEP] on a
    mat [SEP]`` (10 tokens) with 2 partners sees 12 keys: itself 1/12, query 3/12, passage 3/12, special ([CLS] and two
    [SEP]) 3/12, other passages 2/12."""
    module = CrossEncoder.from_pretrained(FIXTURES / "setenc-int")
    with torch.no_grad():
        for layer in module.backbone.encoder.layer:
            for name in ("query", "key"):
                getattr(layer.attention.self, name).weight.zero_()
                getattr(layer.attention.self, name).bias.zero_()
    result = attention_saliency(module, "the cat sat", ["on a mat", "dogs", "on a mat"])
    expected = torch.tensor([1, 3, 3, 3, 2], dtype=torch.float64) / 12
    assert torch.allclose(result.shares[:, :, 0], expected.expand(2, 4, 5), atol=1e-6)
    dogs = torch.tensor([1, 3, 1, 3, 2], dtype=torch.float64) / 10  # 8 tokens of its own, 2 partners
    assert torch.allclose(result.shares[:, :, 1], dogs.expand(2, 4, 5), atol=1e-6)
    single = attention_saliency(module, "the cat sat", ["on a mat"])  # no partners: nothing on other passages
    assert torch.allclose(single.shares, (torch.tensor([1, 3, 3, 3, 0], dtype=torch.float64) / 10).expand(2, 4, 1, 5),
                          atol=1e-6)
    assert single.shares[..., OTHERS].abs().max().item() == 0


def test_bad_arguments_are_refused(fixture_model):
    module = fixture_model("mono")
    with pytest.raises(ValueError, match="token must be"):
        attention_saliency(module, "q", ["p"], token="cls")
    with pytest.raises(ValueError, match="at least one passage"):
        attention_saliency(module, "q", [])
    with pytest.raises(TypeError, match="needs a cross-encoder"):
        attention_saliency(object(), "q", ["p"])


# --- the experiment ------------------------------------------------------------------------------------------------

def run_experiment(tmp_path, *extra: str):
    from pipelines.saliency import main

    return main(["--data-dir", str(SLICE), "--queries", "2", "--depth", "8", "--benchmark", "dl19", "--quiet",
                 "--output", str(tmp_path / "out"), "--model", f"setenc={FIXTURES / 'setenc-int'}",
                 "--model", f"mono={FIXTURES / 'mono'}", *extra])


def test_experiment_writes_a_checked_result_and_reuses_it(tmp_path, monkeypatch):
    import matplotlib.image

    from pipelines import saliency as experiment
    from pipelines.output import verify_result

    result = run_experiment(tmp_path)
    out = tmp_path / "out"
    manifest = verify_result(out)
    assert manifest["settings"]["experiment"] == "saliency" and manifest["settings"]["queries"] == {"dl19": 2}
    table = pd.read_csv(out / "results.csv")
    assert list(table.columns) == ["model", "layer", *TOKEN_TYPES]
    assert table[["model", "layer"]].values.tolist() == [["setenc", 1], ["setenc", 2], ["mono", 1], ["mono", 2]]
    assert (table[list(TOKEN_TYPES)].sum(axis=1) - 1).abs().max() < TOLERANCE
    assert (table.loc[table["model"] == "mono", "other passages"] == 0).all()
    assert (table.loc[table["model"] == "setenc", "other passages"] > 0).all()
    image = matplotlib.image.imread(out / "saliency.png")
    assert image.ndim == 3 and image.shape[1] > 400

    # the table is the mean over queries of attention_saliency's means, computed here again
    from pyterrier_setenc.saliency import attention_saliency as direct
    topics = pd.read_csv(SLICE / "trec-dl-2019" / "topics.tsv", sep="\t", header=None, dtype=str).head(2)
    module = CrossEncoder.from_pretrained(FIXTURES / "setenc-int")
    from builders import read_rerank
    frame = read_rerank(SLICE / "trec-dl-2019" / "bm25-top100.rerank.jsonl.gz").sort_values(["qid", "rank"])
    means = [direct(module, frame[frame["qid"] == qid]["query"].iloc[0],
                    frame[frame["qid"] == qid]["text"].head(8).tolist()).mean() for qid in topics[0]]
    expected = torch.stack(means).mean(0).numpy()
    got = table[table["model"] == "setenc"][list(TOKEN_TYPES)].to_numpy()
    assert abs(got - expected).max() < 1e-9

    # a rerun reuses the stored shares: nothing is computed again, the table is the same
    monkeypatch.setattr(experiment, "attention_saliency", lambda *a, **k: pytest.fail("recomputed"))
    again = run_experiment(tmp_path)
    pd.testing.assert_frame_equal(again.table, result.table)
    verify_result(out)

    # a damaged stored file is not reused (here: computed again, which the patch refuses)
    from pipelines.output import StoredOutputWarning
    stored = out / "cache" / "saliency" / "mono__dl19.csv"
    stored.write_text(stored.read_text().replace("0.", "7.", 1))
    with pytest.warns(StoredOutputWarning, match="mono__dl19.csv"), pytest.raises(pytest.fail.Exception,
                                                                                   match="recomputed"):
        run_experiment(tmp_path)


def test_stored_shares_are_checked_before_reuse():
    """Stored per-query shares are reused only when complete: the same queries, every layer once, shares in [0, 1]
    adding up to 1."""
    from pipelines.saliency import PER_QUERY_COLUMNS, _valid

    rows = [{"qid": qid, "passages": 3, "layer": layer, "self": 0.1, "query": 0.2, "passage": 0.3, "special": 0.15,
             "other passages": 0.25} for qid in ("1", "2") for layer in (1, 2)]
    frame = pd.DataFrame(rows, columns=PER_QUERY_COLUMNS)
    assert _valid(frame, ["1", "2"], 2)
    assert not _valid(frame, ["1", "3"], 2)  # other queries
    assert not _valid(frame, ["1", "2"], 3)  # a layer missing
    assert not _valid(frame.drop(columns="special"), ["1", "2"], 2)
    assert not _valid(frame.assign(layer=[1, 1, 1, 2]), ["1", "2"], 2)  # a layer twice, another missing
    off = frame.copy()
    off.loc[0, "self"] = 0.6  # adds up to 1.5
    assert not _valid(off, ["1", "2"], 2)
    negative = frame.copy()
    negative.loc[1, ["self", "query"]] = [-0.1, 0.4]  # adds up to 1, one share below 0
    assert not _valid(negative, ["1", "2"], 2)


def test_experiment_refuses_what_it_cannot_analyse(tmp_path):
    from pipelines.saliency import saliency_by_layer

    with pytest.raises(ValueError, match="--ray-workers"):
        saliency_by_layer([FIXTURES / "mono"], ["dl19"], data_dir=SLICE, ray_workers=2, output=None)
    with pytest.raises(ValueError, match="needs a cross-encoder"):
        saliency_by_layer([f"lcr={FIXTURES / 'listconranker'}"], ["dl19"], data_dir=SLICE, queries=1, depth=2,
                          output=None, verbose=False)
