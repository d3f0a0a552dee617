"""Floating-point operations a BERT/ELECTRA encoder needs for real tokens only (no padding), counting a
multiply-add as two: the linear layers of every token, and attention scores and weighted sums over the keys each
token sees (its own sequence's tokens, plus the interaction tokens of the other passages for a Set-Encoder).

>>> model_flops({"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12}, [100, 80], True)
31187681280
"""

from __future__ import annotations


def model_flops(config: dict, lengths: list[int], listwise: bool) -> int:
    """FLOPs of one list of sequences of the given token ``lengths``, scored jointly if ``listwise``."""
    hidden, intermediate = config["hidden_size"], config["intermediate_size"]
    tokens = sum(lengths)
    linear = 2 * tokens * (4 * hidden * hidden + 2 * hidden * intermediate)
    partners = len(lengths) - 1 if listwise else 0
    attention = sum(4 * hidden * length * (length + partners) for length in lengths)
    return config["num_hidden_layers"] * (linear + attention)
