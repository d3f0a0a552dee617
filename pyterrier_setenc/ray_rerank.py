"""Re-ranking on a Ray cluster: any of the suite's re-rankers over a Ray Dataset, each query's list kept whole.

The candidates (a result frame) become a Ray Dataset in ``blocks`` blocks, cut at any row. A hash shuffle by qid
(``repartition(keys=["qid"])``, whose blocks Ray never splits, run to its end before the actors start so that it cannot
wait for CPUs the actors hold) makes ``partitions`` blocks of whole queries; a pool of actors, each holding one loaded
re-ranker (``num_gpus`` per actor), scores one block a call (``map_batches(batch_size=None)``) with the re-ranker's
``transform`` and writes the scores as a TREC run shard (written atomically, named by the block's rows, so that a
retried call replaces its own shard). The driver merges the shards and checks that every (qid, docno) of the input is
there exactly once and that each query was scored in one piece, then returns the frame the in-process re-ranker would
return. Files are re-ranked on Ray by the command lines (``pyterrier-setenc rerank ... --ray-workers N``, the TIREx
entry point) or in Python by :func:`pyterrier_setenc.tirex.rerank_file` with ``RerankerSettings(ray_workers=N)``.

A worker process that dies is restarted by Ray Data and its call retried (without limit, Ray Data's default for
actor pools, or ``retries`` times). On a cluster of several machines the shard folder must be on storage that every
node sees (``shard_dir``), and every node needs this package and the checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt

from .io import read_run, write_run

# the package is installed from its repository (it is not on PyPI): the extra from the clone's root
EXTRA = 'pip install -e ".[ray]" in the repository\'s root (or bash scripts/install, which installs every extra)'
SHARD_TAG = "shard"
ROW = "_row"


class RayRunError(RuntimeError):
    """The scores that came back from the workers are not one complete, whole-list run of the input."""


def import_ray():
    """The ``ray`` module, or a ModuleNotFoundError that names the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise ModuleNotFoundError(f"re-ranking with Ray needs the ray extra, which is not installed ({error}): "
                                  f"{EXTRA}") from None
    return ray


class RayClusterError(ConnectionError):
    """The Ray cluster asked for cannot be joined; the message names its address."""


def connect(address: str | None = None, verbose: bool = False):
    """Joins the running Ray session, else the cluster at ``address`` (``"auto"``, ``"ray://head:10001"``), else
    starts a local one with every core of this machine. A cluster that cannot be joined is a
    :class:`RayClusterError` naming the address."""
    ray = import_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=verbose, configure_logging=verbose)
        except (ConnectionError, ValueError) as error:  # no cluster there; a ray:// address without ray[client]
            found = "no running Ray cluster was found" if address == "auto" else "the Ray cluster cannot be joined"
            raise RayClusterError(f"{found} at address {address!r} ({error})") from None
    return ray


class _ShardScorer:
    """The body of one actor: loads the re-ranker once, then scores blocks of whole queries, one shard each."""

    def __init__(self, model, options: dict, loader: Callable | None, text_field: str, shard_dir: str,
                 threads: int | None):
        if threads:
            import torch

            torch.set_num_threads(threads)
        if loader is None:
            from . import load_reranker

            loader = load_reranker
        self.reranker = loader(model, **options)
        self.text_field = text_field
        self.shard_dir = Path(shard_dir)

    def __call__(self, part: pd.DataFrame) -> pd.DataFrame:
        if len(part) == 0:  # a partition no qid hashed to
            return pd.DataFrame({"shard": pd.Series(dtype=str), "error": pd.Series(dtype=object)})
        part = part.sort_values(ROW, kind="stable")  # each list in its input order, as in-process
        rows = part[ROW].to_numpy(dtype=np.int64)
        try:
            scored = self.reranker.transform(part[["qid", "query", "docno", self.text_field]].reset_index(drop=True))
            digest = hashlib.sha1(rows.tobytes()).hexdigest()[:16]
            path = self.shard_dir / f"shard-{digest}.txt"
            write_run(path, scored[["qid", "docno", "score"]], SHARD_TAG)
        except Exception as error:  # e.g. the re-ranker's ValueError naming a bad row: raised again by the driver
            return pd.DataFrame({"shard": [""], "error": [pickled(error)]})
        return pd.DataFrame({"shard": [path.name], "error": [b""]})


def pickled(error: Exception) -> bytes:
    """``error`` pickled, or a RuntimeError with its type and message when it cannot be."""
    import pickle

    try:
        return pickle.dumps(error)
    except Exception:
        return pickle.dumps(RuntimeError(f"{type(error).__name__}: {error}"))


def raise_worker_error(summary: pd.DataFrame) -> None:
    """Raises the first error a worker's re-ranker raised, as it was raised there."""
    import pickle

    errors = [error for error in summary.get("error", []) if error]
    if errors:
        raise pickle.loads(errors[0])


def merge_shards(shard_dir: Path, expected: pd.DataFrame) -> pd.DataFrame:
    """The scores of all shards in ``shard_dir``; raises :class:`RayRunError` unless each qid comes from a single
    shard (:func:`pyterrier_setenc.io.read_run` refuses a docno twice in one), every (qid, docno) of ``expected`` is
    there and nothing else is."""
    paths = sorted(shard_dir.glob("shard-*.txt"))
    empty = pd.DataFrame({"qid": [], "docno": [], "score": [], "shard": []})
    shards = [read_run(path)[["qid", "docno", "score"]].assign(shard=path.name) for path in paths]
    scores = pd.concat(shards, ignore_index=True) if shards else empty
    shards_per_qid = scores.groupby("qid")["shard"].nunique()
    if (shards_per_qid > 1).any():
        qid = shards_per_qid[shards_per_qid > 1].index[0]
        names = sorted(scores.loc[scores["qid"] == qid, "shard"].unique())
        raise RayRunError(f"qid {qid!r} was scored in {len(names)} pieces (shards {names}): its list was split or "
                          "scored twice, but a query's list must be scored whole, once")
    joined = expected[["qid", "docno"]].merge(scores, on=["qid", "docno"], how="outer", indicator=True)
    missing = joined[joined["_merge"] == "left_only"]
    if len(missing):
        row = missing.iloc[0]
        raise RayRunError(f"{len(missing)} of {len(expected)} candidates of {missing['qid'].nunique()} queries have no "
                          f"score, e.g. qid {row['qid']!r} docno {row['docno']!r}; the workers write their shards to "
                          f"{shard_dir}, which must be on storage every node of the cluster sees")
    extra = joined[joined["_merge"] == "right_only"]
    if len(extra):
        row = extra.iloc[0]
        raise RayRunError(f"{len(extra)} scored (qid, docno) pair(s) are not in the input, e.g. qid {row['qid']!r} "
                          f"docno {row['docno']!r}")
    return scores[["qid", "docno", "score"]]


class RayReRanker(pt.Transformer):
    """Runs one of the suite's re-rankers on a pool of Ray actors; returns the frame the re-ranker itself returns.

    ``model`` and ``reranker_options`` go to :func:`pyterrier_setenc.load_reranker` in each actor (or to ``loader``,
    a function that builds any transformer from them). ``workers`` actors with ``num_cpus`` and ``num_gpus`` each
    (default: one GPU when the cluster has GPUs and the re-ranker can use one, else none); ``address`` joins a
    running cluster (default: the current Ray session, else a new local one). The input goes to Ray in ``blocks``
    blocks and is scored in ``partitions`` partitions of whole queries (default: about 64 queries each, at least
    four per worker). ``shard_dir`` holds the shards of a job (default: a temporary folder, which suits one machine;
    on a cluster pick shared storage); they are removed afterwards unless ``keep_shards``. A worker that dies is
    restarted and its call retried, ``retries`` times (default: Ray Data's, without limit).

    >>> from pyterrier_setenc.ray_rerank import RayReRanker
    >>> setenc = RayReRanker("webis/set-encoder-base", workers=4, num_gpus=1)  # doctest: +SKIP
    >>> pipeline = bm25 % 100 >> pt.text.get_text(dataset, "text") >> setenc  # doctest: +SKIP
    """

    def __init__(self, model: str | os.PathLike, *, workers: int = 2, address: str | None = None,
                 num_cpus: float = 1.0, num_gpus: float | None = None, blocks: int | None = None,
                 partitions: int | None = None, shard_dir: str | os.PathLike | None = None, retries: int | None = None,
                 keep_shards: bool = False, loader: Callable | None = None, **reranker_options):
        for name, value in (("workers", workers), ("blocks", blocks), ("partitions", partitions)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if num_cpus <= 0 or (num_gpus is not None and num_gpus < 0):
            raise ValueError(f"num_cpus must be positive and num_gpus not negative, got {num_cpus} and {num_gpus}")
        if retries is not None and retries < 0:
            raise ValueError(f"retries must not be negative, got {retries}")
        if num_gpus and reranker_options.get("int8"):
            raise ValueError(f"int8=True runs on the CPU only, so the actors take no GPU; got num_gpus={num_gpus}")
        import_ray()
        self.model = str(model)
        self.workers = workers
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.blocks = blocks
        self.partitions = partitions
        self.shard_dir = Path(shard_dir) if shard_dir is not None else None
        self.retries = retries
        self.keep_shards = keep_shards
        self.loader = loader
        self.reranker_options = reranker_options
        self.text_field = reranker_options.get("text_field", "text")
        self.verbose = bool(reranker_options.get("verbose", False))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model!r}, workers={self.workers})"

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        missing = [column for column in ("qid", "query", "docno", self.text_field) if column not in inp.columns]
        if missing:
            raise ValueError(f"input lacks column(s) {missing}; found {list(inp.columns)}")
        out = inp.drop(columns=["score", "rank"], errors="ignore").reset_index(drop=True)
        if len(out) == 0:
            return out.assign(score=pd.Series(dtype="float64"), rank=pd.Series(dtype="int64"))
        keys = pd.DataFrame({"qid": out["qid"].astype(str), "docno": out["docno"].astype(str)})
        repeated = keys.duplicated()
        if repeated.any():
            row = keys[repeated].iloc[0]
            raise ValueError(f"docno {row['docno']!r} occurs more than once for qid {row['qid']!r}; each passage of "
                             "a query's list must be unique")
        scores = self.score(keys.assign(query=out["query"].to_numpy(), text=out[self.text_field].to_numpy()))
        score_of = scores.set_index(["qid", "docno"])["score"]
        out["score"] = score_of.reindex(pd.MultiIndex.from_frame(keys)).to_numpy(dtype=np.float64)
        out = pt.model.add_ranks(out)  # as the in-process re-rankers rank and order their output
        order = np.lexsort((out["rank"].to_numpy(), pd.factorize(out["qid"], sort=True)[0]))
        return out.iloc[order].reset_index(drop=True)

    def default_gpus(self, cluster_resources: dict) -> float:
        """GPUs per actor when ``num_gpus`` is not given: one when the cluster has GPUs and the re-ranker can use
        one (not with ``int8``, not with a CPU ``device``), else none."""
        on_cpu = self.reranker_options.get("int8") or str(self.reranker_options.get("device") or "").startswith("cpu")
        return float(cluster_resources.get("GPU", 0) > 0 and not on_cpu)

    def score(self, candidates: pd.DataFrame) -> pd.DataFrame:
        """``qid``, ``docno`` and ``score`` of every row of ``candidates`` (string ``qid``, ``query``, string
        ``docno``, ``text``), scored by the actor pool."""
        ray = connect(self.address, self.verbose)
        context = ray.data.DataContext.get_current()
        progress_bars, context.enable_progress_bars = context.enable_progress_bars, self.verbose
        num_gpus = self.num_gpus if self.num_gpus is not None else self.default_gpus(ray.cluster_resources())
        queries = candidates["qid"].nunique()
        partitions = self.partitions or min(queries, max(4 * self.workers, -(-queries // 64)))
        frame = candidates.rename(columns={"text": self.text_field}).assign(**{ROW: np.arange(len(candidates))})
        blocks = min(self.blocks or 4 * self.workers, len(frame))
        root = self.shard_dir or Path(tempfile.gettempdir())
        shard_dir = root / f".pyterrier-setenc-shards-{uuid.uuid4().hex}"
        shard_dir.mkdir(parents=True)
        try:
            pieces = [frame.iloc[rows] for rows in np.array_split(np.arange(len(frame)), blocks)]
            dataset = ray.data.from_pandas(pieces)  # one block a piece, lists cut at any row
            queries_whole = dataset.repartition(partitions, keys=["qid"]).materialize()
            written = queries_whole.map_batches(
                _ShardScorer, batch_size=None, batch_format="pandas",
                compute=ray.data.ActorPoolStrategy(size=self.workers),
                fn_constructor_kwargs=dict(model=self.model, options=self.reranker_options, loader=self.loader,
                                           text_field=self.text_field, shard_dir=str(shard_dir),
                                           threads=max(1, int(self.num_cpus)) if not num_gpus else None),
                num_cpus=self.num_cpus, num_gpus=num_gpus,
                **({} if self.retries is None else {"max_restarts": self.retries, "max_task_retries": self.retries}))
            raise_worker_error(written.to_pandas())
            return merge_shards(shard_dir, candidates)
        finally:
            context.enable_progress_bars = progress_bars
            if not self.keep_shards:
                shutil.rmtree(shard_dir, ignore_errors=True)
