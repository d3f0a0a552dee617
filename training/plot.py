"""Loss curves of training runs as a PNG, from the ``log.jsonl`` files the trainer writes.

    python -m training.plot OUT.png RUN_DIR[=LABEL] [RUN_DIR[=LABEL] ...] [--smooth 10]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from pyterrier_setenc.atomic import atomic_write


def read_log(folder: str | os.PathLike) -> list[dict]:
    path = Path(folder) / "log.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no training log at {path}")
    records: dict[int, dict] = {}
    with open(path, encoding="utf-8") as file:
        for line in file:
            record = json.loads(line)
            records[record["step"]] = record  # a resumed run logs steps after the state again: the last wins
    return [records[step] for step in sorted(records)]


def moving_average(values: list[float], window: int) -> list[float]:
    return [sum(values[max(0, i - window + 1):i + 1]) / len(values[max(0, i - window + 1):i + 1])
            for i in range(len(values))]


def plot(runs: dict[str, str | os.PathLike], output: str | os.PathLike, smooth: int = 10,
         title: str = "training loss") -> Path:
    """One line per run (raw loss faint, moving average solid); written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for label, folder in runs.items():
        records = read_log(folder)
        steps = [r["step"] for r in records]
        losses = [r["loss"] for r in records]
        line, = axis.plot(steps, losses, alpha=0.3, linewidth=0.8)
        axis.plot(steps, moving_average(losses, smooth), color=line.get_color(), label=f"{label} ({smooth}-step mean)")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    try:
        return atomic_write(output, lambda file: figure.savefig(file, format="png", dpi=120), binary=True)
    finally:
        plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("runs", nargs="+", help="a training output_dir, optionally =LABEL")
    parser.add_argument("--smooth", type=int, default=10)
    parser.add_argument("--title", default="training loss")
    args = parser.parse_args(argv)
    runs = {}
    for item in args.runs:
        folder, _, label = item.partition("=")
        runs[label or Path(folder).name] = folder
    print(plot(runs, args.output, args.smooth, args.title))


if __name__ == "__main__":
    main()
