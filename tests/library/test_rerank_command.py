"""``python -m pyterrier_setenc rerank``: any first-stage run re-ranked from the command line, offline.

Expected values come from independent paths: the re-ranker's frame API on the same candidates (the scores), the
slice's own files read with ``json``/``gzip`` (the first-stage order and the tail), ``ir_measures`` on the written
run (the evaluation table) and, with the full data, the published nDCG@10 of the RankGPT-3.5 DL19 run in
``../shared/data/README.md``."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import ir_measures
import pandas as pd
import pytest

from pyterrier_setenc import SetEncoderReRanker
from pyterrier_setenc.__main__ import main as package_main
from pyterrier_setenc.rerank_command import main

from builders import DATA, REPO, SLICE, read_rerank, requires_data

DL19 = SLICE / "trec-dl-2019"
RERANK = DL19 / "bm25-top100.rerank.jsonl.gz"
DEPTH = 5
QIDS = 4  # the first queries of the slice: enough lists, quick


@pytest.fixture(scope="module")
def slice_files(tmp_path_factory) -> dict[str, Path]:
    """The slice's first QIDS DL19 BM25 lists as a TREC run (lines shuffled, ranks 1-based as written by TREC tools),
    a docs.jsonl.gz, a docs TSV, topics and a rerank.jsonl of the same lists."""
    folder = tmp_path_factory.mktemp("slice")
    frame = read_rerank(RERANK)
    qids = sorted(frame["qid"].unique())[:QIDS]
    frame = frame[frame["qid"].isin(qids)].reset_index(drop=True)
    lines = [f"{r.qid} Q0 {r.docno} {r.rank} {r.score!r} bm25\n" for r in frame.itertuples()]
    (folder / "bm25.run").write_text("".join(lines[::-1]), encoding="utf-8")  # file order must not matter
    texts = dict(zip(frame["docno"], frame["text"]))
    with gzip.open(folder / "docs.jsonl.gz", "wt", encoding="utf-8") as file:
        file.writelines(json.dumps({"docno": d, "text": t}) + "\n" for d, t in texts.items())
    (folder / "docs.tsv").write_text("".join(f"{d}\t{t}\n" for d, t in texts.items()), encoding="utf-8")
    topics = frame.drop_duplicates("qid")
    (folder / "topics.tsv").write_text("".join(f"{q}\t{t}\n" for q, t in zip(topics["qid"], topics["query"])),
                                       encoding="utf-8")
    with gzip.open(RERANK, "rt", encoding="utf-8") as source, gzip.open(folder / "rerank.jsonl.gz", "wt") as target:
        target.writelines(line for line in source if str(json.loads(line)["qid"]) in qids)
    return {"run": folder / "bm25.run", "docs": folder / "docs.jsonl.gz", "tsv": folder / "docs.tsv",
            "topics": folder / "topics.tsv", "rerank": folder / "rerank.jsonl.gz", "frame": frame}


def read_written(path: Path) -> pd.DataFrame:
    rows = [line.split() for line in path.read_text(encoding="utf-8").splitlines()]
    return pd.DataFrame(rows, columns=["qid", "Q0", "docno", "rank", "score", "tag"]).astype(
        {"rank": int, "score": float})


def expected_scores(frame: pd.DataFrame, model: Path, depth: int) -> dict[tuple[str, str], float]:
    """The frame API's scores of each query's first-stage top ``depth``."""
    top = frame.sort_values(["qid", "rank"]).groupby("qid").head(depth)
    scored = SetEncoderReRanker(model, device="cpu", verbose=False)(top[["qid", "query", "docno", "text"]])
    return {(q, d): s for q, d, s in zip(scored["qid"], scored["docno"], scored["score"])}


def check_run(written: pd.DataFrame, frame: pd.DataFrame, scores: dict, depth: int) -> None:
    """The top ``depth`` are the re-ranker's scores in descending order; below them the first stage's order."""
    assert sorted(written["qid"].unique()) == sorted(frame["qid"].unique())
    for qid, rows in written.groupby("qid"):
        first = frame[frame["qid"] == qid].sort_values("rank")["docno"].tolist()
        rows = rows.sort_values("rank")
        assert rows["rank"].tolist() == list(range(1, len(first) + 1))
        top = rows.head(depth)
        assert set(top["docno"]) == set(first[:depth])
        assert top["score"].tolist() == [scores[qid, d] for d in top["docno"]]
        assert top["score"].is_monotonic_decreasing
        assert rows["docno"].tolist()[depth:] == first[depth:]  # the tail, in first-stage order
        assert rows["score"].is_monotonic_decreasing


def test_trec_run_with_docs_and_topics_files(slice_files, set_encoder_path, tmp_path, capsys):
    output = tmp_path / "out" / "setenc.run"
    code = main([str(slice_files["run"]), "--docs", str(slice_files["docs"]), "--topics", str(slice_files["topics"]),
                 "--model", str(set_encoder_path), "--depth", str(DEPTH), "--quiet", "--output", str(output)])
    assert code == 0, capsys.readouterr().err
    written = read_written(output)
    check_run(written, slice_files["frame"], expected_scores(slice_files["frame"], set_encoder_path, DEPTH), DEPTH)
    assert set(written["tag"]) == {set_encoder_path.name}
    err = capsys.readouterr().err
    assert f"read {len(slice_files['frame'])} passages of {QIDS} queries" in err and "wrote" in err


def test_docs_tsv_and_rerank_jsonl_give_the_same_run(slice_files, set_encoder_path, tmp_path):
    outputs = []
    for number, inputs in enumerate([[str(slice_files["run"]), "--docs", str(slice_files["tsv"]), "--topics",
                                      str(slice_files["topics"])], [str(slice_files["rerank"])]]):
        outputs.append(tmp_path / f"{number}.run")
        assert main([*inputs, "--model", str(set_encoder_path), "--depth", str(DEPTH), "--quiet",
                     "--output", str(outputs[-1])]) == 0
    first, second = (read_written(path) for path in outputs)
    top = [run[run["rank"] <= DEPTH].reset_index(drop=True) for run in (first, second)]
    pd.testing.assert_frame_equal(*top)  # the re-ranked part; the tail's scores are each first stage's
    assert first["docno"].tolist() == second["docno"].tolist()


def test_qrels_table_matches_ir_measures_on_the_written_runs(slice_files, set_encoder_path, tmp_path, capsys):
    output = tmp_path / "setenc.run"
    assert main([str(slice_files["rerank"]), "--qrels", str(DL19 / "qrels.txt"), "--model", str(set_encoder_path),
                 "--depth", str(DEPTH), "--quiet", "--output", str(output)]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert table[0] == "| name | nDCG@10 | RR@10 | nDCG@100 |"
    frame = slice_files["frame"]  # the run's queries are evaluated (as trec_eval does without -c)
    qrels = [q for q in ir_measures.read_trec_qrels(str(DL19 / "qrels.txt")) if q.query_id in set(frame["qid"])]
    first = [ir_measures.ScoredDoc(q, d, -float(r)) for q, d, r in zip(frame["qid"], frame["docno"], frame["rank"])]
    measures = [ir_measures.nDCG @ 10, ir_measures.RR @ 10, ir_measures.nDCG @ 100]
    for row, run in zip(table[2:], [first, list(ir_measures.read_trec_run(str(output)))]):
        values = ir_measures.calc_aggregate(measures, qrels, run)
        cells = [cell.strip().rstrip("\u2020") for cell in row.strip("|").split("|")]
        assert [float(cell) for cell in cells[1:]] == [round(values[m], 4) for m in measures], row


def test_the_shipped_set_encoder_is_the_default(slice_files, tmp_path):
    from pyterrier_setenc import embedded

    output = tmp_path / "setenc.run"
    assert main([str(slice_files["rerank"]), "--depth", "2", "--quiet", "--output", str(output)]) == 0
    written = read_written(output)
    check_run(written, slice_files["frame"], expected_scores(slice_files["frame"], embedded.SET_ENCODER, 2), 2)
    assert set(written["tag"]) == {embedded.SET_ENCODER.name}


# --- ir_datasets -----------------------------------------------------------------------------------------------------

IRDS_ID = "setenc-test/rerank-command-slice"


@pytest.fixture(scope="module")
def registered(slice_files, tmp_path_factory):
    """The slice registered in ir_datasets from local files (its own JsonlDocs, TsvQueries and TrecQrels)."""
    import ir_datasets
    from ir_datasets.datasets.base import Dataset
    from ir_datasets.formats import JsonlDocs, TrecQrels, TsvQueries
    from ir_datasets.util import LocalDownload

    work = tmp_path_factory.mktemp("irds")
    with gzip.open(slice_files["docs"], "rt", encoding="utf-8") as source:
        (work / "docs.jsonl").write_text(source.read(), encoding="utf-8")
    corpus = JsonlDocs(LocalDownload(work / "docs.jsonl"), mapping={"doc_id": "docno", "text": "text"},
                       docstore_path=str(work / "docs.pklz4"))
    dataset = Dataset(corpus, TsvQueries(LocalDownload(slice_files["topics"])),
                      TrecQrels(LocalDownload(DL19 / "qrels.txt"), {0: "0", 1: "1", 2: "2", 3: "3"}))
    if IRDS_ID not in ir_datasets.registry:
        ir_datasets.registry.register(IRDS_ID, dataset)
    return IRDS_ID


def test_texts_topics_and_qrels_from_a_registered_ir_datasets_dataset(slice_files, registered, set_encoder_path,
                                                                      tmp_path, capsys, monkeypatch, no_network):
    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path / "home"))
    from_files, from_irds = tmp_path / "files.run", tmp_path / "irds.run"
    common = ["--model", str(set_encoder_path), "--depth", str(DEPTH), "--quiet"]
    assert main([str(slice_files["run"]), "--docs", str(slice_files["docs"]), "--topics", str(slice_files["topics"]),
                 "--qrels", str(DL19 / "qrels.txt"), *common, "--output", str(from_files)]) == 0
    files_table = capsys.readouterr().out
    code = main([str(slice_files["run"]), "--docs", f"irds:{registered}", "--qrels", f"irds:{registered}", *common,
                 "--output", str(from_irds)])
    assert code == 0, capsys.readouterr().err
    assert from_irds.read_text() == from_files.read_text()
    assert capsys.readouterr().out == files_table


def test_an_unknown_dataset_is_named(slice_files, tmp_path, capsys):
    code = main([str(slice_files["run"]), "--docs", "irds:no-such/dataset", "--output", str(tmp_path / "x.run")])
    assert code == 2
    assert "--docs irds:no-such/dataset: ir_datasets has no dataset 'no-such/dataset'" in capsys.readouterr().err


# --- bad input -------------------------------------------------------------------------------------------------------

def bad_case(case: str, files: dict, folder: Path) -> tuple[list[str], str]:
    run, docs, topics = str(files["run"]), str(files["docs"]), str(files["topics"])
    if case == "docno missing from the docs":
        kept = [line for line in Path(files["tsv"]).read_text().splitlines(keepends=True)
                if not line.startswith(files["frame"]["docno"].iloc[0] + "\t")]
        (folder / "docs.tsv").write_text("".join(kept))
        return ([run, "--docs", str(folder / "docs.tsv"), "--topics", topics],
                f"docno {files['frame']['docno'].iloc[0]!r} is not in the docs")
    if case == "qid without topic":
        lines = Path(topics).read_text().splitlines(keepends=True)
        (folder / "topics.tsv").write_text("".join(lines[1:]))
        qid = lines[0].split("\t")[0]
        return ([run, "--docs", docs, "--topics", str(folder / "topics.tsv")], f"qid {qid!r} has no topic")
    if case == "malformed run line":
        lines = Path(run).read_text().splitlines(keepends=True)
        lines[2] = "19335 Q0 123 1\n"
        (folder / "bad.run").write_text("".join(lines))
        return ([str(folder / "bad.run"), "--docs", docs, "--topics", topics], f"{folder / 'bad.run'}, line 3:")
    if case == "docs tsv line without tab":
        (folder / "docs.tsv").write_text("d1\tone\nd2 two\n")
        return ([run, "--docs", str(folder / "docs.tsv"), "--topics", topics], f"{folder / 'docs.tsv'}, line 2:")
    if case == "unknown docs format":
        return [run, "--docs", str(folder / "docs.csv"), "--topics", topics], "--docs"
    if case == "run without docs":
        return [run, "--topics", topics], "pass --docs"
    if case == "run without topics":
        return [run, "--docs", docs], "pass --topics"
    if case == "rerank.jsonl with docs":
        return [str(files["rerank"]), "--docs", docs], "holds its queries and texts"
    if case == "bad measure":
        return [str(files["rerank"]), "--qrels", str(DL19 / "qrels.txt"), "--measure", "nDCG@@"], "--measure 'nDCG@@'"
    if case == "missing qrels file":
        return [str(files["rerank"]), "--qrels", str(folder / "qrels.txt")], f"{folder / 'qrels.txt'} does not exist"
    if case == "bad settings":
        return [str(files["rerank"]), "--int8", "--dtype", "bfloat16"], "--int8"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["docno missing from the docs", "qid without topic", "malformed run line",
                                  "docs tsv line without tab", "unknown docs format", "run without docs",
                                  "run without topics", "rerank.jsonl with docs", "bad measure",
                                  "missing qrels file", "bad settings"])
def test_bad_input_is_named_and_leaves_the_earlier_output(case, slice_files, set_encoder_path, tmp_path, capsys,
                                                          monkeypatch):
    import pyterrier_setenc.settings as settings

    loaded = []
    monkeypatch.setattr(settings.RerankerSettings, "load", lambda self, *a, **k: loaded.append(a))
    arguments, message = bad_case(case, slice_files, tmp_path)
    output = tmp_path / "earlier.run"
    output.write_text("earlier\n")
    code = main([*arguments, "--model", str(set_encoder_path), "--quiet", "--output", str(output)])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    if case == "docno missing from the docs":  # the line named is a line of the run that holds the docno
        number = int(re.search(rf"{re.escape(str(slice_files['run']))}, line (\d+):", err)[1])
        line = slice_files["run"].read_text().splitlines()[number - 1]
        assert line.split()[2] == slice_files["frame"]["docno"].iloc[0]
    assert output.read_text() == "earlier\n" and not loaded  # checked before any model loads
    assert sorted(p.name for p in output.parent.iterdir() if p.name.startswith(".earlier")) == []


def test_an_output_that_is_a_folder_is_refused_before_reading(tmp_path, capsys):
    code = main([str(tmp_path / "no-such.run"), "--output", str(tmp_path)])
    assert code == 2 and f"output {tmp_path} is a folder" in capsys.readouterr().err


# --- the entry points ------------------------------------------------------------------------------------------------

def test_the_package_command_dispatches(slice_files, set_encoder_path, tmp_path, capsys):
    assert package_main(["no-such-command"]) == 2
    assert "unknown command 'no-such-command'" in capsys.readouterr().err
    output = tmp_path / "setenc.run"
    assert package_main(["rerank", str(slice_files["rerank"]), "--model", str(set_encoder_path), "--depth", "1",
                         "--quiet", "--output", str(output)]) == 0
    assert len(output.read_text().splitlines()) == len(slice_files["frame"])


def test_python_m_pyterrier_setenc_rerank_runs_as_a_process(slice_files, set_encoder_path, tmp_path):
    output = tmp_path / "setenc.run"
    done = subprocess.run([sys.executable, "-m", "pyterrier_setenc", "rerank", str(slice_files["rerank"]),
                           "--model", str(set_encoder_path), "--depth", "1", "--output", str(output)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "pyterrier-setenc rerank: wrote" in done.stderr
    assert len(output.read_text().splitlines()) == len(slice_files["frame"])


def test_the_console_script_is_declared():
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["pyterrier-setenc"] == "pyterrier_setenc.__main__:main"


# --- the full data: a published figure -------------------------------------------------------------------------------

@requires_data
def test_a_trec_run_keeps_its_published_figure_below_depth_one(tmp_path, set_encoder_path, capsys):
    """RankGPT-3.5 on the DL19 BM25 top-100 scores nDCG@10 0.6868 (``../shared/data/README.md``). With ``--depth 1``
    each query's first passage is re-ranked alone and the rest follows in the run's order: both rows keep it."""
    folder = DATA / "trec-dl-2019"
    frame = read_rerank(folder / "bm25-top100.rerank.jsonl.gz").drop_duplicates("docno")
    (tmp_path / "docs.tsv").write_text("".join(f"{d}\t{t}\n" for d, t in zip(frame["docno"], frame["text"])))
    code = main([str(folder / "rankgpt35-bm25-top100.run"), "--docs", str(tmp_path / "docs.tsv"), "--topics",
                 str(folder / "topics.tsv"), "--qrels", str(folder / "qrels.txt"), "--model", str(set_encoder_path),
                 "--depth", "1", "--quiet", "--output", str(tmp_path / "out.run")])
    assert code == 0, capsys.readouterr().err
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][2:]
    assert [row.split("|")[2].strip() for row in rows] == ["0.6868", "0.6868"]


# --- the README ------------------------------------------------------------------------------------------------------

def readme_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return text.split("## Re-rank your own run\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_commands_parse_and_its_python_call_runs(monkeypatch):
    import shlex

    from pyterrier_setenc.rerank_command import build_parser

    section = readme_section()
    commands = re.findall(r"^pyterrier-setenc rerank (.*)$", section, flags=re.M)
    assert len(commands) == 3
    for command in commands:
        build_parser().parse_args(shlex.split(command))  # every option exists (argparse exits otherwise)
    code = re.search(r"```python\n(.*?)```", section, flags=re.S)[1]
    printed = []
    exec(compile(code, "README.md", "exec"), {"__name__": "readme", "print": printed.append})
    assert [r["corpus_id"] for r in printed[0]] == [1, 0]  # by hand: the passage about fleas first


# --- the manifest ----------------------------------------------------------------------------------------------------

def test_the_manifest_records_model_settings_evaluation_and_environment(slice_files, set_encoder_path, tmp_path,
                                                                        capsys):
    from importlib import metadata

    import torch

    output = tmp_path / "setenc.run"
    assert main([str(slice_files["rerank"]), "--qrels", str(DL19 / "qrels.txt"), "--model", str(set_encoder_path),
                 "--depth", "2", "--batch-size", "16", "--quiet", "--output", str(output)]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][2:]
    manifest = json.loads((tmp_path / "setenc.run.manifest.json").read_text())
    assert manifest["model"]["source"] == str(set_encoder_path) and manifest["model"]["revision"] is None
    assert manifest["model"]["cache_key"] == SetEncoderReRanker(set_encoder_path, device="cpu").cache_key()
    assert manifest["settings"]["batch_size"] == 16 and manifest["depth"] == 2
    assert manifest["reranked_passages"] == 2 * QIDS and manifest["lines"] == len(slice_files["frame"])
    for row in printed:  # the printed table, in full precision
        name, value = row.split("|")[1].strip(), row.split("|")[2].strip().rstrip("\u2020")
        assert round(manifest["evaluation"][name]["nDCG@10"], 4) == float(value)
    env = manifest["environment"]
    assert env["packages"]["torch"] == metadata.version("torch") and env["torch_threads"] == torch.get_num_threads()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        assert env["cpu_model"] == names[0]
    assert env["device"] == "cpu" and env["torch_build"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    resources = manifest["resources"]
    assert 0 < resources["rerank"]["wall_time_s"] <= resources["total_wall_time_s"]
    assert resources["rerank"]["peak_memory_mib"] > 50  # at least torch and the model are resident


def test_a_docno_missing_from_the_dataset_is_named(slice_files, registered, tmp_path, capsys, monkeypatch,
                                                   no_network):
    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path / "home"))
    qid = slice_files["frame"]["qid"].iloc[0]
    run = tmp_path / "with-unknown.run"
    run.write_text(slice_files["run"].read_text() + f"{qid} Q0 no-such-docno 0 1000.0 bm25\n")
    code = main([str(run), "--docs", f"irds:{registered}", "--depth", "2", "--output", str(tmp_path / "x.run")])
    err = capsys.readouterr().err
    lines = run.read_text().splitlines()
    assert code == 2 and f"{run}, line {len(lines)}: docno 'no-such-docno' is not in the docs" in err, err
