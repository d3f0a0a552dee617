"""Shared test fixtures and hooks: the data slice, a random Set-Encoder checkpoint, the committed fixture checkpoints
loaded once per session (read only), the skipping of ``requires_data`` tests without the full offline data, and the
score-agreement summary.

Builders and paths (``REPO``, ``FIXTURES``, ``DATA``, ``SLICE``, ``build_set_encoder``, ...) live in
``tests/builders.py``; import them from there (``from builders import FIXTURES``). Tests that need the full offline
data (``DATA``: ``$SETENC_DATA_DIR``, else ``../shared/data`` beside the repository) carry the ``requires_data``
marker: without that folder they are skipped with the reason, and with ``SETENC_REQUIRE_DATA=1`` (as ``.ci/run`` sets
it) its absence is an error instead, so CI never skips them silently."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from builders import (
    DATA,
    FIXTURES,
    REQUIRE_DATA,
    SLICE,
    build_set_encoder,
    read_rerank,
)

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


@pytest.fixture(scope="session")
def dl19() -> pd.DataFrame:
    """Ten DL19 BM25 top-100 lists with passage texts (the slice in ``tests/data``), by qid, in first-stage order."""
    return read_rerank(SLICE / "trec-dl-2019" / "bm25-top100.rerank.jsonl.gz")


@pytest.fixture(scope="session")
def set_encoder_path(tmp_path_factory) -> Path:
    return build_set_encoder(tmp_path_factory.mktemp("setenc") / "ckpt")


@pytest.fixture(scope="session")
def fixture_model():
    """Loads a committed fixture checkpoint (a folder of ``tests/fixtures``) as a
    :class:`~pyterrier_setenc.CrossEncoder` once per session: ``fixture_model("setenc-int")``. Read only: a test may
    score with it, never change it (weights, dtype, device, attributes); a test that changes a model loads its own."""
    from pyterrier_setenc import CrossEncoder

    loaded = {}

    def load(name: str) -> CrossEncoder:
        if name not in loaded:
            loaded[name] = CrossEncoder.from_pretrained(FIXTURES / name)
        return loaded[name]

    return load


@pytest.fixture(scope="session")
def fixture_rerankers() -> dict:
    """One re-ranker of each class on its fixture, by name: ``setenc`` (SetEncoderReRanker on ``setenc-int``),
    ``mono`` (MonoReRanker on ``mono``), ``listconranker`` (ListConRankerReRanker on ``listconranker``), each
    constructed from the fixture's path as a string with ``verbose=False``, once per session. Read only, like
    :func:`fixture_model`'s models."""
    from pyterrier_setenc import ListConRankerReRanker, MonoReRanker, SetEncoderReRanker

    classes = {"setenc": (SetEncoderReRanker, "setenc-int"), "mono": (MonoReRanker, "mono"),
               "listconranker": (ListConRankerReRanker, "listconranker")}
    return {name: cls(str(FIXTURES / folder), verbose=False) for name, (cls, folder) in classes.items()}


@pytest.fixture(scope="session")
def shipped_set_encoder():
    """The shipped Set-Encoder (``pyterrier_setenc.embedded.SET_ENCODER``) as a SetEncoderReRanker on the CPU with
    ``verbose=False``, loaded once per session; read only."""
    from pyterrier_setenc import SetEncoderReRanker, embedded

    return SetEncoderReRanker(embedded.SET_ENCODER, device="cpu", verbose=False)


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
