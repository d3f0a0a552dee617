"""``python -m pipelines.dl20``: the paper's Table 1 on DL20 (see :mod:`pipelines.dl`; ``--help`` for options)."""

from .dl import main

if __name__ == "__main__":
    main("dl20")
