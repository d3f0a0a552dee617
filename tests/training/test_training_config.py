"""Training configurations (``training.config``) are checked when they are read: every setting has a type and a
range, and a bad value fails with a ConfigError naming the setting and the file, before a model is built or a step is
run. Numbers are read as numbers however YAML writes them; correct configurations (all shipped ones) read as written.

The committed training configurations hold no machine paths: they write under the repository into a git-ignored
folder and find their data through ``${SETENC_DATA_DIR}`` (default ``../shared/data`` beside the repository), or read
data generated into a git-ignored folder of the repository."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from training.config import ConfigError, DataSource, TrainConfig
from training.losses import LOSSES
from training.model import lightning_ir_config

from builders import REPO, requires_data

# the YAML of a good configuration, one raw text per setting; a row replaces (or with None removes) one of them
BASE = {"output_dir": "runs/training/x", "backbone": "some/backbone", "kind": "set-encoder", "learning_rate": "1.0e-4",
        "head_learning_rate": "1.0e-3", "max_steps": "10", "warmup_steps": "2", "log_every": "1",
        "query_length": "32", "doc_length": "128"}
SOURCE = {"kind": "graded", "candidates": "c.rerank.jsonl.gz", "qrels": "qrels.txt", "list_size": "32"}


def yaml_text(top: dict[str, str | None], source: dict[str, str | None]) -> str:
    lines = [f"{key}: {value}" for key, value in top.items() if value is not None]
    if source is not None:
        lines.append("data:")
        entries = [f"{key}: {value}" for key, value in source.items() if value is not None]
        lines += [("  - " if i == 0 else "    ") + entry for i, entry in enumerate(entries)]
    return "\n".join(lines) + "\n"


def read(tmp_path, setting: str, value: str | None):
    top, source = dict(BASE), dict(SOURCE)
    if setting.startswith("data[0]."):
        source[setting.removeprefix("data[0].")] = value
    elif setting == "data":
        source = None
        if value is not None:
            top["data"] = value
    else:
        top[setting] = value
    path = tmp_path / "bad-config.yaml"
    path.write_text(yaml_text(top, source))
    return TrainConfig.from_yaml(path), path


# (setting, YAML value or None to leave it out, the name the message must contain, a word of the message); every row
# fails with ConfigError (a ValueError) naming the setting and the file
OUT_OF_RANGE = [
    ("head_learning_rate", "-1.0e-3", "head_learning_rate", "greater than 0"),  # gradient ascent on the head
    ("learning_rate", "0", "learning_rate", "greater than 0"),
    ("data[0].list_size", "1", "data[0].list_size", "listwise loss over a list of one passage is 0"),
    ("data[0].list_size", "0", "data[0].list_size", "at least 2"),  # random.sample failed late
    ("doc_length", "0", "doc_length", "at least 1"),
    ("query_length", "-4", "query_length", "at least 1"),
    ("warmup_steps", "-3", "warmup_steps", "at least 0"),  # the schedule started at 4/7 of the learning rate
    ("log_every", "0", "log_every", "at least 1"),  # ZeroDivisionError after the first step
    ("max_steps", "0", "max_steps", "at least 1"),
    ("lists_per_step", "0", "lists_per_step", "at least 1"),
    ("accumulation_steps", "-1", "accumulation_steps", "at least 1"),
    ("weight_decay", "-0.01", "weight_decay", "at least 0"),
    ("max_grad_norm", "-1", "max_grad_norm", "at least 0"),
    ("seed", "-1", "seed", "at least 0"),
    ("threads", "0", "threads", "at least 1"),
    ("save_every", "-20", "save_every", "at least 0"),
    ("depth", "0", "depth", "at least 1"),
    ("data[0].repeat", "0", "data[0].repeat", "at least 1"),
    ("data[0].depth", "1", "data[0].depth", "at least 2"),
    ("learning_rate", ".inf", "learning_rate", "finite"),
    ("learning_rate", "nan", "learning_rate", "finite"),  # "nan" is a string to PyYAML, read as a number
    ("loss_options", "{temperature: 0}", "loss_options.temperature", "greater than 0"),
]
WRONG_TYPE = [
    ("learning_rate", "fast", "learning_rate", "must be a number"),
    ("learning_rate", "true", "learning_rate", "not true"),  # a bool is not a number
    ("max_steps", "2.5", "max_steps", "whole number"),
    ("max_steps", "false", "max_steps", "not false"),
    ("data[0].list_size", "yes", "data[0].list_size", "not true"),  # YAML 1.1: yes is true
    ("data[0].list_size", "[4, 8]", "data[0].list_size", "whole number"),
    ("gradient_checkpointing", "1", "gradient_checkpointing", "true or false"),
    ("bf16", "maybe", "bf16", "true or false"),
    ("kind", "cross-encoder", "kind", "set-encoder, mono"),
    ("loss", "hinge", "loss", "unknown loss"),
    ("pooling_strategy", "max", "pooling_strategy", "first, mean"),
    ("output_dir", "5", "output_dir", "quote it"),
    ("backbone", "[a, b]", "backbone", "non-empty text"),
    ("data", "c.rerank.jsonl.gz", "data", "must be a list"),
    ("data", "[]", "data", "at least one data source"),
    ("data[0].kind", "bm25", "data[0].kind", "graded"),
    ("loss_options", "[1]", "loss_options", "mapping"),
    ("loss_options", "{temperature: cold}", "loss_options.temperature", "must be a number"),
]
UNKNOWN_OR_MISSING = [
    ("learning_rat", "1.0e-4", "learning_rat", "unknown setting"),
    ("data[0].list_szie", "4", "data[0].list_szie", "unknown setting"),
    ("data[0].list_sizes", "[4, 8]", "data[0].list_sizes", "has no setting"),  # a teacher_scores setting
    ("data[0].run", "r.run", "data[0].run", "has no setting"),
    ("output_dir", None, "output_dir", "missing"),
    ("data", None, "data", "missing"),
    ("data[0].kind", None, "data[0].kind", "missing"),
    ("data[0].qrels", None, "data[0].qrels", "missing"),
    ("backbone", None, "backbone", "exactly one"),
    ("init_checkpoint", "runs/training/stage1/model", "init_checkpoint", "exactly one"),
    ("loss_options", "{margin: 1}", "loss_options", "no options ['margin']"),
]
CASES = ([("out of range", *row) for row in OUT_OF_RANGE] + [("wrong type", *row) for row in WRONG_TYPE]
         + [("unknown or missing", *row) for row in UNKNOWN_OR_MISSING])


@pytest.mark.parametrize("group,setting,value,name,words", CASES,
                         ids=[f"{c[0]}:{c[1]}={c[2]}" for c in CASES])
def test_bad_setting_fails_when_read_naming_it_and_the_file(tmp_path, group, setting, value, name, words):
    with pytest.raises(ConfigError) as caught:
        read(tmp_path, setting, value)
    message = str(caught.value)
    assert name in message and words in message and "bad-config.yaml" in message, message
    assert caught.value.setting == name or name.startswith(caught.value.setting or "?"), caught.value.setting


def test_every_bad_setting_is_named_at_once(tmp_path):
    path = tmp_path / "three.yaml"
    path.write_text(yaml_text(dict(BASE, log_every="0", doc_length="0"), dict(SOURCE, list_size="1")))
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_yaml(path)
    message = str(caught.value)
    assert "3 settings are wrong" in message and str(path) in message
    assert all(f"setting {name}:" in message for name in ("log_every", "doc_length", "data[0].list_size")), message


def test_the_command_line_prints_the_message_without_a_traceback(tmp_path, capsys):
    from training.trainer import main

    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text(dict(BASE, warmup_steps="-1"), SOURCE))
    with pytest.raises(SystemExit) as caught:
        main([str(path), "--set", "learning_rate=1e-5"])
    err = capsys.readouterr().err
    assert caught.value.code == 1 and err.startswith("ConfigError: ") and "warmup_steps" in err
    assert "Traceback" not in err


# numbers as YAML users write them: (setting, YAML text, the value it must be); PyYAML reads 1e-5 and "3" as strings
NUMBER_FORMS = [
    ("learning_rate", "1e-5", 1e-5), ("learning_rate", "1.0e-5", 1e-5), ("learning_rate", '"2e-4"', 2e-4),
    ("learning_rate", "1", 1.0), ("max_steps", '"3"', 3), ("max_steps", "1e3", 1000), ("max_steps", "1_000", 1000),
    ("max_steps", "20.0", 20), ("data[0].list_size", '"16"', 16), ("head_learning_rate", "null", None),
    ("max_grad_norm", "0", 0.0), ("bf16", '"false"', False), ("bf16", "no", False),
]


@pytest.mark.parametrize("setting,text,expected", NUMBER_FORMS, ids=[f"{s}={t}" for s, t, _ in NUMBER_FORMS])
def test_numbers_are_read_as_numbers_however_written(tmp_path, setting, text, expected):
    config, _ = read(tmp_path, setting, text)
    value = config.data[0][setting.removeprefix("data[0].")] if setting.startswith("data[0].") \
        else getattr(config, setting)
    assert value == expected and type(value) is type(expected)


def test_the_configuration_is_frozen(tmp_path):
    config, _ = read(tmp_path, "max_steps", "10")
    with pytest.raises(AttributeError):
        config.max_steps = 11
    with pytest.raises(TypeError):
        config.loss_options["temperature"] = 2.0
    assert config.replace(max_steps=11).max_steps == 11 and config.max_steps == 10
    with pytest.raises(ConfigError, match="max_steps"):
        config.replace(max_steps=0)


def test_the_loss_choices_are_the_losses():
    import typing

    from training.config import LossName

    assert set(typing.get_args(LossName)) == set(LOSSES)


@pytest.mark.parametrize("name", ["query_length", "doc_length"])
def test_lengths_beyond_the_backbones_positions_are_refused(name):
    backbone = {"model_type": "bert", "vocab_size": 100, "max_position_embeddings": 512}
    with pytest.raises(ValueError, match=rf"setting {name}: .*512.*found 600"):
        lightning_ir_config(backbone, "mono", **{name: 600})


@pytest.mark.parametrize("path", sorted((REPO / "training" / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_read_as_written(path, monkeypatch, tmp_path):
    """Each setting of a shipped configuration is the value PyYAML reads from the file (numbers as numbers), and a
    data source holds exactly the settings written."""
    monkeypatch.setenv("SETENC_DATA_DIR", str(tmp_path))
    raw = yaml.safe_load(path.read_text())
    config = TrainConfig.from_yaml(path)
    for key, value in raw.items():
        if key == "data":
            continue
        got = getattr(config, key)
        assert got == value and (type(got) is type(value) or isinstance(value, int) and type(got) is float), key
    assert len(config.data) == len(raw["data"])
    for source, written in zip(config.data, raw["data"]):
        assert isinstance(source, DataSource)
        expanded = {k: v.replace("${SETENC_DATA_DIR}", str(tmp_path)) if isinstance(v, str) else v
                    for k, v in written.items()}
        assert dict(source) == expanded


# ------------------------------------------------------------------------------- the committed configurations

CONFIGS = sorted((REPO / "training" / "configs").glob("*.yaml"))
LOCAL = ["dl21-mono.yaml", "dl21-set-encoder.yaml"]  # data in ../shared/data; the others read MS MARCO online


def ignored(path: Path) -> bool:
    """Whether git ignores ``path`` (inside the repository) or one of its folders."""
    parts = path.relative_to(REPO).parts
    return any(subprocess.run(["git", "check-ignore", "-q", str(Path(*parts[:n]))], cwd=REPO).returncode == 0
               for n in range(1, len(parts) + 1))


def data_paths(config: TrainConfig) -> list[Path]:
    return [Path(config.data_root) / spec[key] for spec in config.data for key in ("candidates", "qrels", "run")
            if key in spec]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_writes_into_an_ignored_folder_of_the_repository(path, monkeypatch, tmp_path):
    monkeypatch.setenv("SETENC_DATA_DIR", str(tmp_path / "data"))
    config = TrainConfig.from_yaml(path)
    for setting in (config.output_dir, config.init_checkpoint):
        if setting is None:
            continue
        assert not Path(setting).is_absolute(), f"{path.name}: {setting} is a machine path"
        target = Path(os.path.normpath(REPO / setting))
        assert target.is_relative_to(REPO), f"{path.name}: {setting} leaves the repository"
        assert ignored(target), f"{path.name}: {setting} is not git-ignored"
    # every data path goes through the one setting, or is data generated into an ignored folder of the repository
    for data in data_paths(config):
        data = Path(os.path.normpath(data.absolute()))  # as written: runs/ may be a link to another disk
        if not data.is_relative_to(tmp_path / "data"):
            assert data.is_relative_to(REPO), f"{path.name}: {data} is neither under $SETENC_DATA_DIR nor generated"
            assert ignored(data), f"{path.name}: {data} is not git-ignored"


@requires_data
@pytest.mark.parametrize("name", LOCAL)
def test_local_configs_find_their_data_under_the_default_data_folder(name, monkeypatch):
    monkeypatch.delenv("SETENC_DATA_DIR", raising=False)
    config = TrainConfig.from_yaml(REPO / "training" / "configs" / name)
    paths = data_paths(config)
    default = (REPO.parent / "shared" / "data").resolve()
    assert len(paths) == 2 and all(p.resolve().is_relative_to(default) and p.is_file() for p in paths), paths


def test_an_unset_variable_is_an_error_naming_it(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("output_dir: runs/training/x\nbackbone: b\ndata:\n  - kind: graded\n"
                      "    candidates: ${NO_SUCH_SETTING_XYZ}/c.jsonl.gz\n")
    with pytest.raises(ValueError, match=r"NO_SUCH_SETTING_XYZ.*not set"):
        TrainConfig.from_yaml(config)
