"""Models by name: SNNs (snnTorch, Norse, published CXR SNNs) and CNN baselines."""

from neurocxr.models.base import (
    MODEL_REGISTRY,
    ModelConfig,
    SNNOutput,
    SpikingSequential,
    build_model,
    is_snn,
    model_info,
    register_model,
)
from neurocxr.models import snn as _snn  # noqa: F401  (registers snn_conv)

__all__ = [
    "MODEL_REGISTRY",
    "ModelConfig",
    "SNNOutput",
    "SpikingSequential",
    "build_model",
    "is_snn",
    "model_info",
    "register_model",
]
