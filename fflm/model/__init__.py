"""The landmark model: hourglasses, heads, RoIAlign and the two-stage network."""

from fflm.model.config import HourglassConfig, ModelConfig, preset
from fflm.model.network import LandmarkNet

__all__ = ["HourglassConfig", "ModelConfig", "LandmarkNet", "preset"]
