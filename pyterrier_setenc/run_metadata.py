"""What a result was computed with: package versions, the torch build, the device, the CPU model and threads
(:func:`environment`), and the wall time and peak memory of a piece of work (:class:`Resources`).

>>> from pyterrier_setenc.run_metadata import Resources, environment
>>> with Resources() as used:
...     _ = sum(range(1000))
>>> sorted(used.as_dict())
['peak_cuda_memory_mib', 'peak_memory_mib', 'wall_time_s']
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


def peak_memory_mib() -> float:
    """The process's peak resident memory so far in MiB (``getrusage``; 0 where unavailable)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)  # bytes on macOS, KiB on Linux


class Resources:
    """Measures the wall time of a ``with`` block, and the process's peak memory (resident, and CUDA's when used)
    at its end.

    >>> with Resources() as used:  # doctest: +SKIP
    ...     reranker(candidates)
    >>> used.as_dict()  # doctest: +SKIP
    {'wall_time_s': 12.3, 'peak_memory_mib': 1830.5, 'peak_cuda_memory_mib': None}
    """

    def __enter__(self) -> Resources:
        self.started = time.perf_counter()
        self.wall_time_s: float | None = None
        return self

    def __exit__(self, *exc_info) -> None:
        self.wall_time_s = time.perf_counter() - self.started

    def as_dict(self) -> dict:
        import torch

        cuda = torch.cuda.max_memory_allocated() / 2 ** 20 if torch.cuda.is_available() else None
        wall = self.wall_time_s if self.wall_time_s is not None else time.perf_counter() - self.started
        return {"wall_time_s": round(wall, 3), "peak_memory_mib": round(peak_memory_mib(), 1),
                "peak_cuda_memory_mib": None if cuda is None else round(cuda, 1)}
