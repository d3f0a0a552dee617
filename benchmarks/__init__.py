"""Timed comparisons of the re-rankers (run as modules, e.g. ``python -m benchmarks.inference``)."""
