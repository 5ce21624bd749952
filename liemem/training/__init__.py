"""Training and evaluation: configurations, data, the loop, checkpoints and metrics."""

from .checkpoint import CheckpointError
from .config import TrainConfig, config_from_dict, load_config, parse_lengths
from .evaluate import Scores, evaluate
from .loop import RunSummary, TrainingDiverged, learning_rate, restore_model, train

__all__ = [
    "CheckpointError",
    "RunSummary",
    "Scores",
    "TrainConfig",
    "TrainingDiverged",
    "config_from_dict",
    "evaluate",
    "learning_rate",
    "load_config",
    "parse_lengths",
    "restore_model",
    "train",
]
