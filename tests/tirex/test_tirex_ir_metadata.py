"""``ir-metadata.yml`` beside TIREx's ``run.txt``: what the run was computed with, in the ``ir_metadata`` format.

The file is read the way TIREx reads it (the ``tira`` client's ``check_format(..., "ir_metadata")`` and
``lines_if_valid``), and its fields are compared with facts taken independently of
``pyterrier_setenc.run_metadata``: ``platform``, ``os.uname``, ``os.cpu_count``, ``importlib.metadata``, torch's own
attributes, ``/proc/cpuinfo``, ``sysconf``, ``getrusage`` of the process that wrote it, the clock around the run and
the SHA-256 of ``run.txt`` computed here."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime
from importlib import metadata
from pathlib import Path

import pandas as pd
import pyterrier as pt
import pytest
import torch
import yaml
from tira.check_format import _fmt, check_format, lines_if_valid

from pyterrier_setenc.tirex import main, rerank_file

from builders import FIXTURES, REPO, SLICE

SAMPLE = SLICE / "tirex-sample"
MODEL = FIXTURES / "setenc-int"
# the child reports what it used: the high-water mark of its whole life (getrusage, never reset by the run's own
# measurement at its end), torch's default threads and the distributions importlib.metadata finds on its own
# sys.path (this test process's differs: collecting other tests may add setuptools' vendored packages), all read after
# the entry point returned
CHILD = """
import json, resource, sys, torch
from importlib import metadata
from pyterrier_setenc.tirex import main
sys.argv = ["pyterrier-setenc-tirex", *sys.argv[1:]]
code = main(sys.argv[1:])
print(json.dumps({"code": code, "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "threads": torch.get_num_threads(), "argv": sys.argv, "executable": sys.executable,
                  "distributions": len({(d.metadata["Name"], d.version) for d in metadata.distributions()})}))
"""


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict:
    """One TIREx run in a separate process: its output folder, its report and the clock around it."""
    output = tmp_path_factory.mktemp("tirex") / "out"
    before = time.time()
    result = subprocess.run([sys.executable, "-c", CHILD, "--input", str(SAMPLE), "--output", str(output), "--model",
                             str(MODEL), "--tag", "setenc-int-run", "--batch-size", "4"],
                            capture_output=True, text=True, cwd=REPO, timeout=300,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    after = time.time()
    assert result.returncode == 0, result.stderr
    child = json.loads(result.stdout.strip().splitlines()[-1])
    assert child["code"] == 0, result.stderr
    return {"output": output, "child": child, "before": before, "after": after,
            "meta": yaml.safe_load((output / "ir-metadata.yml").read_text(encoding="utf-8"))}


def test_tira_reads_it_as_ir_metadata_beside_a_valid_run(written):
    output = written["output"]
    assert sorted(os.listdir(output)) == ["ir-metadata.yml", "run.txt"]
    status, message = check_format(output, "ir_metadata")
    assert status == _fmt.OK, message
    assert [entry["name"] for entry in lines_if_valid(output, "ir_metadata")] == ["ir-metadata.yml"]
    status, message = check_format(output, "run.txt", {"minimum_queries": 1})
    assert status == _fmt.OK, message  # the metadata beside it does not disturb TIREx's run check


def test_the_system_and_its_run(written):
    meta = written["meta"]
    assert meta["schema version"] == "0.2"  # tirex-tracker 0.2.24 writes this version
    assert meta["method"]["name"] == "setenc-int-run"
    assert str(MODEL) in meta["method"]["description"] and "'batch_size': 4" in meta["method"]["description"]
    run_txt = (written["output"] / "run.txt").read_bytes()
    assert meta["results"]["run.txt"]["sha256"] == hashlib.sha256(run_txt).hexdigest()
    assert {line.split()[-1] for line in run_txt.decode().splitlines()} == {"setenc-int-run"}


def test_the_software(written):
    meta, child = written["meta"], written["child"]
    implementation = meta["implementation"]
    assert implementation["executable"]["cmd"] == [child["executable"], *child["argv"]]
    assert implementation["python"]["version"] == platform.python_version()
    packages = implementation["python"]["packages"]
    for name in ("torch", "transformers", "python-terrier", "numpy", "tira"):
        assert f"{name}=={metadata.version(name)}" in packages, name
    assert len(packages) == child["distributions"]
    software = meta["platform"]["software"]
    assert software["torch"] == torch.__version__ and software["pyterrier-setenc"] == metadata.version(
        "pyterrier-setenc")
    assert software["torch build"] == {"cuda": torch.version.cuda,
                                       "cpu capability": torch.backends.cpu.get_cpu_capability()}
    assert software["device"] == "cpu"


def test_the_machine(written):
    meta, child = written["meta"], written["child"]
    hardware = meta["platform"]["hardware"]
    assert hardware["cpu"]["number of cores"] == os.cpu_count()
    assert hardware["cpu"]["torch threads"] == child["threads"]
    assert hardware["cpu"]["architecture"] == os.uname().machine
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        if names:
            assert hardware["cpu"]["model"] == names[0]
            assert meta["platform"]["software"]["device name"] == names[0]
    assert hardware["gpu"] is None  # the run was on the CPU
    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 10 ** 6
    assert abs(int(hardware["ram"].removesuffix(" MB")) - total_mb) <= 1
    uname = os.uname()
    assert meta["platform"]["operating system"]["kernel"] == f"{uname.sysname} {uname.release} {uname.machine}"


def test_the_resources(written):
    resources, child = written["meta"]["resources"], written["child"]
    runtime = resources["runtime"]
    start = datetime.fromisoformat(runtime["start time"]).timestamp()
    stop = datetime.fromisoformat(runtime["stop time"]).timestamp()
    assert written["before"] <= start < stop <= written["after"]
    wall_ms = int(re.fullmatch(r"(\d+) ms", runtime["wallclock"]).group(1))
    assert abs(wall_ms - (stop - start) * 1000) <= 2
    peak_kib = resources["ram"]["used process"]["max"]
    assert 50 * 1024 < peak_kib <= child["maxrss_kib"]  # torch and the model were resident; never above the process's
    assert resources["ram"]["used process scope"] in ("block", "process")


class LengthScorer(pt.Transformer):
    """Scores a passage by its length: a stand-in re-ranker without a model."""

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        return inp.assign(score=inp["text"].map(lambda text: float(len(text))))


class FailingScorer(pt.Transformer):
    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        raise RuntimeError("scoring failed")


def test_a_failed_run_writes_no_metadata_and_keeps_the_earlier(tmp_path, monkeypatch):
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError, match="scoring failed"):
        rerank_file(SAMPLE, fresh, FailingScorer(), tag="len")
    assert os.listdir(fresh) == []

    output = tmp_path / "out"
    assert rerank_file(SAMPLE, output, LengthScorer(), tag="first") == output / "run.txt"
    earlier = {name: (output / name).read_bytes() for name in ("run.txt", "ir-metadata.yml")}
    assert yaml.safe_load(earlier["ir-metadata.yml"])["method"]["name"] == "first"
    # a failed scoring, bad input, an unknown model and a failed write of run.txt: each leaves both files as they were
    with pytest.raises(RuntimeError, match="scoring failed"):
        rerank_file(SAMPLE, output, FailingScorer(), tag="second")
    code = main(["--input", str(tmp_path / "missing"), "--output", str(output), "--model", str(MODEL)])
    assert code == 1
    code = main(["--input", str(SAMPLE), "--output", str(output), "--model", str(tmp_path / "no-model")])
    assert code == 1

    def no_replace(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_replace)
    with pytest.raises(OSError):
        rerank_file(SAMPLE, output, LengthScorer(), tag="second")
    monkeypatch.undo()
    assert {name: (output / name).read_bytes() for name in os.listdir(output)} == earlier


def test_the_metadata_path_is_checked_before_anything_is_read(tmp_path, capsys):
    """An ``ir-metadata.yml`` that cannot be written (here a folder of that name) ends the run before the input is
    read or the model loaded, with a message naming it."""
    output = tmp_path / "out"
    (output / "ir-metadata.yml").mkdir(parents=True)
    assert main(["--input", str(tmp_path / "missing"), "--output", str(output), "--model", "no-model"]) == 1
    message = capsys.readouterr().err
    assert "ir-metadata.yml" in message and "missing" not in message and "Traceback" not in message, message
    assert not (output / "run.txt").exists()
