"""The README's first Python snippets run as written: the offline one for real (from the repository root, with
``../shared/data``), both checked for undefined names; the online one runs in ``test_pipelines_online.py`` against
ir_datasets datasets registered from the data slice."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import REPO, requires_data


def readme_snippet(marker: str) -> str:
    """The first ```python block of README.md whose code contains ``marker``."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    for code in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        if marker in code:
            return code
    raise AssertionError(f"README.md has no python block with {marker!r}")


ONLINE = "irds:msmarco-passage/trec-dl-2019/judged"
OFFLINE = 'load_benchmark("dl19", data_dir="../shared/data"'


@pytest.mark.parametrize("marker", [ONLINE, OFFLINE], ids=["online", "offline"])
def test_snippet_defines_every_name_it_uses(marker):
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--select", "F",
                           "--stdin-filename", "snippet.py", "-"], input=readme_snippet(marker), text=True,
                          capture_output=True, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr


@requires_data
def test_offline_snippet_runs_as_written(monkeypatch):
    monkeypatch.chdir(REPO)
    printed = []
    exec(compile(readme_snippet(OFFLINE), "README.md", "exec"), {"__name__": "readme", "print": printed.append})
    table = printed[0].set_index("name")
    assert list(table.index) == ["BM25", "BM25 >> Set-Encoder"] and list(table.columns) == ["nDCG@10", "RR(rel=2)@10"]
    # the BM25 row: the first 5 DL19 topics of the data folder's stored run, evaluated with ir_measures directly
    import ir_measures

    from pyterrier_setenc.io import read_qrels, read_rerank, read_topics

    folder = REPO.parent / "shared" / "data" / "trec-dl-2019"
    qids = set(read_topics(folder / "topics.tsv")["qid"].head(5))
    run = read_rerank(folder / "bm25-top100.rerank.jsonl.gz")
    run = run[run["qid"].isin(qids)]
    qrels = read_qrels(folder / "qrels.txt")
    qrels = qrels[qrels["qid"].isin(qids)]
    expected = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], qrels.rename(
        columns={"qid": "query_id", "docno": "doc_id", "label": "relevance"}), run.rename(
        columns={"qid": "query_id", "docno": "doc_id"}))[ir_measures.nDCG @ 10]
    assert table.loc["BM25", "nDCG@10"] == pytest.approx(expected, abs=1e-12)
    assert 0 <= table.loc["BM25 >> Set-Encoder", "nDCG@10"] <= 1
