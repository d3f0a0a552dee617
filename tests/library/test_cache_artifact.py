"""ListwiseCache as a PyTerrier artifact: the folder's pt_meta.json, pt.Artifact.load through the entry point that
pyproject.toml declares, packages of build_package opened from this machine, and the errors for folders that are not
caches.

Expected scores are fresh runs of the same re-ranker on the same list (no cache involved). The artifact's type and
format are the name of the entry point in pyproject.toml (PyTerrier looks a class up by "type.format"); the package's
SHA-256 is computed here from its bytes."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest

from pyterrier_setenc import ListwiseCache, SetEncoderReRanker
from pyterrier_setenc.caching import DATABASE, METADATA

from builders import FIXTURES, REPO

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
ENTRY_POINTS = PROJECT["entry-points"]["pyterrier.artifact"]
NAME = next(name for name, target in ENTRY_POINTS.items() if target == "pyterrier_setenc.caching:ListwiseCache")
TYPE, FORMAT = NAME.split(".", 1)


def candidates(n: int = 12, query: str = "how do lobsters molt") -> pd.DataFrame:
    """One query's first-stage list of ``n`` hand-written passages, in rank order."""
    return pd.DataFrame([dict(qid="q1", query=query, docno=f"d{i}", rank=i, score=float(n - i),
                              text=f"passage {i}: a lobster {'molts' if i % 3 == 0 else 'rests'} after {i + 2} days")
                         for i in range(n)])


@pytest.fixture(scope="module")
def setenc() -> SetEncoderReRanker:
    return SetEncoderReRanker(FIXTURES / "setenc-int", verbose=False)


class ScoringCalled(Exception):
    """The model scored a list that the cache should have served."""


def failing(monkeypatch, reranker: SetEncoderReRanker) -> SetEncoderReRanker:
    """``reranker`` (same weights, same cache key) with scoring that raises until the test ends."""

    def score_lists(*args, **kwargs):
        raise ScoringCalled("the model was called")

    monkeypatch.setattr(reranker, "score_lists", score_lists)
    return reranker


@pytest.fixture
def entry_points(tmp_path, monkeypatch):
    """pyproject.toml's ``pyterrier.artifact`` entry points, found by importlib.metadata as an installed package's are
    (an editable install made before they were declared does not list them; a fresh install lists the same)."""
    info = tmp_path / "site" / "setenc_artifact_entry_points-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: setenc-artifact-entry-points\nVersion: 0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in ENTRY_POINTS.items())
    (info / "entry_points.txt").write_text(f"[pyterrier.artifact]\n{lines}")
    monkeypatch.syspath_prepend(str(info.parent))


def test_a_cache_used_in_a_pipeline_is_a_described_artifact_folder(tmp_path, setenc):
    folder = tmp_path / "cache"
    cache = ListwiseCache(folder, setenc)
    assert not folder.exists()  # making the cache writes nothing; its first use does
    first_stage = pt.Transformer.from_df(candidates())
    result = (first_stage >> cache)(pd.DataFrame([dict(qid="q1", query="how do lobsters molt")]))
    pd.testing.assert_series_equal(result.set_index("docno")["score"], setenc(candidates()).set_index("docno")["score"],
                                   check_exact=True)
    assert json.loads((folder / METADATA).read_text()) == {"type": TYPE, "format": FORMAT,
                                                           "package_hint": PROJECT["name"]}
    assert (folder / DATABASE).is_file()
    assert pt.inspect.artifact_type_format(cache) == (TYPE, FORMAT)
    assert isinstance(cache, pt.Artifact) and isinstance(cache, pt.Transformer)


def test_a_loaded_cache_serves_the_stored_lists_without_the_model(tmp_path, setenc, entry_points, monkeypatch):
    folder, frame = tmp_path / "cache", candidates()
    fresh = setenc(frame)
    ListwiseCache(folder, setenc)(frame)
    model = failing(monkeypatch, setenc)
    opened = {"pt.Artifact.load": pt.Artifact.load(str(folder), scorer=model),
              "ListwiseCache.load": ListwiseCache.load(str(folder), scorer=model),
              "pt.Artifact.from_url": pt.Artifact.from_url(str(folder), scorer=model),
              "ListwiseCache.from_url": ListwiseCache.from_url(str(folder), scorer=model)}
    for how, cache in opened.items():
        assert type(cache) is ListwiseCache, how
        pd.testing.assert_frame_equal(cache(frame.sample(frac=1.0, random_state=2)), fresh, check_exact=True)
    with pytest.raises(ScoringCalled):  # a list that is not stored is scored (and here the model fails)
        opened["pt.Artifact.load"](candidates(5))


def test_a_cache_loaded_with_another_model_scores_its_lists_again(tmp_path, setenc, entry_points, monkeypatch):
    folder, frame = tmp_path / "cache", candidates()
    stored = ListwiseCache(folder, setenc)(frame).set_index("docno")["score"]
    with pytest.raises(ScoringCalled):  # other weights: the stored scores are not served
        pt.Artifact.load(str(folder), scorer=failing(monkeypatch, SetEncoderReRanker(FIXTURES / "setenc-noint",
                                                                                      verbose=False)))(frame)
    other = SetEncoderReRanker(FIXTURES / "setenc-noint", verbose=False)
    served = pt.Artifact.load(str(folder), scorer=other)(frame)
    pd.testing.assert_frame_equal(served, other(frame), check_exact=True)
    assert np.abs(served.set_index("docno")["score"] - stored.loc[served["docno"]].to_numpy()).max() > 1e-3
    with pytest.raises(ScoringCalled):  # a scorer without cache_key() under another model_key
        ListwiseCache.load(str(folder), scorer=failing(monkeypatch, SetEncoderReRanker(FIXTURES / "setenc-int",
                                                                                        verbose=False)),
                           model_key="another model")(frame)


def test_a_package_round_trip_through_a_local_file(tmp_path, setenc, entry_points, monkeypatch):
    monkeypatch.setenv("PYTERRIER_HOME", str(tmp_path / "home"))  # where from_url unpacks packages
    folder, frame = tmp_path / "cache", candidates()
    fresh = setenc(frame)
    cache = ListwiseCache(folder, setenc)
    cache(frame)
    (tmp_path / "shared").mkdir()
    described: dict = {}
    package = cache.build_package(str(tmp_path / "shared" / "cache.tar.lz4"), metadata_out=described, verbose=False)
    assert described == {"type": TYPE, "format": FORMAT, "package_hint": PROJECT["name"]}  # pt_meta.json, packed
    sidecar = json.loads(Path(package + ".json").read_text())
    assert sidecar["expected_sha256"] == hashlib.sha256(Path(package).read_bytes()).hexdigest()
    assert sorted(item["path"] for item in sidecar["contents"]) == sorted([DATABASE, METADATA])
    database = (folder / DATABASE).read_bytes()
    shutil.rmtree(folder)  # what is served comes from the package
    model = failing(monkeypatch, setenc)
    for url in (package, Path(package).as_uri()):
        loaded = ListwiseCache.from_url(url, scorer=model)
        assert isinstance(loaded, ListwiseCache)
        assert loaded.folder.parent == tmp_path / "home" / "artifacts"
        assert (loaded.folder / DATABASE).read_bytes() == database
        pd.testing.assert_frame_equal(loaded(frame), fresh, check_exact=True)
    again = pt.Artifact.load(str(loaded.folder), scorer=model)
    pd.testing.assert_frame_equal(again(frame), fresh, check_exact=True)


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_package_is_an_error_naming_it(tmp_path, setenc, monkeypatch):
    monkeypatch.setenv("PYTERRIER_HOME", str(tmp_path / "home"))
    cache = ListwiseCache(tmp_path / "cache", setenc)
    cache(candidates())
    package = Path(cache.build_package(str(tmp_path / "cache.tar.lz4"), verbose=False))
    with pytest.raises(ValueError, match=f"{package}: its SHA-256 is .* but the expected_sha256 argument says 00"):
        ListwiseCache.from_url(str(package), expected_sha256="00" * 32, scorer=setenc)
    _flip_a_byte(package)
    with pytest.raises(ValueError, match=f"{package}: its SHA-256 is .* but {package}.json says"):
        ListwiseCache.from_url(str(package), scorer=setenc)
    Path(f"{package}.json").unlink()  # nothing to check it against: a cut package is found when it is unpacked
    package.write_bytes(package.read_bytes()[: package.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"{package} cannot be unpacked as a package of build_package"):
        ListwiseCache.from_url(str(package), scorer=setenc)
    assert not list((tmp_path / "home" / "artifacts").iterdir())  # no half-unpacked folder left
    with pytest.raises(ValueError, match="is a file; .* opened with ListwiseCache.from_url"):
        ListwiseCache(package, setenc)


def _other_files(folder: Path) -> None:
    folder.mkdir()
    (folder / "run.txt").write_text("q1 Q0 d1 0 1.0 bm25\n")


def _damaged_description(folder: Path) -> None:
    folder.mkdir()
    (folder / METADATA).write_text('{"type": "listwise_cache", "form')


def _another_artifact(folder: Path) -> None:
    from pyterrier_caching import KeyValueCache

    KeyValueCache(str(folder), key="qid", value="score").close()  # writes its own pt_meta.json


NOT_CACHES = [  # (case, how the folder is made, the words of the error after the folder's path)
    ("other files", _other_files, " is not a ListwiseCache (it has no pt_meta.json and no lists.sqlite3) and holds "
                                  "other files (run.txt); give the cache a new or empty folder"),
    ("damaged pt_meta.json", _damaged_description, "/pt_meta.json cannot be read as PyTerrier's description"),
    ("another artifact", _another_artifact, " is not a ListwiseCache: its pt_meta.json names the artifact "
                                            "key_value_cache.sqlite3, not listwise_cache.sqlite3"),
]


@pytest.mark.parametrize("case,make,words", NOT_CACHES, ids=[row[0] for row in NOT_CACHES])
def test_a_folder_that_is_not_a_cache_is_refused_and_left_alone(tmp_path, setenc, case, make, words):
    folder = tmp_path / "folder"
    make(folder)
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    for open_it in (lambda: ListwiseCache(folder, setenc), lambda: ListwiseCache.load(str(folder), scorer=setenc)):
        with pytest.raises(ValueError, match=re.escape(f"{folder}{words}")):
            open_it()
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before


def test_missing_and_empty_folders_and_a_missing_scorer(tmp_path, setenc, entry_points):
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match=f"{missing}: no such folder"):
        ListwiseCache.load(str(missing), scorer=setenc)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"{empty} is not a ListwiseCache: it is empty"):
        ListwiseCache.load(str(empty), scorer=setenc)
    with pytest.raises(ValueError, match=f"No implementation found that supports the artifact at '{empty}'"):
        pt.Artifact.load(str(empty))  # PyTerrier's own error for a folder without a description
    ListwiseCache(tmp_path / "cache", setenc)(candidates(4))
    with pytest.raises(TypeError, match=f"ListwiseCache\\('{tmp_path / 'cache'}'\\) needs the re-ranker whose scores "
                                        "it holds, as scorer="):
        pt.Artifact.load(str(tmp_path / "cache"))


def test_a_cache_of_an_earlier_version_is_loaded_and_described_at_its_first_use(tmp_path, setenc, monkeypatch):
    folder, frame = tmp_path / "cache", candidates()
    fresh = setenc(frame)
    ListwiseCache(folder, setenc)(frame)
    (folder / METADATA).unlink()  # as the caches that versions before the artifact wrote
    cache = ListwiseCache.load(str(folder), scorer=failing(monkeypatch, setenc))
    pd.testing.assert_frame_equal(cache(frame), fresh, check_exact=True)
    assert json.loads((folder / METADATA).read_text())["type"] == TYPE
