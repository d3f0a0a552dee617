"""Fine-tuning Set-Encoder and mono cross-encoders on listwise samples; checkpoints in lightning-ir's format.

The command-line modules (``training.export``, ``training.trainer``, ...) are not imported here, so that
``python -m training.export`` runs its module once; ``save_checkpoint`` is in :mod:`training.export`.
"""

from .data import GradedCandidates, HardNegatives, Mixture, Sample, TeacherRanking, build_source
from .losses import approx_discounted_rank_mse, get_loss, info_nce, ranknet
from .model import build_model, load_model, score

__all__ = ["GradedCandidates", "HardNegatives", "Mixture", "Sample", "TeacherRanking", "build_source",
           "approx_discounted_rank_mse", "get_loss", "info_nce", "ranknet", "build_model",
           "load_model", "score"]
