"""The README's first Python snippets run as written: the offline one for real (from the repository root, with
``../shared/data``), both checked for undefined names; the online one runs in
``tests/pipelines/test_pipelines_online.py`` against ir_datasets datasets registered from the data slice."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from builders import OFFLINE, ONLINE, REPO, readme_snippet, requires_data


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


def test_the_first_lines_are_the_two_commands_of_a_fresh_machine():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    first = re.search(r"```(\w*)\n(.*?)```", text, flags=re.S)
    assert first.group(1) == "bash" and text.index(first.group(0)) < text.index("\n\n", text.index("# ")) + 3
    lines = [line.split("#")[0].strip() for line in first.group(2).strip().splitlines()]
    assert lines == ["bash scripts/install && .venv/bin/python -m pipelines.dl19 --data-dir ../shared/data",
                     "bash scripts/install && .venv/bin/python -m pytest -q"]


def test_the_readme_is_a_short_read_with_its_sections_and_working_links():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.split()) < 2000  # minutes, not an hour: the long figures live in benchmarks/README.md and docs/
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    for section in ("In a notebook", "Install", "Models", "Key numbers", "Faithfulness", "Errors and guarantees"):
        assert section in headings, headings
    for target in re.findall(r"\]\(([^)#]+)\)", text):  # every relative link and image is there
        if "://" not in target:
            assert (REPO / target).exists(), target
    for module in set(re.findall(r"python -m ([\w.]+)", text)):  # every command it names exists
        if module != "pytest" and module.islower():  # not a placeholder such as pipelines.NAME
            path = REPO / module.replace(".", "/")
            assert path.with_suffix(".py").is_file() or (path / "__main__.py").is_file(), module
    assert 'pip install "pyterrier-setenc' not in text  # not on PyPI: installed from the repository


def test_the_key_numbers_are_those_of_the_model_cards():
    """The effectiveness table of the README against the results table of the shipped models' cards (where the
    main job's figures were first recorded)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text[text.index("| name | DL19 | DL20 |"):]
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:4]]
            for line in table.splitlines()[2:6]}
    card = (REPO / "pyterrier_setenc" / "models" / "set-encoder-minilm-l6" / "README.md").read_text(encoding="utf-8")
    card_rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:]] for line in card.splitlines()
                 if line.strip().startswith("|") and "nDCG" not in line and "---" not in line}
    pairs = {"BM25": "BM25", "shipped Set-Encoder": "set-encoder-minilm-l6", "shipped mono twin": "mono-minilm-l6",
             "teacher (all-MiniLM-L6-v2 bi-encoder)": "teacher (all-MiniLM-L6-v2 bi-encoder)"}
    for ours, theirs in pairs.items():
        dl19, dl20 = rows[ours]
        assert (dl19, dl20) == (card_rows[theirs][0], card_rows[theirs][2]), ours
