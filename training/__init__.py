"""Fine-tuning Set-Encoder and mono cross-encoders on listwise samples; checkpoints in lightning-ir's format."""

from .data import GradedCandidates, HardNegatives, Mixture, Sample, TeacherRanking, build_source
from .export import save_checkpoint
from .losses import approx_discounted_rank_mse, get_loss, info_nce, ranknet
from .model import build_model, load_model, score

__all__ = ["GradedCandidates", "HardNegatives", "Mixture", "Sample", "TeacherRanking", "build_source",
           "save_checkpoint", "approx_discounted_rank_mse", "get_loss", "info_nce", "ranknet", "build_model",
           "load_model", "score"]
