"""Inference speed and memory, side by side in one run: this package's Set-Encoder, the same backbone as a pointwise
cross-encoder (mono), and lightning-ir 0.0.6, on TREC DL 2019 BM25 top-100 lists with a random-weight Set-Encoder
of ELECTRA-base dimensions (query length 32, passage length 256); and this package's MonoReRanker against
sentence-transformers' CrossEncoder on a Hugging Face cross-encoder of MiniLM-L6 shape.

    python -m benchmarks.inference --data-dir ../shared/data --reference-python /path/to/refvenv/bin/python

Every timed run is a process of its own (:mod:`benchmarks.worker`, :mod:`benchmarks.lightning_ir_worker`), so
peak memory is per run. Printed: seconds per query, passages/s, the FLOP rate on real tokens next to the matrix
product rate measured in the same process, peak memory, the agreement of the scores with lightning-ir's, int8
(and optionally bf16) numerics against float32, a scaling table over list lengths, and the peer comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from benchmarks.checkpoint import electra_base_set_encoder, minilm_cross_encoder
from benchmarks.flops import model_flops
from benchmarks.worker import POINTWISE
from pyterrier_setenc.tolerance import score_tolerance

RERANK = Path("trec-dl-2019") / "bm25-top100.rerank.jsonl.gz"
MORE_PASSAGES = Path("trec-dl-2020") / "bm25-top100.rerank.jsonl.gz"  # lists longer than DL19's distinct passages
REPO = Path(__file__).resolve().parent.parent


def run_worker(command: list[str], checkpoint: Path, queries: list[str], lists: list[list[str]],
               workdir: Path) -> dict:
    """Runs one timed worker process on the lists and returns its JSON report."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        data, out = Path(tmp) / "lists.json", Path(tmp) / "out.json"
        data.write_text(json.dumps({"queries": queries, "lists": lists}), encoding="utf-8")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
        result = subprocess.run([*command, str(checkpoint), str(data), str(out)], cwd=REPO, env=env,
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
        return json.loads(out.read_text(encoding="utf-8"))


def max_difference(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for sa, sb in zip(a, b) for x, y in zip(sa, sb))


def mean_kendall_tau(a: list[list[float]], b: list[list[float]]) -> float:
    from scipy.stats import kendalltau

    return statistics.fmean(kendalltau(sa, sb)[0] for sa, sb in zip(a, b))


MACHINE = ""  # what the figures are measured on (benchmarks.machine.describe), set by main


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n{title}\nMachine: {MACHINE}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |", flush=True)


@dataclass
class Bench:
    """What every section shares: the checkpoint, the DL19 lists, how to start the workers, the figures so far."""

    checkpoint: Path | None  # the ELECTRA-base Set-Encoder (None when only the peer section runs)
    workdir: Path
    threads: int
    reference_python: str | None
    queries: dict[str, str]
    ranked: dict[str, list[str]]
    texts: dict[str, str]
    qids: list[str]
    results: dict = field(default_factory=dict)
    _models: dict = field(default_factory=dict)

    @cached_property
    def query_texts(self) -> list[str]:
        return [self.queries[q] for q in self.qids]

    @cached_property
    def lists(self) -> list[list[str]]:
        return [[self.texts[d] for d in self.ranked[q]] for q in self.qids]

    def ours(self, systems: str) -> list[str]:
        return [sys.executable, "-m", "benchmarks.worker", "--threads", str(self.threads), "--systems", systems]

    def reference(self) -> list[str] | None:
        if not self.reference_python:
            return None
        return [self.reference_python, str(REPO / "benchmarks" / "lightning_ir_worker.py"), "--threads",
                str(self.threads)]

    def model_facts(self, model: Path, max_length: int | None = None) -> tuple:
        """The model's tokenizer (cutting pairs at ``max_length`` tokens, default the checkpoint's) and
        configuration, read once."""
        if (model, max_length) not in self._models:
            from pyterrier_setenc.model import CrossEncoder

            self._models[model, max_length] = (
                CrossEncoder.from_pretrained(model, max_length=max_length).tokenizer,
                json.loads((model / "config.json").read_text(encoding="utf-8")))
        return self._models[model, max_length]

    def lengths(self, model: Path, query: str, docs: list[str], max_length: int | None = None) -> list[int]:
        """Token counts of the pairs, with the model's own tokenizer."""
        return [len(ids) for ids in self.model_facts(model, max_length)[0]([query] * len(docs), docs).input_ids]

    def timed(self, command: list[str], names: dict[str, str], model: Path | None = None,
              max_length: int | None = None) -> dict[str, dict]:
        """Times ``command`` on the DL19 lists; ``names`` maps the worker's systems to row names. Seconds, rates,
        memory and scores per row (FLOPs counted for pairs cut at ``max_length`` tokens)."""
        model = model or self.checkpoint
        if model is None:
            raise ValueError("no model to time: give one, or build the checkpoint first")
        print(f"timing {', '.join(names.values())} on {len(self.qids)} queries ...", file=sys.stderr, flush=True)
        report = run_worker(command, model, self.query_texts, self.lists, self.workdir)
        config = self.model_facts(model, max_length)[1]
        lengths = [self.lengths(model, q, docs, max_length) for q, docs in zip(self.query_texts, self.lists)]
        for system, name in names.items():
            run = report["runs"][system]
            flops = sum(model_flops(config, list_lengths, system not in POINTWISE) for list_lengths in lengths)
            total = sum(run["seconds"])
            rate = flops / total / 1e9
            self.results[name] = {
                "s_per_query": total / len(self.qids), "passages_per_s": sum(map(len, self.lists)) / total,
                "gflops": rate, "matmul_gflops": report["matmul_gflops"],
                "matmul_share": rate / report["matmul_gflops"], "peak_rss_gib": report["peak_rss_gib"],
                "rss_loaded_gib": report["rss_loaded_gib"], "pass_seconds": run["pass_seconds"],
                "pass_cpu_seconds": run["pass_cpu_seconds"], "scores": run["scores"]}
        return {name: self.results[name] for name in names.values()}


OURS, MONO, REFERENCE = "set-encoder (ours)", "mono (ours, same backbone)", "set-encoder (lightning-ir 0.0.6)"


def compare_systems(bench: Bench) -> None:
    """Ours (Set-Encoder) and ours (mono, same backbone), interleaved in one process, then lightning-ir: speed, FLOP
    rate, memory, agreement."""
    systems = bench.timed(bench.ours("set-encoder,mono"), {"set-encoder": OURS, "mono": MONO})
    reference = bench.reference()
    if reference:
        systems.update(bench.timed(reference, {"lightning-ir": REFERENCE}))
    rows = []
    for name, figures in systems.items():
        agreement = "" if not reference or name != OURS else \
            f"{max_difference(figures['scores'], systems[REFERENCE]['scores']):.1e}"
        rows.append([name, f"{figures['s_per_query']:.2f}", f"{figures['passages_per_s']:.2f}",
                     f"{figures['gflops']:.0f}", f"{figures['matmul_gflops']:.0f}",
                     f"{100 * figures['matmul_share']:.0f}%", f"{figures['peak_rss_gib']:.2f}", agreement])
    passages = sum(map(len, bench.lists))
    print_table(f"DL19 BM25 top-100, first {len(bench.qids)} queries ({passages} passages), ELECTRA-base "
                f"dimensions, {bench.threads} threads, float32 (ours: both systems in one process, interleaved)",
                ["system", "s/query", "passages/s", "GFLOP/s on real tokens", "matmul GFLOP/s (same process)",
                 "share of matmul", "peak RSS GiB", "max |score diff| vs lightning-ir"], rows)
    print(f"\nSet-Encoder time / mono time: {systems[OURS]['s_per_query'] / systems[MONO]['s_per_query']:.3f}")
    if reference:
        ratio = systems[OURS]["passages_per_s"] / systems[REFERENCE]["passages_per_s"]
        print(f"Set-Encoder passages/s, ours / lightning-ir: {ratio:.2f}")


def compare_numerics(bench: Bench, kinds: list[str], model: Path) -> None:
    """int8 / bf16 against float32 on the same lists, interleaved in one process: speed-up, largest score
    difference, Kendall tau of the rankings. The figures are kept as ``numerics MODEL: KIND``."""
    prefix = f"numerics {model.name}: "
    names = {"set-encoder": prefix + "float32", **{f"set-encoder-{kind}": prefix + kind for kind in kinds}}
    figures = bench.timed(bench.ours(",".join(names)), names, model)
    baseline = figures.pop(prefix + "float32")
    rows = [[name.removeprefix(prefix), f"{run['s_per_query']:.2f}",
             f"{baseline['s_per_query'] / run['s_per_query']:.2f}x",
             f"{max_difference(run['scores'], baseline['scores']):.3g}",
             f"{mean_kendall_tau(run['scores'], baseline['scores']):.4f}"] for name, run in figures.items()]
    spread = statistics.fmean(statistics.pstdev(scores) for scores in baseline["scores"])
    print_table(f"Faster numerics against float32 ({model.name}, Set-Encoder, first {len(bench.qids)} queries, "
                f"interleaved in one process; float32 s/query {baseline['s_per_query']:.2f}; the float32 scores of "
                f"a list have a standard deviation of {spread:.3g} on average)",
                ["numerics", "s/query", "speed-up vs float32", "max |score diff|", "mean Kendall tau"], rows)


def passage_pool(bench: Bench, data_dir: Path, size: int) -> list[str]:
    """At least ``size`` distinct passages (by docno): the first DL19 query's candidates, then the other DL19
    queries', then, where those are too few, DL20's."""
    texts = bench.texts
    docnos = dict.fromkeys(d for q in [bench.qids[0], *bench.ranked] for d in bench.ranked[q])
    if size > len(docnos) and (data_dir / MORE_PASSAGES).exists():
        from pyterrier_setenc.io import candidate_lists, read_rerank

        _, ranked, more = candidate_lists(read_rerank(data_dir / MORE_PASSAGES))
        docnos.update(dict.fromkeys(d for docs in ranked.values() for d in docs))
        texts = {**more, **texts}
    if size > len(docnos):
        raise ValueError(f"only {len(docnos)} distinct passages in the DL19 and DL20 lists, {size} asked for")
    return [texts[d] for d in docnos]


def scaling(bench: Bench, data_dir: Path, model: Path, sizes: list[int], full_length: bool) -> None:
    """One list of n passages of ``model`` (the first ``n`` of :func:`passage_pool`), each system in a process of
    its own: seconds and peak memory."""
    pool = passage_pool(bench, data_dir, max([*sizes, 4000 if full_length else 0]))
    sets = [(str(n), pool[:n]) for n in sizes]
    if full_length:  # four passages joined, so that each is cut at the passage length (256 tokens)
        sets.append(("1000 x 256 tokens", [" ".join(pool[i:i + 4]) for i in range(0, 4000, 4)]))
    query = bench.query_texts[0]
    rows = []
    for label, docs in sets:
        row = [label]
        for system, command in (("set-encoder", bench.ours("set-encoder")), ("mono", bench.ours("mono")),
                                ("lightning-ir", bench.reference())):
            if command is None or (system == "lightning-ir" and (len(docs) > 100 or model != bench.checkpoint)) or \
                    (system == "mono" and label.endswith("tokens")):
                row += ["", ""]
                continue
            print(f"timing {system} on one list of {label} passages ...", file=sys.stderr, flush=True)
            report = run_worker(command, model, [query], [docs], bench.workdir)
            seconds = report["runs"][system]["seconds"][0]
            bench.results.setdefault("scaling", []).append({
                "model": str(model), "list": label, "system": system, "tokens": sum(bench.lengths(model, query, docs)),
                "seconds": seconds, "peak_rss_gib": report["peak_rss_gib"],
                "rss_loaded_gib": report["rss_loaded_gib"]})
            row += [f"{seconds:.2f}",
                    f"{report['peak_rss_gib']:.2f} (+{report['peak_rss_gib'] - report['rss_loaded_gib']:.2f})"]
        rows.append(row)
    print_table(f"One list of n passages ({model.name}; DL19 passages, then DL20 ones; query of the first topic): "
                "seconds, peak RSS GiB while scoring (+ above the loaded model)",
                ["n", "set-encoder s", "set-encoder RSS", "mono s", "mono RSS", "lightning-ir s", "lightning-ir RSS"],
                rows)


PEER_OURS, PEER = "MonoReRanker (ours)", "sentence-transformers CrossEncoder"


def compare_peer(bench: Bench, model: Path, batch_size: int, max_length: int, repeats: int) -> bool:
    """This package's MonoReRanker and sentence-transformers' ``CrossEncoder.predict`` on the same Hugging Face
    cross-encoder checkpoint and lists, interleaved in one process, best of ``repeats`` passes: speed, FLOP rate and
    the largest score difference. True when the scores are equal within float32 rounding
    (:func:`pyterrier_setenc.tolerance.score_tolerance`)."""
    options = ["--repeats", str(repeats), "--batch-size", str(batch_size), "--max-length", str(max_length)]
    figures = bench.timed([*bench.ours("mono-reranker,st-cross-encoder"), *options],
                          {"mono-reranker": PEER_OURS, "st-cross-encoder": PEER}, model, max_length)
    rows = [[name, f"{run['s_per_query']:.2f}", f"{run['passages_per_s']:.2f}", f"{run['gflops']:.0f}",
             f"{run['matmul_gflops']:.0f}", f"{100 * run['matmul_share']:.0f}%",
             " ".join(f"{seconds:.2f}" for seconds in run["pass_seconds"]),
             " ".join(f"{seconds:.2f}" for seconds in run["pass_cpu_seconds"])] for name, run in figures.items()]
    passages = sum(map(len, bench.lists))
    print_table(f"Peer: a Hugging Face BertForSequenceClassification ({model.name}), DL19 BM25 top-100, first "
                f"{len(bench.qids)} queries ({passages} passages), {bench.threads} threads, float32, {batch_size} "
                f"pairs per forward pass, pairs cut at {max_length} tokens, both in one process, interleaved, best of "
                f"{repeats} passes",
                ["system", "s/query", "passages/s", "GFLOP/s on real tokens", "matmul GFLOP/s (same process)",
                 "share of matmul", "seconds of each pass", "CPU seconds of each pass (all threads)"], rows)
    ratio = figures[PEER_OURS]["passages_per_s"] / figures[PEER]["passages_per_s"]
    cpu_ratio = min(figures[PEER]["pass_cpu_seconds"]) / min(figures[PEER_OURS]["pass_cpu_seconds"])
    difference = max_difference(figures[PEER_OURS]["scores"], figures[PEER]["scores"])
    scores = [score for run in (PEER_OURS, PEER) for scores in figures[run]["scores"] for score in scores]
    tolerance = score_tolerance(scores, bench.model_facts(model, max_length)[1]["num_hidden_layers"])
    equal = difference <= tolerance
    spread = statistics.fmean(statistics.pstdev(scores) for scores in figures[PEER]["scores"])
    bench.results["peer"] = {"checkpoint": str(model), "batch_size": batch_size, "max_length": max_length,
                             "repeats": repeats, "ratio": ratio, "cpu_ratio": cpu_ratio,
                             "max_score_difference": difference, "tolerance": tolerance,
                             "scores_equal": equal}
    print(f"\npassages/s, MonoReRanker / sentence-transformers CrossEncoder: {ratio:.2f} (by the fewest CPU "
          f"seconds of a pass: {cpu_ratio:.2f})")
    print(f"max |score diff|: {difference:.1e} ({'equal' if equal else 'NOT EQUAL'} within float32's "
          f"{tolerance:.1e}; the scores of a list have a standard deviation of {spread:.3g} on average)")
    return equal


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("SETENC_DATA_DIR", REPO.parent / "shared" / "data")))
    parser.add_argument("--queries", type=int, default=5, help="DL19 queries timed per system (default 5)")
    parser.add_argument("--reference-python", default=os.environ.get("SETENC_REFERENCE_PYTHON"),
                        help="a Python with lightning-ir 0.0.6; without it the reference is left out")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "pyterrier-setenc-bench",
                        help="where the random checkpoint is built once and kept")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sections", default="systems,numerics,scaling,peer",
                        help="which of systems, numerics, scaling, peer to run (comma-separated)")
    parser.add_argument("--numerics", default="int8", help="comma-separated of int8, bf16 and fp16")
    parser.add_argument("--numerics-model", type=Path, action="append", default=None,
                        help="a Set-Encoder checkpoint folder for the numerics section, repeat for several (default: "
                             "the random ELECTRA-base one, for speed, and the shipped trained one, whose scores "
                             "spread like the published models')")
    parser.add_argument("--scaling", default="10,100,1000",
                        help="list lengths of the scaling section (beyond DL19's 4,297 distinct passages DL20's "
                             "are added)")
    parser.add_argument("--scaling-model", type=Path, default=None,
                        help="a checkpoint folder for the scaling section (default: the random ELECTRA-base one; "
                             "lightning-ir runs only on that)")
    parser.add_argument("--full-length", action="store_true",
                        help="scaling also on one set of 1,000 passages cut at 256 tokens each (about 10 minutes)")
    parser.add_argument("--peer-model", type=Path, default=None,
                        help="a Hugging Face cross-encoder folder for the peer section (default: one of the shape of "
                             "cross-encoder/ms-marco-MiniLM-L-6-v2, built into --workdir)")
    parser.add_argument("--peer-batch-size", type=int, default=32,
                        help="pairs per forward pass of both peers (default 32, sentence-transformers' default)")
    parser.add_argument("--peer-max-length", type=int, default=512, help="tokens per pair of both peers")
    parser.add_argument("--peer-repeats", type=int, default=3, help="passes of the peer section; the best is kept")
    parser.add_argument("--out", type=Path, help="also write all figures as JSON")
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    unknown = sorted(sections - {"systems", "numerics", "scaling", "peer"})
    if unknown:
        parser.error(f"--sections: unknown {unknown}; known: systems, numerics, scaling, peer")

    from benchmarks.machine import describe
    from pyterrier_setenc import embedded
    from pyterrier_setenc.io import candidate_lists, read_rerank

    global MACHINE
    MACHINE = describe("cpu", args.threads)
    args.workdir.mkdir(parents=True, exist_ok=True)
    queries, ranked, texts = candidate_lists(read_rerank(args.data_dir / RERANK))
    random_needed = ("systems" in sections or ("scaling" in sections and not args.scaling_model)
                     or ("numerics" in sections and not args.numerics_model))
    checkpoint = electra_base_set_encoder(args.workdir) if random_needed else None
    bench = Bench(checkpoint, args.workdir, args.threads, args.reference_python, queries, ranked, texts,
                  list(queries)[:args.queries])
    bench.results.update(checkpoint=str(checkpoint) if checkpoint else None, qids=bench.qids, threads=args.threads,
                         machine=MACHINE)
    peer_equal = True
    if "systems" in sections:
        compare_systems(bench)
    if "numerics" in sections:
        for model in args.numerics_model or [checkpoint, embedded.SET_ENCODER]:
            compare_numerics(bench, args.numerics.split(","), model)
    if "scaling" in sections:
        scaling_model = args.scaling_model or checkpoint
        assert scaling_model is not None  # random_needed: the checkpoint is built when no --scaling-model is given
        scaling(bench, args.data_dir, scaling_model, [int(n) for n in args.scaling.split(",") if n], args.full_length)
    if "peer" in sections:
        peer_equal = compare_peer(bench, args.peer_model or minilm_cross_encoder(args.workdir), args.peer_batch_size,
                                  args.peer_max_length, args.peer_repeats)
    if args.out:
        from pyterrier_setenc.atomic import atomic_write

        atomic_write(args.out, lambda file: json.dump(bench.results, file, indent=1))
    if not peer_equal:
        sys.exit(f"the peers' scores differ by {bench.results['peer']['max_score_difference']:.3g} "
                 f"(more than float32's {bench.results['peer']['tolerance']:.3g}): the timings do not compare the "
                 "same function")


if __name__ == "__main__":
    main()
