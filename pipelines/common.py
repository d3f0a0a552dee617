"""What the experiments share: model loading, the command-line options, seeding and the result object."""

from __future__ import annotations

import argparse
import os
import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt

from .data import DATA_DIR_ENV, CACHE_DIR_ENV
from .output import markdown_table

ModelsArg = Mapping[str, pt.Transformer] | Sequence[str | os.PathLike | pt.Transformer]


@dataclass
class ExperimentResult:
    """What an experiment returns: its tables (numeric and as displayed), its runs and the files it wrote."""

    name: str
    table: pd.DataFrame
    display: pd.DataFrame
    runs: dict[str, pd.DataFrame] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    def markdown(self) -> str:
        parts = [markdown_table(self.display)]
        parts += [f"\n{title}\n\n{markdown_table(table)}" for title, table in self.tables.items()]
        return "".join(parts)


def model_name(model: str | os.PathLike | pt.Transformer) -> str:
    """A short row name: the folder name of a local checkpoint, the id of a hub model, the repr of a transformer."""
    if isinstance(model, pt.Transformer):
        return repr(model)
    path = Path(model)
    return path.name if path.exists() else str(model)


def load_models(models: ModelsArg, *, batch_size: int = 128, device: str | None = None, max_length: int | None = None,
                verbose: bool = True) -> dict[str, pt.Transformer]:
    """Re-rankers by row name. Strings and paths go through :func:`pyterrier_setenc.load_reranker` (the right
    class for the checkpoint); transformers are used as they are."""
    if isinstance(models, Mapping):
        return dict(models)
    from pyterrier_setenc import load_reranker

    loaded: dict[str, pt.Transformer] = {}
    for model in models:
        name = base = model_name(model)
        suffix = 2
        while name in loaded:
            name, suffix = f"{base}#{suffix}", suffix + 1
        if isinstance(model, pt.Transformer):
            loaded[name] = model
        else:
            loaded[name] = load_reranker(str(model), batch_size=batch_size, device=device, max_length=max_length,
                                         verbose=verbose)
    return loaded


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    import torch

    torch.manual_seed(seed)


def progress(iterable, desc: str, verbose: bool = True, total: int | None = None):
    return pt.tqdm(iterable, desc=desc, total=total, disable=not verbose, unit="step")


def base_parser(prog: str, description: str, default_output: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", action="append", default=[], metavar="NAME_OR_PATH",
                        help="re-ranker checkpoint (Hugging Face id or local folder); repeat for several")
    parser.add_argument("--data-dir", default=None,
                        help=f"offline data folder in the layout of ../shared/data (default: ${DATA_DIR_ENV}; "
                             "neither given: online from ir_datasets)")
    parser.add_argument("--cache-dir", default=None,
                        help=f"where PISA indexes are cached (default: ${CACHE_DIR_ENV} or ~/.cache/pyterrier-setenc)")
    parser.add_argument("--queries", type=int, default=None, metavar="N",
                        help="use only the first N topics of each benchmark (quick runs)")
    parser.add_argument("--output", type=Path, default=Path(default_output),
                        help="folder for runs, tables and plots")
    parser.add_argument("--seed", type=int, default=0, help="random seed (shuffles, torch)")
    parser.add_argument("--batch-size", type=int, default=128, help="passages per forward pass")
    parser.add_argument("--max-length", type=int, default=None, help="token limit per (query, passage) pair")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


@contextmanager
def clean_errors(parser: argparse.ArgumentParser) -> Iterator[None]:
    """Bad input (missing files, unknown names, bad values) ends the command with its message, not a traceback."""
    from pyterrier_setenc import CheckpointError

    try:
        yield
    except (FileNotFoundError, ValueError, KeyError, CheckpointError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")


def configure(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    seed_everything(args.seed)


def common_kwargs(args: argparse.Namespace) -> dict:
    return dict(data_dir=args.data_dir, cache_dir=args.cache_dir, queries=args.queries, output=args.output,
                seed=args.seed, batch_size=args.batch_size, device=args.device, max_length=args.max_length,
                verbose=not args.quiet)


def report(result: ExperimentResult, output: Path) -> None:
    print(result.markdown())
    print(f"wrote {len(result.files)} files to {output}")
