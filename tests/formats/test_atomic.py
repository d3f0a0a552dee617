"""Atomic writes (``pyterrier_setenc.atomic``): a write or a folder replaced whole or not at all, the earlier result
kept when a write fails, temporaries of dead writers removed by the next write, and output paths checked before
anything is written."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pyterrier_setenc.atomic import (
    OutputPathError,
    atomic_folder,
    atomic_write,
    check_writable,
    remove_stale_temporaries,
)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_temporaries_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "run.txt"
    stale = [tmp_path / f".run.txt.{dead_pid()}.0123abcd.tmp", tmp_path / ".run.txt.k3x_9a0b.tmp"]  # old naming
    kept = [tmp_path / f".run.txt.{os.getpid()}.0123abcd.tmp",  # a write of this process, still running
            tmp_path / f".run.txt.bak.{dead_pid()}.0123abcd.tmp",  # another target's
            tmp_path / ".run.txt.notes"]
    for path in stale + kept:
        path.write_text("partial")
    atomic_write(target, lambda file: file.write("new\n"))
    assert target.read_text() == "new\n"
    assert sorted(tmp_path.iterdir()) == sorted(kept + [target])
    assert remove_stale_temporaries(target) == []


def test_a_failed_write_leaves_the_earlier_file(tmp_path):
    target = tmp_path / "run.txt"
    target.write_text("earlier\n")

    def fail(file) -> None:
        file.write("half")
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        atomic_write(target, fail)
    assert os.listdir(tmp_path) == ["run.txt"] and target.read_text() == "earlier\n"


@pytest.mark.parametrize("exchange", [True, False], ids=["exchanged", "moved-aside"])
def test_a_folder_is_replaced_as_a_whole_or_not_at_all(tmp_path, monkeypatch, exchange):
    if not exchange:  # a system without renameat2: the earlier folder is moved aside first
        monkeypatch.setattr("pyterrier_setenc.atomic.exchange_folders", lambda a, b: False)
    target = tmp_path / "model"
    with atomic_folder(target) as staging:
        (staging / "config.json").write_text("first")
        assert not target.exists() and staging.parent == tmp_path
    assert os.listdir(target) == ["config.json"]
    with pytest.raises(RuntimeError, match="stop"), atomic_folder(target) as staging:
        (staging / "config.json").write_text("half")
        raise RuntimeError("stop")
    assert (target / "config.json").read_text() == "first" and os.listdir(tmp_path) == ["model"]
    stale = tmp_path / f".model.{dead_pid()}.0123abcd.tmp"  # what a killed folder write leaves
    (stale / "sub").mkdir(parents=True)
    with atomic_folder(target) as staging:
        (staging / "weights").write_text("second")
    assert os.listdir(target) == ["weights"] and os.listdir(tmp_path) == ["model"]


def test_check_writable(tmp_path):
    assert check_writable(tmp_path / "new" / "deeper" / "run.txt") == tmp_path / "new" / "deeper" / "run.txt"
    assert os.listdir(tmp_path / "new" / "deeper") == []  # made, and the probe removed
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match=f"output {tmp_path / 'file'} is a file; it must be a folder"):
        check_writable(tmp_path / "file" / "run.txt")
    with pytest.raises(OutputPathError, match=f"output folder {tmp_path / 'file' / 'a'} cannot be written"):
        check_writable(tmp_path / "file" / "a" / "run.txt")
    (tmp_path / "run.txt").mkdir()
    with pytest.raises(OutputPathError, match="is a folder; it must be a file"):
        check_writable(tmp_path / "run.txt")
