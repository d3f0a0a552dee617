"""What a figure was measured on: the device, and for a CPU torch's capability and the instructions that decide
half precision and int8 (bfloat16, VNNI, AMX), printed with every benchmark table.

>>> "threads" in describe("cpu", 2)
True
"""

from __future__ import annotations

import platform


def cpu_flags() -> dict[str, bool]:
    """The instructions that decide the speed of half precision and int8 on this CPU, as torch sees them."""
    import torch

    checks = {"avx512": "_is_avx512_supported", "avx512_bf16": "_is_avx512_bf16_supported",
              "vnni": "_is_vnni_supported", "amx": "_is_amx_tile_supported"}
    return {name: bool(getattr(torch.cpu, check, lambda: False)()) for name, check in checks.items()}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(device: str = "cpu", threads: int | None = None) -> str:
    """One line: the GPU's name, or the CPU's model, torch's CPU capability, its flags and the thread count."""
    import torch

    if str(device).startswith("cuda"):
        index = torch.device(device).index or 0
        return f"GPU {torch.cuda.get_device_name(index)} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    flags = ", ".join(f"{name} {'yes' if present else 'no'}" for name, present in cpu_flags().items())
    return (f"CPU {cpu_model()}, torch capability {torch.backends.cpu.get_cpu_capability()} ({flags}), "
            f"{threads or torch.get_num_threads()} threads, torch {torch.__version__}")
