"""``python -m pipelines.dl19``: the paper's Table 1 on DL19 (see :mod:`pipelines.dl`; ``--help`` for options)."""

if __name__ == "__main__":  # the arguments (and --help) are read before pipelines.dl, which loads torch
    from .cli import command_line

    ARGUMENTS = command_line("dl19").parse_args()

    from .dl import main

    main("dl19", ARGUMENTS)
