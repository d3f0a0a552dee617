"""An ``output_dir`` belongs to one training run: a lock held while a trainer works in it (:class:`RunLock`), the
run's settings stored in ``run.json`` and compared on every start (:func:`differences`), and digests of the saved
state checked before it is used (:func:`write_digests`, :func:`check_digests`).

>>> with RunLock("runs/training/x"):  # doctest: +SKIP
...     ...  # a second trainer on runs/training/x fails with RunLockedError, naming the folder and this process
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .config import TrainConfig

LOCK_FILE = "trainer.lock"
RECORD_FILE = "run.json"
DIGESTS_FILE = "digests.json"
# settings a run may change without saying so: where it is, how often it logs and saves, how many threads it uses
FREE = ("output_dir", "data_root", "threads", "log_every", "save_every")
# settings that make the model another model: never changed within a run
FIXED = ("kind", "backbone", "init_checkpoint", "add_extra_token", "pooling_strategy")
PATH_KEYS = ("candidates", "qrels", "run")


class RunLockedError(RuntimeError):
    """Another trainer works in this ``output_dir``."""


class RunMismatchError(ValueError):
    """A start whose settings differ from those of the run stored in ``output_dir``; ``differences`` lists them as
    ``(setting, old, new)``."""

    def __init__(self, message: str, differences: list[tuple[str, Any, Any]]):
        super().__init__(message)
        self.differences = differences


class DamagedStateError(RuntimeError):
    """A saved training state that cannot be used; the message names the file and what to do."""


class RunWriteError(OSError):
    """A state, model, log or record of the run that could not be written (full or read-only file system); the
    message names the path, and what was saved before is unchanged."""


# ------------------------------------------------------------------------------------------------------- lock


class RunLock:
    """An exclusive lock on ``folder/trainer.lock`` (``flock``: released by the system when the process ends, so a
    killed trainer leaves no stale lock). The file names the holder (process, host, start time, command)."""

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / LOCK_FILE
        self.handle: int | None = None

    @property
    def held(self) -> bool:
        return self.handle is not None

    def acquire(self) -> RunLock:
        if self.handle is not None:
            return self
        handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise RunLockedError(f"{self.path.parent} is in use by another trainer ({self.holder()}); wait for it to "
                                 "end, or train into another output_dir") from None
        except BaseException:
            os.close(handle)
            raise
        holder = dict(pid=os.getpid(), host=socket.gethostname(), started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                      command=" ".join(sys.argv))
        os.ftruncate(handle, 0)
        os.pwrite(handle, (json.dumps(holder) + "\n").encode(), 0)
        self.handle = handle
        return self

    def holder(self) -> str:
        """Who holds the lock, as its file says."""
        try:
            holder = json.loads(self.path.read_text(encoding="utf-8"))
            return f"process {holder['pid']} on {holder['host']}, started {holder['started']}: {holder['command']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "a process that has not yet said which"

    def release(self) -> None:
        if self.handle is not None:
            os.close(self.handle)  # closing the file releases the flock
            self.handle = None

    def __del__(self) -> None:
        self.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ---------------------------------------------------------------------------------------------------- record


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_settings(config: TrainConfig) -> dict[str, Any]:
    """The settings that make the run what it is: all but :data:`FREE`, with data paths made absolute, and the
    SHA-256 of each local data file (``data[i].KEY_sha256``)."""
    settings = {key: value for key, value in config.to_dict().items() if key not in FREE}
    root = Path(config.data_root) if config.data_root is not None else Path.cwd()
    for source in settings["data"]:
        for key in PATH_KEYS:
            if key in source:
                path = Path(os.path.normpath((root / source[key]).absolute()))
                source[key] = str(path)
                if path.is_file():
                    source[f"{key}_sha256"] = sha256(path)
    return json.loads(json.dumps(settings))  # as it reads back


def flatten(value: Any, name: str = "") -> dict[str, Any]:
    """``{"data[0].list_size": 4, ...}``: nested settings under one name each."""
    if isinstance(value, dict):
        items = {}
        for key, item in value.items():
            items.update(flatten(item, f"{name}.{key}" if name else str(key)))
        return items
    if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        items = {f"{name}.sources": len(value)}
        for index, item in enumerate(value):
            items.update(flatten(item, f"{name}[{index}]"))
        return items
    return {name: value}


def differences(stored: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(setting, old, new)`` for each setting that differs (a setting absent on one side is ``None`` there)."""
    old, new = flatten(stored), flatten(current)
    return [(name, old.get(name), new.get(name)) for name in sorted(set(old) | set(new), key=_order)
            if old.get(name) != new.get(name)]


def _order(name: str) -> tuple:
    return (name.startswith("data"), name)


def top_setting(name: str) -> str:
    """``data`` for ``data[0].list_size``, ``loss_options`` for ``loss_options.temperature``."""
    return name.split(".")[0].split("[")[0]


def read_record(output: Path) -> dict[str, Any] | None:
    path = output / RECORD_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
            raise ValueError("no settings")
        return record
    except (OSError, ValueError) as error:
        raise DamagedStateError(f"{path} cannot be read ({error}); it holds the settings of the run in {output}. "
                                "Restore it, or train into another output_dir") from None


def mismatch_message(output: Path, step: int, found: list[tuple[str, Any, Any]], allowed: Iterable[str]) -> str:
    lines = [f"{output} holds a run with other settings (stored in {output / RECORD_FILE}; saved at step {step}):"]
    for name, old, new in found:
        lines.append(f"  {name}: {_show(old)} -> {_show(new)}")
    fixed = sorted({top_setting(name) for name, _, _ in found} & set(FIXED))
    changeable = sorted({top_setting(name) for name, _, _ in found} - set(FIXED) - set(allowed))
    if fixed:
        lines.append(f"{', '.join(fixed)} cannot change within a run: train into another output_dir.")
    elif changeable:
        lines.append("To continue the stored run, start it with its own settings; to train something else, choose "
                     "another output_dir; to continue it with the new values on purpose, add --allow-change "
                     f"{','.join(changeable)} (Trainer(config, allow_changes=[...])).")
    return "\n".join(lines)


def _show(value: Any) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12] + "..."  # a digest
    return json.dumps(value)


# ------------------------------------------------------------------------------------------------ state files


def _state_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != DIGESTS_FILE)


def write_digests(folder: Path) -> None:
    """Flushes each file of a state folder to disk and records its SHA-256 in ``digests.json``."""
    digests = {}
    for path in _state_files(folder):
        with open(path, "rb+") as file:
            os.fsync(file.fileno())
        digests[str(path.relative_to(folder))] = sha256(path)
    with open(folder / DIGESTS_FILE, "w", encoding="utf-8") as file:
        json.dump(digests, file, indent=1, sort_keys=True)
        file.flush()
        os.fsync(file.fileno())


def check_digests(folder: Path, remedy: str) -> None:
    """Checks the files of a state folder against its ``digests.json`` (a state saved before digests were kept has
    none: its files are then only checked by reading them)."""
    record = folder / DIGESTS_FILE
    if not record.is_file():
        return
    try:
        digests = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DamagedStateError(f"{record} cannot be read ({error}). {remedy}") from None
    for name, digest in digests.items():
        path = folder / name
        if not path.is_file():
            raise DamagedStateError(f"{path} is missing from the saved state. {remedy}")
        if sha256(path) != digest:
            raise DamagedStateError(f"{path} is damaged: its SHA-256 differs from the one recorded when it was saved "
                                    f"({record}). {remedy}")
