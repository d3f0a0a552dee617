"""The benchmark's pieces: the FLOP count against a hand computation, a worker run whose scores equal in-process
scores, the numerics section on two tiny checkpoints, and the peer section (MonoReRanker against
sentence-transformers) on a tiny checkpoint, whose scores equal transformers' own."""

import json
import subprocess
import sys

import pytest
import torch

from benchmarks.checkpoint import minilm_cross_encoder
from benchmarks.flops import model_flops
from benchmarks.inference import PEER, PEER_OURS, RERANK, main
from pyterrier_setenc import CrossEncoder
from pyterrier_setenc.io import candidate_lists, read_rerank

from agreement import check_scores, depth
from builders import FIXTURES, REPO, SLICE


def test_flops_by_hand():
    config = {"hidden_size": 4, "intermediate_size": 8, "num_hidden_layers": 2}
    # per token and layer: 2 * (4*4*4 + 2*4*8) = 256; attention of a sequence of length L with p partners:
    # 4 * 4 * L * (L + p)
    assert model_flops(config, [3], listwise=False) == 2 * (3 * 256 + 16 * 3 * 3)
    assert model_flops(config, [3, 2], listwise=True) == 2 * (5 * 256 + 16 * 3 * 4 + 16 * 2 * 3)
    assert model_flops(config, [3, 2], listwise=False) == 2 * (5 * 256 + 16 * 3 * 3 + 16 * 2 * 2)


def test_interleaved_worker_scores_equal_in_process_scores(tmp_path, dl19):
    queries = dl19["query"].unique()[:2].tolist()
    lists = [dl19[dl19["query"] == q]["text"].tolist()[:30] for q in queries]
    (tmp_path / "lists.json").write_text(json.dumps({"queries": queries, "lists": lists}))
    subprocess.run([sys.executable, "-m", "benchmarks.worker", str(FIXTURES / "setenc-int"),
                    str(tmp_path / "lists.json"), str(tmp_path / "out.json"),
                    "--systems", "set-encoder,mono,set-encoder-int8", "--threads", "1"], cwd=REPO, check=True)
    report = json.loads((tmp_path / "out.json").read_text())
    model = CrossEncoder.from_pretrained(FIXTURES / "setenc-int")
    for system, listwise in (("set-encoder", True), ("mono", False)):
        model.listwise = listwise
        for query, docs, scores in zip(queries, lists, report["runs"][system]["scores"]):
            check_scores(scores, model.score_lists([query], [docs])[0], depth(model), what=system)
        assert len(report["runs"][system]["seconds"]) == 2
    assert report["runs"]["set-encoder-int8"]["scores"] != report["runs"]["set-encoder"]["scores"]
    assert report["peak_rss_gib"] > 0 and report["matmul_gflops"] > 0


def test_peer_section_on_a_tiny_cross_encoder(tmp_path, capsys):
    """The peer section's checkpoint (built once, in Hugging Face's format) and score comparison on a tiny BERT:
    both peers' scores equal the logits of transformers' BertForSequenceClassification (the golden values), and the
    section reports them equal. No timing is checked."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    shape = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    folder = minilm_cross_encoder(tmp_path, shape=shape)
    assert minilm_cross_encoder(tmp_path, shape=shape) == folder
    main(["--data-dir", str(SLICE), "--workdir", str(tmp_path), "--queries", "2", "--threads", "1", "--sections",
          "peer", "--peer-model", str(folder), "--peer-repeats", "2", "--peer-batch-size", "16",
          "--out", str(tmp_path / "figures.json")])
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert figures["peer"]["scores_equal"] and figures["peer"]["max_score_difference"] <= 1e-5
    assert "passages/s, MonoReRanker / sentence-transformers CrossEncoder" in capsys.readouterr().out
    queries, ranked, texts = candidate_lists(read_rerank(SLICE / RERANK))
    model = BertForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for number, qid in enumerate(list(queries)[:2]):
        docs = [texts[docno] for docno in ranked[qid]]
        encoded = tokenizer([queries[qid]] * len(docs), docs, truncation=True, max_length=512, padding=True,
                            return_tensors="pt")
        with torch.no_grad():
            golden = model(**encoded).logits[:, 0]
        for system in (PEER_OURS, PEER):
            scores = torch.tensor(figures[system]["scores"][number])
            check_scores(scores, golden, layers=shape["num_hidden_layers"], what=system)
            assert len(figures[system]["pass_seconds"]) == len(figures[system]["pass_cpu_seconds"]) == 2


def test_numerics_section_reports_each_model(tmp_path, capsys):
    """The numerics section on two checkpoints (repeated --numerics-model): each model's float32 and int8 figures
    are kept apart, the float32 scores equal in-process scores, and the printed Kendall tau is scipy's on the
    reported scores. No timing is checked."""
    from scipy.stats import kendalltau

    models = [FIXTURES / "setenc-int", FIXTURES / "setenc-noint"]
    main(["--data-dir", str(SLICE), "--workdir", str(tmp_path), "--queries", "1", "--threads", "1", "--sections",
          "numerics", *[arg for model in models for arg in ("--numerics-model", str(model))],
          "--out", str(tmp_path / "figures.json")])
    figures = json.loads((tmp_path / "figures.json").read_text())
    printed = capsys.readouterr().out
    assert figures["checkpoint"] is None  # the random ELECTRA-base model was not needed
    queries, ranked, texts = candidate_lists(read_rerank(SLICE / RERANK))
    qid = next(iter(queries))
    docs = [texts[docno] for docno in ranked[qid]]
    for model in models:
        exact, quantized = figures[f"numerics {model.name}: float32"], figures[f"numerics {model.name}: int8"]
        in_process = CrossEncoder.from_pretrained(model).score_lists([queries[qid]], [docs])[0]
        check_scores(exact["scores"][0], in_process, depth(CrossEncoder.from_pretrained(model)), what=model.name)
        assert quantized["scores"] != exact["scores"]
        tau = kendalltau(exact["scores"][0], quantized["scores"][0])[0]
        table = printed[printed.index(f"({model.name}, Set-Encoder"):]
        assert f"| int8 | {quantized['s_per_query']:.2f} |" in table and f"| {tau:.4f} |" in table.split("\n\n")[1]


def test_scaling_section_beyond_dl19_takes_dl20_passages(tmp_path, capsys):
    """The scaling section on a tiny checkpoint (--scaling-model) with a list longer than the DL19 slice's 1,000
    distinct passages: the pool goes on with DL20's passages (here three written by the test, one a repeat of a
    DL19 docno, which is not taken twice), and a list that exceeds both is refused by name. No timing is
    checked."""
    import gzip

    import pytest

    from benchmarks.inference import MORE_PASSAGES, Bench, passage_pool

    data = tmp_path / "data"
    (data / RERANK.parent).mkdir(parents=True)
    (data / RERANK).write_bytes((SLICE / RERANK).read_bytes())
    queries, ranked, texts = candidate_lists(read_rerank(SLICE / RERANK))
    repeated = next(iter(texts))
    extra = [("d20-a", "first extra passage"), (repeated, texts[repeated]), ("d20-b", "second extra passage")]
    (data / MORE_PASSAGES.parent).mkdir(parents=True)
    with gzip.open(data / MORE_PASSAGES, "wt", encoding="utf-8") as file:
        for rank, (docno, text) in enumerate(extra, 1):
            file.write(json.dumps({"qid": "q20", "query": "an extra query", "docno": docno, "text": text,
                                   "rank": rank, "score": -rank}) + "\n")
    size = len(texts) + 2
    bench = Bench(None, tmp_path, 1, None, queries, ranked, texts, list(queries)[:1])
    pool = passage_pool(bench, data, size)
    assert len(pool) == size == len(set(pool))
    assert pool[-2:] == ["first extra passage", "second extra passage"]
    assert pool[:len(ranked[bench.qids[0]])] == [texts[d] for d in ranked[bench.qids[0]]]
    with pytest.raises(ValueError, match=f"only {size} distinct passages"):
        passage_pool(bench, data, size + 1)

    main(["--data-dir", str(data), "--workdir", str(tmp_path), "--queries", "1", "--threads", "1", "--sections",
          "scaling", "--scaling", f"3,{size}", "--scaling-model", str(FIXTURES / "setenc-int"),
          "--out", str(tmp_path / "figures.json")])
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert figures["checkpoint"] is None  # the random ELECTRA-base model was not needed
    assert [(row["list"], row["system"]) for row in figures["scaling"]] == \
        [("3", "set-encoder"), ("3", "mono"), (str(size), "set-encoder"), (str(size), "mono")]
    assert all(row["model"] == str(FIXTURES / "setenc-int") for row in figures["scaling"])
    assert f"| {size} |" in capsys.readouterr().out


def test_precision_benchmark_on_a_tiny_checkpoint(tmp_path, capsys, fixture_model):
    """``benchmarks.precision`` on one DL19 list: float32 against itself is exact, bfloat16 and int8 are not, and the
    printed nDCG@10 is ir_measures' on the scores the benchmark reports. No timing is checked."""
    import ir_measures

    from benchmarks.precision import main as precision_main
    from pyterrier_setenc.io import read_qrels

    threads = torch.get_num_threads()
    try:
        precision_main(["--data-dir", str(SLICE), "--collections", "trec-dl-2019", "--queries", "1", "--threads", "1",
                        "--model", str(FIXTURES / "setenc-int"), "--dtypes", "bfloat16,int8", "--out",
                        str(tmp_path / "figures.json")])
    finally:
        torch.set_num_threads(threads)  # the command sets the process's threads; later tests run with the default
    figures = json.loads((tmp_path / "figures.json").read_text())
    exact, half, int8 = figures["models"]["setenc-int"]
    assert exact["dtype"] == "float32" and exact["mean_tau"] == 1.0 and exact["max_score_change"] == 0
    assert half["dtype"] == "bfloat16" and 0 < half["max_score_change"] < 1 and half["speed_up"] > 0
    assert int8["dtype"] == "int8" and 0 < int8["max_score_change"] < 1 and int8["speed_up"] > 0
    assert "torch capability" in figures["machine"] and figures["machine"] in capsys.readouterr().out
    queries, ranked, texts = candidate_lists(read_rerank(SLICE / RERANK))
    qid = next(iter(queries))
    scores = fixture_model("setenc-int").score_lists(
        [queries[qid]], [[texts[d] for d in ranked[qid]]])[0].tolist()
    qrels = read_qrels(SLICE / "trec-dl-2019" / "qrels.txt")
    judged = [ir_measures.Qrel(r.qid, r.docno, int(r.label)) for r in qrels.itertuples() if r.qid == qid]
    run = [ir_measures.ScoredDoc(qid, d, s) for d, s in zip(ranked[qid], scores)]
    expected = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], judged, run)[ir_measures.nDCG @ 10]
    assert abs(exact["ndcg10 trec-dl-2019"] - expected) < 1e-9


def test_gpu_check_runs_its_table_on_the_cpu(tmp_path, capsys):
    """``benchmarks.gpu`` with ``--device cpu`` on a tiny checkpoint (the script's logic; the GPU figures need a
    GPU): every system of this package is timed, bfloat16 agrees with float32 by Kendall tau, float32 with itself
    exactly. No timing is checked."""
    from benchmarks.gpu import main as gpu_main

    gpu_main(["--data-dir", str(SLICE), "--device", "cpu", "--queries", "1", "--memory-sizes", "5",
              "--checkpoint", str(FIXTURES / "setenc-int"), "--workdir", str(tmp_path),
              "--out", str(tmp_path / "figures.json")])
    figures = json.loads((tmp_path / "figures.json").read_text())
    systems = figures["systems"]
    assert set(systems) == {"set-encoder", "set-encoder-bf16", "set-encoder-fp16", "mono"}
    assert systems["set-encoder"]["tau_to_float32"] == 1.0 and systems["set-encoder-bf16"]["tau_to_float32"] > 0.5
    assert systems["set-encoder-bf16"]["scores"] != systems["set-encoder"]["scores"]
    assert [m["passages"] for m in figures["memory"]] == [5, 5]
    assert "Peak GPU memory" in capsys.readouterr().out


@pytest.mark.parametrize("arguments, message", [(["--dtypes", "bfloat16,int4"], "--dtypes: unknown int4"),
                                                (["--dtypes", "int8", "--device", "cuda"], "runs on the CPU only")])
def test_precision_benchmark_refuses_what_it_cannot_measure(arguments, message, capsys):
    from benchmarks.precision import main as precision_main

    with pytest.raises(SystemExit):
        precision_main(["--data-dir", str(SLICE), *arguments])
    assert message in capsys.readouterr().err
