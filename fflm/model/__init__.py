"""The landmark model: its layers, the hourglasses, the two-stage network and the copy it serves."""

from fflm.model.config import HourglassConfig, ModelConfig, preset
from fflm.model.network import LandmarkNet

__all__ = ["HourglassConfig", "ModelConfig", "LandmarkNet", "preset"]
