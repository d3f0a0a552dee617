"""Where ``training.model.resolve_backbone`` finds a backbone given as ``package:MODULE/FOLDER``: the folder inside the
installed package, or a clear error for a module that has no files of its own."""

import sys

import pytest

from pyterrier_setenc.checkpoint import CheckpointError
from training.model import resolve_backbone


@pytest.fixture
def importable(tmp_path, monkeypatch):
    """``tmp_path`` on the import path; the modules imported from it are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("setenc_test_"):
            del sys.modules[name]


def test_package_backbone_is_the_folder_inside_the_package(importable):
    package = importable / "setenc_test_backbone_package"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    assert resolve_backbone("package:setenc_test_backbone_package/model") == package / "model"


def test_package_backbone_without_its_folder_is_a_clear_error(importable):
    (importable / "setenc_test_backbone_empty").mkdir()
    (importable / "setenc_test_backbone_empty" / "__init__.py").write_text("", encoding="utf-8")
    with pytest.raises(CheckpointError, match="no folder"):
        resolve_backbone("package:setenc_test_backbone_empty/model")


@pytest.mark.parametrize("module", ["setenc_test_namespace_backbone", "sys"])
def test_package_backbone_in_a_module_without_files_is_a_clear_error(module, importable):
    """A namespace package (a folder without ``__init__.py``) and a built-in module have no ``__file__``."""
    (importable / "setenc_test_namespace_backbone" / "model").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=f"package:{module}/model: {module} is not a package with files"):
        resolve_backbone(f"package:{module}/model")
