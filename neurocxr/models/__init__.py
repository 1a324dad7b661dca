"""Models by name: SNNs (snnTorch, Norse, published CXR SNNs) and CNN baselines."""

from neurocxr.models import snn as _snn  # noqa: F401  (registers snn_conv)
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
from neurocxr.models import cnn as _cnn  # noqa: F401,E402  (cnn_small, resnet18)
from neurocxr.models import norse_snn as _norse_snn  # noqa: F401,E402  (registers snn_norse)
from neurocxr.models import papers as _seeds  # noqa: F401,E402  (resnet18_sa, medspectralnet, resnet50)
from neurocxr.models import published as _published  # noqa: F401,E402  (gatti2025, slimi2025)
from neurocxr.models import recurrent as _recurrent  # noqa: F401,E402  (snn_recurrent: conv front end + RSynaptic)
from neurocxr.models import vgg as _vgg  # noqa: F401,E402  (snn_vgg, cnn_vgg: VGG-style chains, conversion)
