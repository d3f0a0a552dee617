"""Writes the small data slice in this folder from the full offline data (../shared/data), lines copied verbatim.

    python tests/data/make_slice.py [--data ../shared/data]

Which lists and why: see README.md in this folder. Gzip files are written with a zero timestamp, so the same data
gives the same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the first eight DL19 qids in sorted order (the lists the ``dl19`` fixture starts with, and those of the ListConRanker
# golden cases) and the two further lists of the lightning-ir golden scores (tests/fixtures/*/reference_scores.jsonl)
SLICE = {
    "trec-dl-2019": {"rerank": "bm25-top100.rerank.jsonl.gz",
                     "qids": ["1037798", "104861", "1063750", "1103812", "1106007", "1110199", "1112341", "1113437",
                              "130510", "264014"]},
    # the NovelEval questions of the ListConRanker golden cases noveleval-batch and noveleval-iterative
    "noveleval": {"rerank": "web-top20.rerank.jsonl.gz", "qids": ["0", "1", "10", "11", "12"]},
}


def write_gzip(path: Path, lines: list[str]) -> None:
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as file:
        file.write("".join(lines).encode("utf-8"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parents[2] / "shared" / "data")
    args = parser.parse_args(argv)
    for folder, spec in SLICE.items():
        qids = set(spec["qids"])
        source, target = args.data / folder, HERE / folder
        target.mkdir(exist_ok=True)
        topics = [line for line in source.joinpath("topics.tsv").read_text().splitlines(True)
                  if line.split("\t")[0] in qids]
        qrels = [line for line in source.joinpath("qrels.txt").read_text().splitlines(True)
                 if line.split()[0] in qids]
        with gzip.open(source / spec["rerank"], "rt", encoding="utf-8") as file:
            rerank = [line for line in file if str(json.loads(line)["qid"]) in qids]
        if len(topics) != len(qids) or {str(json.loads(line)["qid"]) for line in rerank} != qids:
            raise SystemExit(f"{source}: not every qid of the slice was found")
        target.joinpath("topics.tsv").write_text("".join(topics))
        target.joinpath("qrels.txt").write_text("".join(qrels))
        write_gzip(target / spec["rerank"], rerank)
    (HERE / "tirex-sample").mkdir(exist_ok=True)
    shutil.copyfile(args.data / "tirex-sample" / "rerank.jsonl.gz", HERE / "tirex-sample" / "rerank.jsonl.gz")


if __name__ == "__main__":
    main()
