"""snn_conv's architecture with Norse neurons (``LIFBoxCell``), Loihi-deployable.

Norse's box LIF integrates ``v <- v + dt * tau_mem_inv * (v_leak - v + I)``: with ``v_leak = 0``
and ``a = dt * tau_mem_inv`` that is ``v <- (1 - a) v + a I``, i.e. a discrete LIF with
``beta = 1 - a`` whose input is scaled by ``a``. We choose ``tau_mem_inv = (1 - beta) / dt`` so the
leak equals snn_conv's ``beta``, and ``v_th = a * threshold`` so that, with the same weights, the
spikes are those of snn_conv (up to float rounding). Reset is to ``v_reset = 0`` (Loihi's reset).

Input neurons for ``encoding="direct"``: snn_conv uses integrate-and-fire (beta 1, threshold 0.5),
which a box LIF cannot express (``beta = 1`` means ``a = 0``: no input at all). We use the nearest
box LIF, ``beta = 0.99`` with threshold ``0.01 * 0.5``: over the 16-32 steps used here it fires on
the same steps as the IF neuron for all but the darkest pixels (a pixel below 0.5 % never fires).
"""

from __future__ import annotations

import torch
from norse.torch import LIFBoxCell, LIFBoxParameters

from neurocxr.models.base import ModelConfig, SpikingSequential, register_model
from neurocxr.models.snn import conv_snn

#: Norse integration step (seconds); tau_mem is derived from beta with it.
NORSE_DT = 1e-3
#: Leak of the direct-encoding input neurons (IF cannot be expressed by LIFBoxCell, see module doc).
NORSE_INPUT_BETA = 0.99
#: Fast-sigmoid slope snn_conv uses; Norse's SuperSpike surrogate has the same shape.
SURROGATE_SLOPE = 25.0


def norse_lif(beta: float, threshold: float, dt: float = NORSE_DT) -> LIFBoxCell:
    """A reset-to-zero Norse box LIF that behaves as a discrete LIF with leak ``beta`` and
    threshold ``threshold`` on unscaled input (see module docstring for the mapping)."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"Norse LIFBoxCell needs 0 <= beta < 1, got {beta}")
    input_scale = 1.0 - beta  # = dt * tau_mem_inv
    params = LIFBoxParameters(
        tau_mem_inv=torch.as_tensor(input_scale / dt),
        v_leak=torch.as_tensor(0.0),
        v_th=torch.as_tensor(input_scale * threshold),
        v_reset=torch.as_tensor(0.0),
        method="super",
        # Same surrogate shape as snn_conv's fast sigmoid in unscaled voltage units.
        alpha=torch.as_tensor(SURROGATE_SLOPE / input_scale),
    )
    return LIFBoxCell(params, dt=dt)


@register_model(
    "snn_norse",
    kind="snn",
    loihi_deployable=True,
    description="snn_conv's conv(16)-LIF-avgpool-conv(32)-LIF-avgpool-fc(128)-LIF-readout with Norse "
    "LIFBoxCell neurons (reset to 0, tau_mem from beta at dt=1 ms); Loihi-exportable",
)
def build_snn_norse(config: ModelConfig) -> SpikingSequential:
    # Norse's LIFBoxCell cannot integrate without leak (beta 1 means tau_mem_inv 0: no input at
    # all), so the input neurons use NORSE_INPUT_BETA instead of snn_conv's IF neurons.
    return conv_snn(
        config, norse_lif, lambda beta, threshold: norse_lif(NORSE_INPUT_BETA, threshold)
    )
