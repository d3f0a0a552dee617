"""The committed training configurations hold no machine paths: they write under the repository into a git-ignored
folder and find their data through ``${SETENC_DATA_DIR}`` (default ``../shared/data`` beside the repository), or read
data generated into a git-ignored folder of the repository."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from training.trainer import TrainConfig

from builders import REPO, requires_data

CONFIGS = sorted((REPO / "training" / "configs").glob("*.yaml"))
LOCAL = ["dl21-mono.yaml", "dl21-set-encoder.yaml"]  # data in ../shared/data; the others read MS MARCO online


def ignored(path: Path) -> bool:
    """Whether git ignores ``path`` (inside the repository) or one of its folders."""
    parts = path.relative_to(REPO).parts
    return any(subprocess.run(["git", "check-ignore", "-q", str(Path(*parts[:n]))], cwd=REPO).returncode == 0
               for n in range(1, len(parts) + 1))


def data_paths(config: TrainConfig) -> list[Path]:
    return [Path(config.data_root) / spec[key] for spec in config.data for key in ("candidates", "qrels", "run")
            if key in spec]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_writes_into_an_ignored_folder_of_the_repository(path, monkeypatch, tmp_path):
    monkeypatch.setenv("SETENC_DATA_DIR", str(tmp_path / "data"))
    config = TrainConfig.from_yaml(path)
    for setting in (config.output_dir, config.init_checkpoint):
        if setting is None:
            continue
        assert not Path(setting).is_absolute(), f"{path.name}: {setting} is a machine path"
        target = Path(os.path.normpath(REPO / setting))
        assert target.is_relative_to(REPO), f"{path.name}: {setting} leaves the repository"
        assert ignored(target), f"{path.name}: {setting} is not git-ignored"
    # every data path goes through the one setting, or is data generated into an ignored folder of the repository
    for data in data_paths(config):
        data = Path(os.path.normpath(data.absolute()))  # as written: runs/ may be a link to another disk
        if not data.is_relative_to(tmp_path / "data"):
            assert data.is_relative_to(REPO), f"{path.name}: {data} is neither under $SETENC_DATA_DIR nor generated"
            assert ignored(data), f"{path.name}: {data} is not git-ignored"


@requires_data
@pytest.mark.parametrize("name", LOCAL)
def test_local_configs_find_their_data_under_the_default_data_folder(name, monkeypatch):
    monkeypatch.delenv("SETENC_DATA_DIR", raising=False)
    config = TrainConfig.from_yaml(REPO / "training" / "configs" / name)
    paths = data_paths(config)
    default = (REPO.parent / "shared" / "data").resolve()
    assert len(paths) == 2 and all(p.resolve().is_relative_to(default) and p.is_file() for p in paths), paths


def test_an_unset_variable_is_an_error_naming_it(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("output_dir: runs/training/x\nbackbone: b\ndata:\n  - kind: graded\n"
                      "    candidates: ${NO_SUCH_SETTING_XYZ}/c.jsonl.gz\n")
    with pytest.raises(ValueError, match=r"NO_SUCH_SETTING_XYZ.*not set"):
        TrainConfig.from_yaml(config)
