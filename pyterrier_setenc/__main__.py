"""The package's commands: ``python -m pyterrier_setenc COMMAND`` (or ``pyterrier-setenc COMMAND``).

- ``rerank``: re-rank a TREC run or a ``rerank.jsonl(.gz)`` and write a TREC run (:mod:`.rerank_command`);
- ``tirex``: TIREx's entry point, ``rerank.jsonl(.gz)`` in a folder to ``run.txt`` (:mod:`.tirex`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS = {"rerank": ("pyterrier_setenc.rerank_command", "re-rank a TREC run or a rerank.jsonl(.gz)"),
            "tirex": ("pyterrier_setenc.tirex", "TIREx's entry point: rerank.jsonl(.gz) to run.txt")}
USAGE = "usage: pyterrier-setenc {" + ",".join(COMMANDS) + "} ... (COMMAND --help for its options)\n\n" + \
    "".join(f"  {name:<8} {help}\n" for name, (_, help) in COMMANDS.items())


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command named by the first argument; returns its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="", file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"{USAGE}\npyterrier-setenc: error: unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
