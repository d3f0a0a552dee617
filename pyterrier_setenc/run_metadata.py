"""What a result was computed with: package versions, the torch build, the device, the CPU model and threads
(:func:`environment`), the wall time and peak memory of a piece of work (:class:`Resources`), and both in the
``ir_metadata`` format that TIREx reads beside a ``run.txt`` (:func:`ir_metadata`, :func:`write_ir_metadata`).

The peak memory of a :class:`Resources` block is its own where Linux lets a process reset its high-water mark
(``/proc/self/clear_refs``): each block starts from the memory resident when it begins, so that two models measured
one after the other each get their own peak (``peak_memory_scope`` is ``"block"``); elsewhere it is the process's
peak so far (``"process"``). CUDA's peak is the block's own (``torch.cuda.reset_peak_memory_stats``).

>>> from pyterrier_setenc.run_metadata import Resources, environment
>>> with Resources() as used:
...     _ = sum(range(1000))
>>> sorted(used.as_dict())
['peak_cuda_memory_mib', 'peak_memory_mib', 'peak_memory_scope', 'wall_time_s']
>>> "torch" in environment()["packages"]
True
"""

from __future__ import annotations

import os
import platform
import sys
import time
from importlib import metadata

PACKAGES = ("pyterrier-setenc", "python-terrier", "torch", "transformers", "tokenizers", "safetensors", "numpy",
            "pandas", "ir-measures", "ir-datasets")


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    """The installed version of each package (``None`` for one that is not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` says)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device) -> str:
    """The name of a torch device: the GPU's model for CUDA, else the CPU's."""
    import torch

    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return cpu_model()


def environment(device=None) -> dict:
    """The machine and software of a run: Python, the OS, package versions, the torch build (version, CUDA, the CPU
    capability its kernels use), the device and its name, the CPU model, torch's threads and the CPU count."""
    import torch

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "torch_build": {"version": torch.__version__, "cuda": torch.version.cuda,
                        "cpu_capability": torch.backends.cpu.get_cpu_capability()},
        "device": str(device) if device is not None else "cpu",
        "device_name": device_name(device),
        "cpu_model": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }


def _high_water_kib() -> int | None:
    """The process's resident high-water mark in KiB (``VmHWM`` of ``/proc/self/status``), where Linux has it."""
    try:
        with open("/proc/self/status", encoding="ascii") as file:
            for line in file:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _reset_high_water() -> bool:
    """Resets the high-water mark to the memory resident now (Linux 4.0+); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as file:
            file.write("5")
    except OSError:
        return False
    return _high_water_kib() is not None


_OPEN_BLOCKS: list[Resources] = []  # the Resources blocks running now, outermost first
_PEAK_BEFORE_RESETS_KIB = 0  # the highest high-water mark a reset took away


def _rusage_peak_kib() -> int:
    try:
        import resource
    except ImportError:  # not on Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


def peak_memory_mib() -> float:
    """The process's peak resident memory so far in MiB (``getrusage``, and the peaks before the resets of
    :class:`Resources`; 0 where unavailable)."""
    return max(_rusage_peak_kib(), _high_water_kib() or 0, _PEAK_BEFORE_RESETS_KIB) / 1024


class Resources:
    """Measures the wall time of a ``with`` block and its peak memory: resident (the block's own where the platform
    allows, see the module's notes) and CUDA's (when CUDA is in use).

    >>> with Resources() as used:  # doctest: +SKIP
    ...     reranker(candidates)
    >>> used.as_dict()  # doctest: +SKIP
    {'wall_time_s': 12.3, 'peak_memory_mib': 1830.5, 'peak_memory_scope': 'block', 'peak_cuda_memory_mib': None}
    """

    _peak_kib: int = 0  # the highest resident KiB seen before a reset within the block
    _cuda_peak: int = 0  # the highest CUDA bytes seen before a reset within the block

    def __enter__(self) -> Resources:
        global _PEAK_BEFORE_RESETS_KIB
        before = _high_water_kib()
        if before is not None:  # what the open blocks and the process saw so far survives the reset
            for block in _OPEN_BLOCKS:
                block._peak_kib = max(block._peak_kib, before)
            _PEAK_BEFORE_RESETS_KIB = max(_PEAK_BEFORE_RESETS_KIB, before)
        self.scope = "block" if before is not None and _reset_high_water() else "process"
        self._peak_kib = 0
        self._cuda = self._cuda_in_use()
        if self._cuda:
            import torch

            peak = torch.cuda.max_memory_allocated()
            for block in _OPEN_BLOCKS:
                block._cuda_peak = max(block._cuda_peak, peak)
            torch.cuda.reset_peak_memory_stats()
        self._cuda_peak = 0
        _OPEN_BLOCKS.append(self)
        self.started = time.perf_counter()
        self.wall_time_s: float | None = None
        self.peak_kib: int | None = None
        self.cuda_peak_bytes: int | None = None
        return self

    @staticmethod
    def _cuda_in_use() -> bool:
        import torch

        return torch.cuda.is_available() and torch.cuda.is_initialized()

    def _measure(self) -> tuple[int, int | None]:
        """The block's peak so far: resident KiB, and CUDA bytes (``None`` without CUDA)."""
        if self.scope == "block":
            resident = max(self._peak_kib, _high_water_kib() or 0)
        else:
            resident = round(peak_memory_mib() * 1024)
        cuda = None
        if self._cuda or self._cuda_in_use():
            import torch

            cuda = max(self._cuda_peak, torch.cuda.max_memory_allocated())
        return resident, cuda

    def __exit__(self, *exc_info) -> None:
        self.wall_time_s = time.perf_counter() - self.started
        self.peak_kib, self.cuda_peak_bytes = self._measure()
        if self in _OPEN_BLOCKS:
            _OPEN_BLOCKS.remove(self)
        for block in _OPEN_BLOCKS:  # the enclosing blocks' peaks include this one's
            block._peak_kib = max(block._peak_kib, self.peak_kib)
            if self.cuda_peak_bytes is not None:
                block._cuda_peak = max(block._cuda_peak, self.cuda_peak_bytes)

    def as_dict(self) -> dict:
        """``wall_time_s``, ``peak_memory_mib`` (resident), ``peak_memory_scope`` (``"block"`` or ``"process"``) and
        ``peak_cuda_memory_mib`` (``None`` without CUDA); of the block so far when it has not ended."""
        if self.wall_time_s is None:
            wall, (resident, cuda) = time.perf_counter() - self.started, self._measure()
        else:
            wall, resident, cuda = self.wall_time_s, self.peak_kib or 0, self.cuda_peak_bytes
        return {"wall_time_s": round(wall, 3), "peak_memory_mib": round(resident / 1024, 1),
                "peak_memory_scope": self.scope,
                "peak_cuda_memory_mib": None if cuda is None else round(cuda / 2 ** 20, 1)}


# --- ir_metadata: the format TIREx reads beside run.txt ---------------------------------------------------------------

IR_METADATA_FILE = "ir-metadata.yml"
IR_METADATA_SCHEMA = "0.2"  # the schema version tirex-tracker 0.2 writes


def installed_distributions() -> list[str]:
    """Every installed distribution as ``name==version``, sorted (as tirex-tracker lists them)."""
    return sorted({f"{dist.metadata['Name']}=={dist.version}" for dist in metadata.distributions()
                   if dist.metadata["Name"]})


def memory_total_mb() -> int | None:
    """The machine's memory in MB (10^6 bytes, as tirex-tracker writes it): ``MemTotal`` of ``/proc/meminfo``."""
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024 // 10 ** 6
    except (OSError, ValueError):
        pass
    return None


def operating_system() -> dict[str, str | None]:
    """The kernel (``Linux 6.1.0 x86_64``) and the distribution's name (``/etc/os-release``), as tirex-tracker
    writes them."""
    try:
        distribution = platform.freedesktop_os_release().get("PRETTY_NAME")
    except (OSError, AttributeError):  # no os-release file; Python < 3.10
        distribution = None
    return {"distribution": distribution,
            "kernel": f"{platform.system()} {platform.release()} {platform.machine()}"}


def _timestamp(seconds: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="microseconds")


def ir_metadata(env: dict, used: Resources, *, name: str, description: str, started: float,
                files: dict[str, str] | None = None, command: list[str] | None = None) -> dict:
    """A run's metadata in the ``ir_metadata`` layout of tirex-tracker 0.2 (the sections ``method``,
    ``implementation``, ``platform`` and ``resources`` with tirex-tracker's keys and units: RAM in MB of 10^6 bytes,
    the process's resident memory in KiB, times in ms): ``env`` from :func:`environment`, ``used`` the measured
    work, ``name`` the system (the run's tag), ``started`` the start as ``time.time()``, ``files`` the SHA-256 of
    each result file (so that a reader can tell that the metadata belongs to the run beside it).

    >>> with Resources() as used:
    ...     pass
    >>> meta = ir_metadata(environment(), used, name="setenc", description="a re-ranker", started=0.0)
    >>> sorted(meta)
    ['implementation', 'method', 'platform', 'resources', 'schema version']
    """
    work = used.as_dict()
    build = env["torch_build"]
    gpu = None
    if str(env["device"]).startswith("cuda"):
        import torch

        gpu = {"model": env["device_name"]}
        if torch.cuda.is_available():
            total = torch.cuda.get_device_properties(torch.device(env["device"])).total_memory
            gpu["vram"] = f"{total // 10 ** 6} MB"
    runtime = {"start time": _timestamp(started), "stop time": _timestamp(started + work["wall_time_s"]),
               "wallclock": f"{round(work['wall_time_s'] * 1000)} ms"}
    resources: dict = {"runtime": runtime,
                       "ram": {"used process": {"max": round(work["peak_memory_mib"] * 1024)},
                               "used process scope": work["peak_memory_scope"]}}
    if work["peak_cuda_memory_mib"] is not None:
        vram = round(work["peak_cuda_memory_mib"] * 2 ** 20 / 10 ** 6)
        resources["gpu"] = {"vram used process": {"max": f"{vram} MB"}}
    ram = memory_total_mb()
    meta = {
        "schema version": IR_METADATA_SCHEMA,
        "method": {"name": name, "description": description},
        "implementation": {
            "executable": {"cmd": command if command is not None else [sys.executable, *sys.argv]},
            "python": {"version": env["python"], "packages": installed_distributions(), "interactive": False},
            "source": {"lang": "python"},
        },
        "platform": {
            "hardware": {
                "cpu": {"model": env["cpu_model"], "architecture": platform.machine(),
                        "number of cores": env["cpu_count"], "torch threads": env["torch_threads"]},
                "gpu": gpu,
                "ram": None if ram is None else f"{ram} MB",
            },
            "operating system": operating_system(),
            "software": {**{package: version for package, version in env["packages"].items() if version is not None},
                         "torch build": {"cuda": build["cuda"], "cpu capability": build["cpu_capability"]},
                         "device": env["device"], "device name": env["device_name"]},
        },
        "resources": resources,
    }
    if files:
        meta["results"] = {name: {"sha256": digest} for name, digest in files.items()}
    return meta


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_ir_metadata(path, meta: dict):
    """Writes ``meta`` as YAML to ``path`` atomically (:func:`pyterrier_setenc.atomic.atomic_write`)."""
    import yaml

    from .atomic import atomic_write

    return atomic_write(path, lambda file: yaml.safe_dump(meta, file, sort_keys=False, allow_unicode=True))
