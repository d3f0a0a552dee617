"""``python -m pipelines.dl19``: the paper's Table 1 on DL19 (see :mod:`pipelines.dl`; ``--help`` for options)."""

from .dl import main

if __name__ == "__main__":
    main("dl19")
