"""The Set-Encoder paper's experiments as declarative PyTerrier pipelines, online (ir_datasets) or offline (a data
folder in the layout of ``../shared/data``).

Each experiment is a module with a command line (``python -m pipelines.NAME --help``) and a function for notebooks:

>>> from pipelines import load_benchmark, table1
>>> bench = load_benchmark("dl19", data_dir="../shared/data")  # doctest: +SKIP
>>> result = table1("dl19", ["webis/set-encoder-base"], data_dir="../shared/data")  # doctest: +SKIP
>>> print(result.markdown())  # doctest: +SKIP
"""

from importlib import import_module

EXPORTS = {"Benchmark": "data", "DataFileError": "data", "DataFormatError": "data", "StoredRun": "data",
           "load_benchmark": "data", "resolve_data_dir": "data", "table1": "dl",
           "candidate_orders": "permutation", "depth_sweep": "depth", "corpora_table": "corpora",
           "saliency_by_layer": "saliency"}
__all__ = sorted(EXPORTS)


def __getattr__(name: str):
    # imported on first use, so that ``python -m pipelines.NAME`` runs each module once
    if name in EXPORTS:
        return getattr(import_module(f".{EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
