"""The environment and the resources in the ``manifest.json`` of an experiment's result folder.

Expected values come from outside ``pyterrier_setenc.run_metadata``: ``platform``, ``os.cpu_count``,
``importlib.metadata``, torch's own attributes, ``/proc/cpuinfo``, the clock around the call, and re-rankers that
hold a known amount of memory while they score."""

from __future__ import annotations

import os
import platform
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest
import torch

from pipelines.dl import table1
from pipelines.output import verify_result

from builders import FIXTURES, SLICE

SETTINGS = dict(data_dir=SLICE, queries=2, depth=10, verbose=False, correction=None)
HELD_MIB = 384


def run_table1(out: Path, models) -> tuple[dict, float]:
    """``table1`` into ``out``; the verified manifest and the wall time around the call."""
    started = time.perf_counter()
    table1("dl19", models, output=out, **SETTINGS)
    return verify_result(out), time.perf_counter() - started


def test_the_environment_is_the_machines_and_the_softwares(tmp_path):
    manifest, _ = run_table1(tmp_path / "out", {"setenc": str(FIXTURES / "setenc-int")})
    env = manifest["environment"]
    assert env["python"] == platform.python_version()
    assert env["packages"]["torch"] == metadata.version("torch") == torch.__version__
    assert env["packages"]["pyterrier-setenc"] == metadata.version("pyterrier-setenc")
    assert env["torch_build"] == {"version": torch.__version__, "cuda": torch.version.cuda,
                                  "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    assert env["cpu_count"] == os.cpu_count() and env["torch_threads"] == torch.get_num_threads()
    assert env["device"] == "cpu" and env["platform"] == platform.platform()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        if names:
            assert env["cpu_model"] == env["device_name"] == names[0]


def test_each_model_has_its_wall_time_and_reused_outputs_cost_nothing(tmp_path):
    out = tmp_path / "out"
    models = {"setenc": str(FIXTURES / "setenc-int"), "mono": str(FIXTURES / "mono")}
    manifest, wall = run_table1(out, models)
    resources = manifest["resources"]
    assert sorted(resources["models"]) == ["mono", "setenc"]
    for entry in resources["models"].values():
        assert entry["outputs_computed"] == 1 and entry["outputs_reused"] == 0 and entry["device"] == "cpu"
        assert entry["wall_time_s"] > 0 and entry["peak_memory_mib"] > 50  # torch and a model were resident
    per_model = sum(entry["wall_time_s"] for entry in resources["models"].values())
    assert per_model <= resources["run"]["wall_time_s"] <= wall
    assert resources["run"]["peak_memory_mib"] >= max(e["peak_memory_mib"] for e in resources["models"].values())

    manifest, _ = run_table1(out, models)  # the same settings: both outputs are reused
    for entry in manifest["resources"]["models"].values():
        assert (entry["outputs_computed"], entry["outputs_reused"], entry["wall_time_s"]) == (0, 1, 0.0)
        assert entry["peak_memory_mib"] is None


class Holding(pt.Transformer):
    """Keeps the first stage's order; holds ``mib`` MiB (touched, so resident) while it scores."""

    def __init__(self, mib: int):
        self.mib = mib

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        held = np.ones(self.mib * 2 ** 20 // 8) if self.mib else None
        out = pt.model.add_ranks(inp.assign(score=-inp["rank"].astype(float)))
        del held
        return out


def test_each_models_peak_memory_is_its_own(tmp_path):
    """A model that holds 384 MiB scored first, then one that holds nothing: where the platform lets a block measure
    its own peak, the second model's peak is below the first's by about what the first held."""
    manifest, _ = run_table1(tmp_path / "out", {"big": Holding(HELD_MIB), "small": Holding(0)})
    models = manifest["resources"]["models"]
    big, small = models["big"], models["small"]
    if big["peak_memory_scope"] != "block":
        pytest.skip("this platform gives only the process's peak memory (no /proc/self/clear_refs)")
    assert big["peak_memory_mib"] - small["peak_memory_mib"] > 0.8 * HELD_MIB, models
    assert manifest["resources"]["run"]["peak_memory_mib"] >= big["peak_memory_mib"]
