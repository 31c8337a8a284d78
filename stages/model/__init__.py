"""The Avat3r network, its config and checkpoints."""

from stages.model.config import PRESETS, ModelConfig, preset
from stages.model.network import Avat3rNet, GaussianMaps, IdentityState, count_parameters

__all__ = ["PRESETS", "Avat3rNet", "GaussianMaps", "IdentityState", "ModelConfig", "count_parameters", "preset"]
