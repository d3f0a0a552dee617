"""The GPU check, one table: on the random ELECTRA-base Set-Encoder (query length 32, passage length 256) and the
first ``--queries`` TREC DL 2019 BM25 top-100 lists, this package in float32, bfloat16 and float16 and pointwise
(mono, same backbone), and lightning-ir 0.0.6 in float32 and in its inference precision (``bf16-mixed``), each
timed list by list in a process of its own; scores against lightning-ir's float32 (largest difference) and
against this package's float32 (mean Kendall tau); peak GPU memory of one list of 100 and of 1,000 passages.

    python -m benchmarks.gpu --data-dir ../shared/data [--reference-python PY] [--queries 10] [--out FILE]

``--reference-python`` is a Python with lightning-ir 0.0.6 and transformers < 5 (tests/reference/README.md);
without it the lightning-ir rows are left out. ``--device cpu`` runs the same on the CPU (to check the script). A
worker's scores, copied to the host, end each timing, so every timing waits for the GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.inference import RERANK, Bench, max_difference, mean_kendall_tau, passage_pool, print_table, run_worker

OURS = {"set-encoder": "float32", "set-encoder-bf16": "bfloat16", "set-encoder-fp16": "float16", "mono": "float32"}
REFERENCE = {"lightning-ir": "float32", "lightning-ir bf16-mixed": "bf16-mixed"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--reference-python", default=None, help="a Python with lightning-ir 0.0.6")
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "pyterrier-setenc-gpu")
    parser.add_argument("--memory-sizes", default="100,1000", help="list lengths whose peak GPU memory is measured")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a Set-Encoder folder instead of the random ELECTRA-base one (e.g. to check the script)")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)

    import benchmarks.inference as inference
    from benchmarks.checkpoint import electra_base_set_encoder
    from benchmarks.machine import describe
    from pyterrier_setenc.io import candidate_lists, read_rerank

    inference.MACHINE = describe(args.device)
    args.workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint or electra_base_set_encoder(args.workdir)
    queries, ranked, texts = candidate_lists(read_rerank(args.data_dir / RERANK))
    qids = list(queries)[:args.queries]
    query_texts, lists = [queries[q] for q in qids], [[texts[d] for d in ranked[q]] for q in qids]
    ours = [sys.executable, "-m", "benchmarks.worker", "--device", args.device, "--systems"]
    worker = str(Path(__file__).resolve().parent / "lightning_ir_worker.py")
    reference = [args.reference_python, worker, "--device", args.device] if args.reference_python else None

    print(f"timing this package on {len(qids)} lists ...", file=sys.stderr, flush=True)
    runs = run_worker([*ours, ",".join(OURS)], checkpoint, query_texts, lists, args.workdir)["runs"]
    if reference:
        for name, precision in REFERENCE.items():
            print(f"timing {name} ...", file=sys.stderr, flush=True)
            report = run_worker([*reference, "--precision", precision], checkpoint, query_texts, lists, args.workdir)
            runs[name] = report["runs"]["lightning-ir"]
    passages = sum(map(len, lists))
    rows: list[list[str]] = []
    figures: dict[str, Any] = {"machine": inference.MACHINE, "checkpoint": str(checkpoint), "qids": qids, "systems": {}}
    for name, run in runs.items():
        rate = passages / sum(run["seconds"])
        same = {"set-encoder": "lightning-ir", "set-encoder-bf16": "lightning-ir bf16-mixed"}.get(name)
        versus = rate / (passages / sum(runs[same]["seconds"])) if same in runs else None
        difference = max_difference(run["scores"], runs["lightning-ir"]["scores"]) \
            if "lightning-ir" in runs and name != "mono" else None
        tau = mean_kendall_tau(run["scores"], runs["set-encoder"]["scores"]) if name != "mono" else None
        figures["systems"][name] = dict(passages_per_s=rate, versus_lightning_ir=versus,
                                        max_difference_to_lightning_ir_float32=difference,
                                        tau_to_float32=tau, scores=run["scores"])
        rows.append([name, {**OURS, **REFERENCE}[name], f"{rate:.1f}", "" if versus is None else f"{versus:.2f}x",
                     "" if difference is None else f"{difference:.2g}", "" if tau is None else f"{tau:.4f}"])
    print_table(f"{checkpoint.name}, DL19 BM25 top-100, first {len(qids)} lists, one list per forward pass",
                ["system", "precision", "passages/s", "vs lightning-ir (same precision)",
                 "max |score diff| vs lightning-ir float32", "mean Kendall tau vs ours float32"], rows)

    memory_rows = []
    bench = Bench(checkpoint, args.workdir, 1, args.reference_python, queries, ranked, texts, qids)
    for size in (int(n) for n in args.memory_sizes.split(",")):
        docs = passage_pool(bench, args.data_dir, size)[:size]
        row = [str(size)]
        for system in ("set-encoder", "set-encoder-bf16"):
            report = run_worker([*ours, system], checkpoint, query_texts[:1], [docs], args.workdir)
            row.append(f"{report['peak_gpu_gib']:.2f}" if report["peak_gpu_gib"] is not None else "")
            figures.setdefault("memory", []).append(dict(passages=size, system=system,
                                                         peak_gpu_gib=report["peak_gpu_gib"]))
        memory_rows.append(row)
    print_table("Peak GPU memory (GiB, torch's allocator) of one list", ["passages", "float32", "bfloat16"],
                memory_rows)
    if args.out:
        from pyterrier_setenc.atomic import atomic_write

        atomic_write(args.out, lambda file: json.dump(figures, file, indent=1))


if __name__ == "__main__":
    main()
