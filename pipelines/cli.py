"""The experiments' command lines, built without importing torch, transformers or PyTerrier: ``--help`` answers at
once and bad arguments are refused before any data or model loads. Each command module reads its arguments with
:func:`command_line` before its own imports (``python -m pipelines.permutation --help``).

>>> command_line("depth").parse_args(["--depths", "10", "20"]).depths
[10, 20]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pyterrier_setenc.settings import RerankerSettings, positive_int

# the same names as in pipelines.collection, pipelines.orderings and pipelines.evaluation
# (tests/pipelines/test_pipelines_cli.py checks that they agree); here so that building a parser imports none of those
DATA_DIR_ENV = "SETENC_DATA_DIR"
CACHE_DIR_ENV = "SETENC_CACHE_DIR"
UNJUDGED = 0.5
CORRECTIONS = ("holm", "bonferroni", "sidak", "holm-sidak", "simes-hochberg", "hommel", "fdr_bh", "fdr_by",
               "fdr_tsbh", "fdr_tsbky", "none")
FIRST_STAGES = ("bm25", "bm25-rm3", "tasb", "spladepp")  # of TREC DL 2019/2020 in the data folder
DEPTHS = (10, 25, 50, 100)  # of the depth experiment
COLLECTIONS = ("vaswani", "cranfield", "nfcorpus", "noveleval", "dl19", "dl20")  # of the corpora experiment
SALIENCY_BENCHMARKS = ("dl19", "dl20")  # of the saliency experiment
DEFAULT_ROWS = ("the shipped Set-Encoder and its mono twin (pyterrier_setenc.embedded) and their teacher "
                "all-MiniLM-L6-v2 as a bi-encoder: three rows")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default where it tells something: not where the help already names it, nor ``None``, ``[]`` or
    ``False`` (an option not given)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or any(action.default is empty for empty in (None, False, argparse.SUPPRESS)) \
                or action.default == []:
            return text
        return super()._get_help_string(action)


def folder_path(text: str) -> Path:
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a file, not a folder")
    return path


def correction_name(text: str) -> str:
    if text not in CORRECTIONS:
        raise argparse.ArgumentTypeError(f"unknown correction {text!r}; choose from {', '.join(CORRECTIONS)}")
    return text


def base_parser(prog: str, description: str, default_output: str) -> argparse.ArgumentParser:
    """The options every experiment shares (models, data, output, seed, threads and the re-rankers' settings)."""
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    parser.add_argument("--model", action="append", default=[], metavar="[NAME=]CHECKPOINT",
                        help="re-ranker checkpoint (Hugging Face id or local folder), optionally with the name of its "
                             "rows (else the checkpoint's folder name or id); repeat for several (default, no "
                             f"--model: {DEFAULT_ROWS})")
    parser.add_argument("--data-dir", type=folder_path, default=None,
                        help=f"offline data folder in the layout of ../shared/data (default: ${DATA_DIR_ENV}; "
                             "neither given: online from ir_datasets, which needs internet access)")
    parser.add_argument("--cache-dir", type=folder_path, default=None,
                        help=f"where PISA indexes are cached (default: ${CACHE_DIR_ENV} or ~/.cache/pyterrier-setenc)")
    parser.add_argument("--queries", type=positive_int, default=None, metavar="N",
                        help="use only the first N topics of each benchmark (quick runs; default: all)")
    parser.add_argument("--output", type=folder_path, default=Path(default_output),
                        help="folder for runs, tables and plots, replaced as a whole when the new result is complete")
    parser.add_argument("--seed", type=int, default=0, help="random seed (shuffles, torch)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    RerankerSettings.add_arguments(parser)
    return parser


def add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    """``--benchmark`` and ``--first-stage`` of the experiments on one benchmark of choice."""
    parser.add_argument("--benchmark", default="dl19", help="benchmark (dl19, dl20, ...)")
    parser.add_argument("--first-stage", default="bm25", help="first stage (bm25, bm25-rm3, tasb, spladepp offline)")


def add_correction(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--correction", type=correction_name, default="holm",
                        help=f"multiple-testing correction of statsmodels: {', '.join(CORRECTIONS)}")


def dl_parser(name: str) -> argparse.ArgumentParser:
    year = {"dl19": "2019", "dl20": "2020"}.get(name, name)
    parser = base_parser(f"python -m pipelines.{name}",
                         f"TREC DL {year} passage (the paper's Table 1): the first stage versus (first_stage % depth "
                         ">> model) ^ first_stage, with significance against the first stage.", f"results/{name}")
    parser.add_argument("--first-stage", default="bm25",
                        help=f"first stage: {' | '.join(FIRST_STAGES)} offline (stored runs); bm25 online")
    parser.add_argument("--depth", type=positive_int, default=100, help="re-rank the top DEPTH candidates")
    parser.add_argument("--reference-run", action="append", default=[], metavar="RUN",
                        help="add a row from a TREC run: a path, or a run name in the benchmark's data folder "
                             "(e.g. rankgpt35-bm25-top100)")
    parser.add_argument("--measure", action="append", default=[],
                        help="ir_measures measure (repeatable; default: nDCG@10, RR(rel=2)@10, nDCG@100)")
    add_correction(parser)
    return parser


def depth_parser() -> argparse.ArgumentParser:
    parser = base_parser("python -m pipelines.depth",
                         "The paper's Figure 2: the measure when re-ranking the top k of the first stage (the rest "
                         "of its list below).", "results/depth")
    add_benchmark_arguments(parser)
    parser.add_argument("--depths", type=positive_int, nargs="+", default=list(DEPTHS), help="re-ranking depths k")
    parser.add_argument("--measure", default="nDCG@10", help="ir_measures measure")
    return parser


def permutation_parser() -> argparse.ArgumentParser:
    parser = base_parser("python -m pipelines.permutation",
                         "The paper's permutation experiment (Section 5.3, Figure 4): each model on the first-stage "
                         "list in original, shuffled, ideal and reverse-ideal order.", "results/permutation")
    add_benchmark_arguments(parser)
    parser.add_argument("--depth", type=positive_int, default=100, help="candidates per query fed to the models")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the shuffled orderings")
    parser.add_argument("--measure", default="nDCG@10", help="ir_measures measure per ordering")
    parser.add_argument("--unjudged", type=float, default=UNJUDGED,
                        help="label given to unjudged candidates for the ideal orderings")
    parser.add_argument("--bins", type=positive_int, default=10, help="rank bins of the rank-change matrices")
    return parser


def corpora_parser() -> argparse.ArgumentParser:
    parser = base_parser("python -m pipelines.corpora",
                         "The paper's Table 3 (TIREx style): nDCG@10 of BM25 and each model per collection, with "
                         "arithmetic and geometric means.", "results/corpora")
    parser.add_argument("--collection", action="append", default=[],
                        help=f"collection (repeatable; default: all available of {', '.join(COLLECTIONS)})")
    parser.add_argument("--depth", type=positive_int, default=100, help="re-rank the BM25 top DEPTH")
    parser.add_argument("--measure", default="nDCG@10", help="ir_measures measure")
    add_correction(parser)
    return parser


def saliency_parser() -> argparse.ArgumentParser:
    parser = base_parser("python -m pipelines.saliency",
                         "The paper's Figure 3: per layer, the share of the [CLS] ([INT] for a Set-Encoder) token's "
                         "attention on itself, the query, the passage, its other special tokens and the other "
                         "passages' interaction tokens.", "results/saliency")
    model = next(action for action in parser._actions if action.dest == "model")
    model.help = ("cross-encoder checkpoint (Hugging Face id or local folder), optionally with the name of its rows; "
                  "repeat for several (default, no --model: the shipped Set-Encoder and its mono twin "
                  "(pyterrier_setenc.embedded): two rows)")
    parser.add_argument("--benchmark", action="append", default=[],
                        help=f"benchmark (repeatable; default: {' '.join(SALIENCY_BENCHMARKS)})")
    parser.add_argument("--first-stage", default="bm25", help=f"first stage ({', '.join(FIRST_STAGES)} offline)")
    parser.add_argument("--depth", type=positive_int, default=100, help="passages per query (the first stage's top)")
    parser.add_argument("--token", choices=("interaction", "first"), default="interaction",
                        help="the token analysed: 'interaction' ([INT] of a Set-Encoder, else [CLS]) or 'first' "
                             "([CLS])")
    return parser


def command_line(command: str) -> argparse.ArgumentParser:
    """The parser of ``python -m pipelines.COMMAND`` (dl19, dl20, depth, permutation, corpora, saliency)."""
    if command in ("depth", "permutation", "corpora", "saliency"):
        return {"depth": depth_parser, "permutation": permutation_parser, "corpora": corpora_parser,
                "saliency": saliency_parser}[command]()
    return dl_parser(command)
