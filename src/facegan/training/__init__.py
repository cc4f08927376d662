"""The training loop, its configuration, checkpoints and reports."""
from .config import TrainConfig
from .loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
