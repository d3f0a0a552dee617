"""docs/architecture.md's table of modules is true to the tree: every module of the library, the experiments, the
training code and the benchmarks has a row, and every module a row names exists."""

import re

from builders import REPO

PACKAGES = ("pyterrier_setenc", "pipelines", "training", "benchmarks")


def documented_modules() -> set[str]:
    """The paths named in the first cell of the table's rows; ``a/b.py``, `c.py` means ``a/b.py`` and ``a/c.py``."""
    names = set()
    for line in (REPO / "docs" / "architecture.md").read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        folder = ""
        for name in re.findall(r"`([^`]+)`", line.split(" | ")[0]):
            if "/" in name:
                folder = name.rsplit("/", 1)[0]
            names.add(name if "/" in name else f"{folder}/{name}")
    return names


def test_every_module_has_a_row_and_every_row_a_module():
    modules = {path.relative_to(REPO).as_posix() for package in PACKAGES for path in (REPO / package).glob("*.py")
               if path.name != "__main__.py" and not (path.name == "__init__.py" and package != "pyterrier_setenc")}
    documented = {name for name in documented_modules() if name.endswith(".py")}
    assert sorted(modules - documented) == [], "modules without a row in docs/architecture.md"
    assert sorted(name for name in documented if not (REPO / name).is_file()) == [], "rows naming no module"
