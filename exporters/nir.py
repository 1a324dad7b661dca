"""PyTorch SNN <-> NIR graph: the one module that knows NIR, snnTorch and Norse quirks.

The conversion walks `SpikingSequential.layers` directly instead of calling snnTorch's
``export_to_nir`` or Norse's ``to_nir`` (both have known bugs, see ../shared/docs/loihi.md).

Time discretisation (NIR is continuous time and stores no dt; we write dt to ``graph.metadata``).
Forward Euler with step dt, current updated first and the membrane then using the new current
(snnTorch's and Loihi's CUBA order):

    LIF:      v <- (1 - dt/tau) v + (dt/tau) r I                      (v_leak = 0)
    IF:       v <- v + dt r I
    CubaLIF:  I <- (1 - dt/tau_syn) I + (dt/tau_syn) w_in S ;  v <- (1 - dt/tau_mem) v + (dt/tau_mem) r I

Export conventions: the graph loads in snnTorch 1.0 (``snntorch.import_from_nir``) and Norse 1.1
(``norse.torch.from_nir(graph, dt=graph.metadata["dt"])``) with the same spikes, and in our own
reader bit for bit. Those readers constrain it:
- dt = 1e-4 (`DEFAULT_DT`): snnTorch's importer hard-codes it. Norse takes dt as an argument.
- snnTorch ``Leaky(beta)`` / our ``LIF`` with threshold theta: ``LIF(tau = dt/(1-beta), r = 1,
  v_threshold = theta * dt/tau)``, i.e. NIR's ``v <- beta v + (1-beta) I``, the same spikes as
  ``v <- beta v + I`` with threshold theta. Norse ignores r (it assumes 1) and snnTorch divides the
  threshold by its ``r*dt/tau``, so both rebuild the unit-gain neuron. ``beta == 1`` (the input
  neurons of ``snn_conv``) is written as LIF with ``tau = 2**40 dt``, a leak far below float32
  resolution: snnTorch builds IF nodes as Leaky(beta=0.9) (snntorch#416). The exact float32 beta
  and theta travel in the node metadata (``neurocxr_exact``).
- ``AvgPool2d(k)`` is written as a ``Conv2d`` from C to C channels with ``1/(kH*kW)`` on the
  diagonal and zero bias (node metadata ``neurocxr_pool``): snnTorch reads AvgPool2d but not
  SumPool2d or Scale, Norse reads SumPool2d but not AvgPool2d or Scale, and both build grouped
  convolutions with the wrong channel count. neurocxr's readers turn it back into the pool.
- ``Flatten`` has ``start_dim = 0`` (NIR shapes have no batch dimension). snnTorch and Norse pass
  it to ``torch.nn.Flatten`` unchanged, so feed their modules one unbatched sample (C, H, W) per
  step; a batch would be flattened into one vector.
- snnTorch ``Synaptic(alpha, beta)`` / our ``CubaLIF``: ``tau_syn = dt/(1-alpha)``,
  ``w_in = tau_syn/dt``, ``tau_mem = dt/(1-beta)``, ``r = tau_mem/dt``.
- Norse ``LIFBoxCell``: Norse computes ``v <- v + c (I - v)`` with ``c = dt_norse * tau_mem_inv``;
  that is ``tau = dt/c`` (the real tau_mem when the cell's dt equals the graph dt) and ``r = 1``.
- Norse ``LIFCell`` (1.1.0 source, ``lif_feed_forward_step``): ``j = i + x`` (current jump first),
  ``v <- v + c_m (j - v)``, then ``i <- (1 - c_s) j``. So ``j`` follows ``j <- (1-c_s) j + x`` and
  the membrane uses the *new* current: CubaLIF with ``tau_syn = dt/c_s``, ``w_in = tau_syn/dt``,
  ``tau_mem = dt/c_m``, ``r = 1``. (Older Norse docs describe the membrane using the old current;
  the installed source does not.)

- A recurrent neuron (`neurons.RecurrentNeuron`: input ``x[t] + R s[t-1]``, snnTorch's RLeaky/RSynaptic)
  is written as a sub-graph ``Input -> lif -> Output`` with ``lif -> w_rec -> lif`` and the graph's nodes
  numbered in chain order (``n0_input``, ...): snnTorch 1.0's ``import_from_nir`` and Norse 1.1's
  ``from_nir`` run that form with our readout (the flat form snnTorch's own exporter writes they do not:
  snnTorch re-wraps the pair with the input feeding ``w_rec``; Norse returns ``w_rec``'s output; and
  snnTorch fails on a sub-graph whose nodes are not in chain order, which ``nir.read``'s alphabetical
  order gives). Our readers take both forms (`inline_recurrent_subgraphs`, `fold_recurrence`).

Parameters are float64 arrays of the layer's shape (scalars break nir type inference). Betas are
recovered on import as ``float32(1 - dt/tau)``; the exporter checks that this gives back the
model's float32 beta bit for bit and otherwise also stores the exact float32 values in the node's
metadata (``neurocxr_exact``), which the importer prefers.

Import: a NIR neuron whose input gain ``dt*r/tau`` (or ``dt*w_in/tau_syn * dt*r/tau_mem``) is not 1
is built as our unit-gain neuron with the threshold divided by that gain: with reset to zero and
no leak potential, scaling input and threshold together leaves the spikes unchanged (only the
membrane's units change).

On import, NIR ``AvgPool2d``, a ``SumPool2d`` followed by a uniform ``Scale`` of ``1/(kH*kW)`` and
our pool-as-convolution all become ``nn.AvgPool2d``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import nir
import numpy as np
import torch
from torch import nn

from neurocxr.errors import ExportError, NeurocxrError, UnsupportedLayerError
from neurocxr.exporters.program import as_pair
from neurocxr.fileio import atomic_write
from neurocxr.models import neurons as nrn
from neurocxr.models.base import ModelConfig, SpikingSequential, is_neuron
from neurocxr.validation import describe_file, file_kind, missing_file_message

# Seconds per time step; NIR stores no dt, so it goes into graph.metadata. 1e-4 because snnTorch's
# import_from_nir hard-codes dt = 1e-4 (a graph written with another dt loads there with wrong decays).
DEFAULT_DT = 1e-4
FALLBACK_DT = 1e-3  # from_nir's guess (with a warning) for a graph that states no dt and got none
IF_TAU_STEPS = (
    2.0**40
)  # a non-leaky neuron is written as LIF with tau = 2**40 dt (decay 1 - 2**-40)
POOL_KEY = "neurocxr_pool"  # Conv2d node metadata marking an average pool written as a convolution
PRODUCER = "neurocxr"
EXACT_KEY = "neurocxr_exact"  # node metadata holding exact float32 neuron parameters
_GAIN_TOL = 1e-9  # input gains this close to 1 are exactly 1 (float64 noise of tau/dt round trips)

_WHY_UNSUPPORTED: dict[str, str] = {
    "MaxPool1d": "max pooling on spikes is not linear: Loihi synapses only sum; replace it with AvgPool2d and retrain",
    "MaxPool2d": "MaxPool2d on spikes is not linear: Loihi synapses only sum; replace it with AvgPool2d and retrain",
    "AdaptiveMaxPool2d": "max pooling on spikes is not linear: Loihi synapses only sum; use AvgPool2d and retrain",
    "GRU": "gated recurrent units multiply activations (gates); Loihi neurons only integrate weighted spike sums; "
    "use LIF neurons (snnTorch Leaky) instead and retrain",
    "LSTM": "LSTM gates multiply activations; Loihi neurons only integrate weighted spike sums; "
    "use LIF neurons (snnTorch Leaky) instead and retrain",
    "RNN": "a non-spiking recurrent layer cannot run on Loihi; use LIF neurons and retrain",
    "MultiheadAttention": "attention multiplies activations with each other (QK^T); Loihi synapses only apply "
    "fixed weights to spikes; use a convolutional/linear SNN",
}
_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softmax,
    nn.Hardtanh,
)


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


class ElementwiseScale(nn.Module):
    """``y = x * scale`` (NIR ``Scale`` that could not be folded into a pooling layer)."""

    def __init__(self, scale: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def _np(t: torch.Tensor | float, shape: tuple[int, ...]) -> np.ndarray:
    """A parameter as a float32 numpy array broadcast to the layer's shape."""
    arr = torch.as_tensor(t).detach().cpu().to(torch.float32)
    try:
        arr = torch.broadcast_to(arr, shape)
    except RuntimeError as exc:
        raise ExportError(
            f"neuron parameter of shape {tuple(arr.shape)} does not broadcast to the layer shape {shape}"
        ) from exc
    return arr.numpy().copy()


def _tau_from_decay(decay32: np.ndarray, dt: float) -> np.ndarray:
    """tau = dt / (1 - decay) in float64; inf where decay == 1 (no leak)."""
    d = decay32.astype(np.float64)
    with np.errstate(divide="ignore"):
        return np.where(d >= 1.0, np.inf, dt / (1.0 - d))


def _decay_from_tau(tau: np.ndarray, dt: float) -> np.ndarray:
    """float32(1 - dt/tau): the inverse of `_tau_from_decay`."""
    tau = np.asarray(tau, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.asarray(1.0 - dt / tau).astype(np.float32)


def _ratio_over_dt(num: np.ndarray, tau: np.ndarray, dt: float) -> np.ndarray:
    """dt * num / tau, with num == tau == inf read as the limit 1 (no-leak neurons written as tau = r = inf)."""
    num = np.asarray(num, dtype=np.float64)
    tau = np.asarray(tau, dtype=np.float64)
    both_inf = np.isinf(num) & np.isinf(tau)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = np.where(both_inf, 1.0, dt * (num / np.where(both_inf, 1.0, tau)))
    return np.where(np.abs(g - 1.0) <= _GAIN_TOL, 1.0, g)


def _name_layer(index: int, layer: nn.Module) -> str:
    return f"layer {index} ({type(layer).__name__})"


def _flatten_modules(modules: Iterator[nn.Module]) -> list[nn.Module]:
    out: list[nn.Module] = []
    for m in modules:
        if isinstance(m, nn.Sequential):
            out.extend(_flatten_modules(iter(m)))
        else:
            out.append(m)
    return out


def _model_layers(model: nn.Module) -> tuple[list[nn.Module], nn.Module | None]:
    """The flat layer list and the readout of a SpikingSequential (or an nn.Sequential)."""
    if isinstance(model, SpikingSequential):
        return _flatten_modules(iter(model.layers)), model.readout
    if isinstance(model, nn.Sequential):
        return _flatten_modules(iter(model)), None
    raise UnsupportedLayerError(
        f"model of type {type(model).__name__} is not a SpikingSequential or nn.Sequential: its forward() may branch "
        "or carry state the exporter cannot see, and Loihi (netx) holds only a chain of layers; rebuild it as a "
        "neurocxr SpikingSequential (conv/linear/avgpool/flatten + LIF neurons)"
    )


# --------------------------------------------------------------------------------------------
# export: torch -> NIR
# --------------------------------------------------------------------------------------------


def _check_eval(layers: list[nn.Module]) -> None:
    for i, m in enumerate(layers):
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout)) and m.training:
            raise ExportError(
                f"{_name_layer(i, m)} is in training mode; call model.eval() before export "
                "(BatchNorm is folded with its running statistics and Dropout is skipped)"
            )


def _unsupported(i: int, m: nn.Module) -> UnsupportedLayerError:
    kind = type(m).__name__
    if kind in _WHY_UNSUPPORTED:
        why = _WHY_UNSUPPORTED[kind]
    elif isinstance(m, _ACTIVATIONS):
        why = (
            f"a non-spiking activation ({kind}) inside an SNN cannot run on Loihi, where layers talk only through "
            "spikes; replace it with a spiking neuron (snntorch.Leaky(reset_mechanism='zero', "
            "reset_delay=False)) and retrain"
        )
    else:
        why = (
            "unknown module type: the NIR exporter knows Conv2d, Linear, AvgPool2d, Flatten, BatchNorm1d/2d (folded), "
            "Dropout (skipped) and LIF/CubaLIF neurons (snnTorch Leaky/Synaptic, Norse LIFBoxCell/LIFCell, neurocxr)"
        )
    return UnsupportedLayerError(f"cannot export {_name_layer(i, m)}: {why}")


def _fold_bn(weight: np.ndarray, bias: np.ndarray, bn: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """Fold eval-mode BatchNorm into the preceding conv/linear (float64 arithmetic, float32 result)."""
    mean = bn.running_mean.detach().double().numpy()
    var = bn.running_var.detach().double().numpy()
    gamma = bn.weight.detach().double().numpy() if bn.weight is not None else np.ones_like(mean)
    shift = bn.bias.detach().double().numpy() if bn.bias is not None else np.zeros_like(mean)
    k = gamma / np.sqrt(var + bn.eps)
    w = weight.astype(np.float64) * k.reshape((-1,) + (1,) * (weight.ndim - 1))
    b = (bias.astype(np.float64) - mean) * k + shift
    return w.astype(np.float32), b.astype(np.float32)


def _neuron_node(i: int, m: nn.Module, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
    """NIR node for one neuron module acting on per-sample shape ``shape``."""
    import snntorch as snn

    where = _name_layer(i, m)
    exact: dict[str, np.ndarray] = {}

    if isinstance(m, snn.Leaky) or isinstance(m, snn.Synaptic):
        mech = getattr(m, "reset_mechanism", "subtract")
        if mech != "zero":
            raise UnsupportedLayerError(
                f"cannot export {where}: reset_mechanism={mech!r}; Loihi's CUBA neuron resets the membrane to zero, "
                "so only reset_mechanism='zero' (with reset_delay=False) is exact; rebuild the "
                "neuron that way and retrain"
            )
        if getattr(m, "reset_delay", True):
            raise UnsupportedLayerError(
                f"cannot export {where}: reset_delay=True keeps the membrane above threshold for one extra step, "
                "which Loihi does not do; use reset_delay=False and retrain"
            )
        if getattr(m, "inhibition", False) or getattr(m, "state_quant", False):
            raise UnsupportedLayerError(
                f"cannot export {where}: inhibition/state_quant have no NIR or Loihi equivalent"
            )
        if (
            float(torch.as_tensor(m.graded_spikes_factor).detach().reshape(-1)[0]) != 1.0
            or torch.as_tensor(m.graded_spikes_factor).numel() != 1
        ):
            raise UnsupportedLayerError(
                f"cannot export {where}: graded spikes (graded_spikes_factor != 1) are not binary spikes"
            )
        beta = _np(torch.as_tensor(m.beta).clamp(0, 1), shape)
        thr = _np(m.threshold, shape)
        alpha = (
            _np(torch.as_tensor(m.alpha).clamp(0, 1), shape)
            if isinstance(m, snn.Synaptic)
            else None
        )
        kind = "cuba" if alpha is not None else "lif"
    elif isinstance(m, (nrn.LIF, nrn.CubaLIF)):
        beta = _np(m.beta, shape)
        thr = _np(m.threshold, shape)
        alpha = _np(m.alpha, shape) if isinstance(m, nrn.CubaLIF) else None
        kind = "cuba" if alpha is not None else "lif"
    else:
        return _norse_node(where, m, shape, dt)

    if np.any(thr < 0):
        raise UnsupportedLayerError(
            f"cannot export {where}: negative thresholds; Loihi thresholds are unsigned"
        )
    thr64 = thr.astype(np.float64)
    zeros = np.zeros(shape, dtype=np.float64)
    tau_mem = _tau_from_decay(beta, dt)
    if not np.array_equal(_decay_from_tau(tau_mem, dt), beta):
        exact["beta"] = beta
    if kind == "lif":
        # Portable form (see the module docstring): r = 1 and the threshold in NIR's units, theta * dt/tau;
        # beta == 1 becomes a leak of 2**-40 per step (snnTorch reads IF nodes as leaky, snntorch#416).
        tau = np.where(beta >= 1.0, dt * IF_TAU_STEPS, tau_mem)
        gain = dt / tau
        exact["beta"] = beta
        exact["threshold"] = thr
        return nir.LIF(
            tau=tau,
            r=np.ones(shape),
            v_leak=zeros.copy(),
            v_threshold=thr64 * gain,
            v_reset=zeros.copy(),
            metadata={EXACT_KEY: exact},
        )
    r = np.where(np.isinf(tau_mem), np.inf, tau_mem / dt)
    assert alpha is not None
    tau_syn = _tau_from_decay(alpha, dt)
    if not np.array_equal(_decay_from_tau(tau_syn, dt), alpha):
        exact["alpha"] = alpha
    w_in = np.where(np.isinf(tau_syn), np.inf, tau_syn / dt)
    return nir.CubaLIF(
        tau_syn=tau_syn,
        tau_mem=tau_mem,
        r=r,
        v_leak=zeros.copy(),
        v_threshold=thr64,
        v_reset=zeros.copy(),
        w_in=w_in,
        metadata={EXACT_KEY: exact} if exact else {},
    )


def _norse_node(where: str, m: nn.Module, shape: tuple[int, ...], dt: float) -> nir.NIRNode:
    from norse.torch import LIFBoxCell, LIFCell
    from norse.torch.functional.reset import reset_value

    if not isinstance(m, (LIFBoxCell, LIFCell)):
        raise UnsupportedLayerError(
            f"cannot export {where}: not a neuron type the NIR exporter knows"
        )
    p = m.p
    if torch.any(torch.as_tensor(p.v_leak) != 0) or torch.any(torch.as_tensor(p.v_reset) != 0):
        raise UnsupportedLayerError(
            f"cannot export {where}: Norse v_leak/v_reset must be 0; Loihi has no leak potential and resets to zero"
        )
    if getattr(p, "reset_method", reset_value) is not reset_value:
        raise UnsupportedLayerError(
            f"cannot export {where}: only Norse's reset-to-value (zero) matches Loihi"
        )
    if getattr(p, "method", "super") == "adjoint":
        raise UnsupportedLayerError(
            f"cannot export {where}: the adjoint LIF method has no NIR equivalent"
        )
    # Norse computes the decay as dt_cell * tau_inv in float32: reproduce that product exactly.
    c_mem = _np(
        torch.as_tensor(m.dt) * torch.as_tensor(p.tau_mem_inv, dtype=torch.float32), shape
    ).astype(np.float64)
    thr = _np(p.v_th, shape).astype(np.float64)
    zeros = np.zeros(shape, dtype=np.float64)
    tau_mem = dt / c_mem
    ones = np.ones(shape, dtype=np.float64)
    meta = {"source": f"norse.{type(m).__name__}"}
    if isinstance(m, LIFBoxCell):
        return nir.LIF(
            tau=tau_mem,
            r=ones,
            v_leak=zeros.copy(),
            v_threshold=thr,
            v_reset=zeros.copy(),
            metadata=meta,
        )
    c_syn = _np(
        torch.as_tensor(m.dt) * torch.as_tensor(p.tau_syn_inv, dtype=torch.float32), shape
    ).astype(np.float64)
    tau_syn = dt / c_syn
    return nir.CubaLIF(
        tau_syn=tau_syn,
        tau_mem=tau_mem,
        r=ones,
        v_leak=zeros.copy(),
        v_threshold=thr,
        v_reset=zeros.copy(),
        w_in=tau_syn / dt,
        metadata=meta,
    )


def _pool_as_conv(
    shape: tuple[int, ...], k: tuple[int, int], s: tuple[int, int], pad: tuple[int, int]
) -> nir.Conv2d:
    """AvgPool2d as the Conv2d every NIR reader knows: channel c -> c with weight 1/(kH*kW), zero bias.

    snnTorch 1.0 reads AvgPool2d but not SumPool2d/Scale; Norse 1.1 reads SumPool2d but not
    AvgPool2d/Scale; both mis-build grouped convolutions (in_channels = weight.shape[1]). A full
    (C, C, kH, kW) convolution with a diagonal of 1/(kH*kW) is read right by all of them; the node's
    metadata lets neurocxr read it back as the AvgPool2d it was.
    """
    c = int(shape[0])
    w = np.zeros((c, c, k[0], k[1]), dtype=np.float32)
    w[np.arange(c), np.arange(c)] = np.float32(1.0 / (k[0] * k[1]))
    return nir.Conv2d(
        input_shape=tuple(shape[1:]),
        weight=w,
        stride=s,
        padding=pad,
        dilation=(1, 1),
        groups=1,
        bias=np.zeros(c, dtype=np.float32),
        metadata={
            POOL_KEY: {
                "kind": "avg",
                "kernel_size": list(k),
                "stride": list(s),
                "padding": list(pad),
            }
        },
    )


def pool_of_conv(
    node: nir.NIRNode,
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None:
    """(kernel, stride, padding) when ``node`` is an average pool written by `_pool_as_conv`, else None.

    Checked against the weights, so a stale marker on a real convolution is not trusted.
    """
    meta = node.metadata if isinstance(getattr(node, "metadata", None), dict) else {}
    info = _plain(meta.get(POOL_KEY))
    if not isinstance(node, nir.Conv2d) or not isinstance(info, dict):
        return None
    k = as_pair(tuple(int(v) for v in np.ravel(info["kernel_size"])))
    w = np.asarray(node.weight, dtype=np.float64)
    c = w.shape[0]
    expect = np.zeros((c, c, k[0], k[1]))
    expect[np.arange(c), np.arange(c)] = np.float32(1.0 / (k[0] * k[1]))
    bias = np.zeros(c) if node.bias is None else np.asarray(node.bias, dtype=np.float64)
    if (
        w.shape != expect.shape
        or not np.array_equal(w, expect)
        or np.any(bias != 0)
        or int(np.asarray(node.groups)) != 1
    ):
        return None
    s = as_pair(tuple(int(v) for v in np.ravel(info["stride"])))
    pad = as_pair(tuple(int(v) for v in np.ravel(info["padding"])))
    return k, s, pad


def _default_metadata(model: nn.Module, layers: list[nn.Module], dt: float) -> dict[str, Any]:
    info: dict[str, Any] = {"input_neurons": bool(layers) and is_neuron(layers[0])}
    config = getattr(model, "config", None)
    if isinstance(config, ModelConfig):
        info.update(encoding=config.encoding, num_steps=int(config.num_steps), model=config.name)
    return {"dt": float(dt), "producer": PRODUCER, "neurocxr": info}


def _weights(m: nn.Module) -> tuple[np.ndarray, np.ndarray | None]:
    """A torch synapse's weight and bias (None without one) as float32 numpy copies."""
    w = m.weight.detach().cpu().float().numpy().copy()
    b = None if m.bias is None else m.bias.detach().cpu().float().numpy().copy()
    return w, b


def _synapse_node(w: np.ndarray, b: np.ndarray | None) -> nir.NIRNode:
    """nir.Affine with a bias, nir.Linear without."""
    return nir.Affine(weight=w, bias=b) if b is not None else nir.Linear(weight=w)


def _recurrent_neuron_graph(
    neuron_node: nir.NIRNode, recurrent: nn.Module, shape: tuple[int, ...]
) -> nir.NIRGraph:
    """neuron <-> its own Linear/Affine as a sub-graph (Input -> neuron -> Output, neuron -> Linear ->
    neuron): the form snnTorch's import_from_nir and Norse's from_nir both run correctly."""
    rnode = _synapse_node(*_weights(recurrent))
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array(shape)),
            "lif": neuron_node,
            "w_rec": rnode,
            "output": nir.Output(output_type=np.array(shape)),
        },
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        type_check=False,
    )


def _conv_node(
    i: int, m: nn.Conv2d, shape: tuple[int, ...]
) -> tuple[nir.Conv2d, np.ndarray, np.ndarray]:
    """(node, weight, bias) of a zero-padded Conv2d ('same'/'valid' padding made explicit)."""
    if m.padding_mode != "zeros":
        raise UnsupportedLayerError(
            f"cannot export {_name_layer(i, m)}: padding_mode={m.padding_mode!r}; "
            "only zero padding maps to Loihi"
        )
    padding = m.padding
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        else:
            padding = tuple(d * (k - 1) // 2 for d, k in zip(m.dilation, m.kernel_size))
    w, bias = _weights(m)
    b = bias if bias is not None else np.zeros(w.shape[0], np.float32)
    node = nir.Conv2d(
        input_shape=tuple(shape[1:]),
        weight=w,
        stride=as_pair(m.stride),
        padding=as_pair(padding),
        dilation=as_pair(m.dilation),
        groups=int(m.groups),
        bias=b,
    )
    return node, w, b


def _avgpool_node(i: int, m: nn.AvgPool2d, shape: tuple[int, ...]) -> nir.NIRNode:
    if (
        m.ceil_mode
        or m.divisor_override is not None
        or (not m.count_include_pad and as_pair(m.padding) != (0, 0))
    ):
        raise UnsupportedLayerError(
            f"cannot export {_name_layer(i, m)}: "
            "ceil_mode/divisor_override/count_include_pad=False have no NIR "
            "AvgPool2d equivalent; use nn.AvgPool2d(k) with defaults"
        )
    k = as_pair(m.kernel_size)
    s = as_pair(m.stride if m.stride is not None else m.kernel_size)
    return _pool_as_conv(shape, k, s, as_pair(m.padding))


def _flatten_node(i: int, m: nn.Flatten, shape: tuple[int, ...]) -> nir.Flatten:
    if m.start_dim < 1 and m.start_dim != -len(shape) - 1:
        raise UnsupportedLayerError(
            f"cannot export {_name_layer(i, m)}: Flatten(start_dim={m.start_dim}) "
            "flattens the batch dimension"
        )
    nd = len(shape) + 1
    start = (m.start_dim % nd) - 1
    end = (m.end_dim % nd) - 1
    return nir.Flatten(
        input_type={"input": np.array(shape)},
        start_dim=start,
        end_dim=-1 if end == len(shape) - 1 else end,
    )


def _bn_folded_node(old: nir.NIRNode, w: np.ndarray, b: np.ndarray) -> nir.NIRNode:
    """``old`` (Conv2d or Linear/Affine) with BatchNorm folded into weight ``w`` and bias ``b``."""
    if isinstance(old, nir.Conv2d):
        return nir.Conv2d(
            input_shape=old.input_shape,
            weight=w,
            stride=old.stride,
            padding=old.padding,
            dilation=old.dilation,
            groups=old.groups,
            bias=b,
        )
    return nir.Affine(weight=w, bias=b)


class _Chain:
    """The nodes of a chain-shaped NIR graph in order, named by kind and number."""

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        self.nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(input_shape))}
        self.order: list[str] = ["input"]
        self.counters: dict[str, int] = {}

    def add(self, prefix: str, node: nir.NIRNode, numbered: bool = True) -> str:
        self.counters[prefix] = self.counters.get(prefix, 0) + 1
        name = f"{prefix}{self.counters[prefix]}" if numbered else prefix
        if name in self.nodes:
            name = f"{name}_{self.counters[prefix]}"
        self.put(name, node)
        return name

    def put(self, name: str, node: nir.NIRNode) -> None:
        self.nodes[name] = node
        self.order.append(name)

    def free_name(self, name: str) -> str:
        while name in self.nodes:
            name += "b"
        return name

    def edges(self) -> list[tuple[str, str]]:
        return list(zip(self.order[:-1], self.order[1:]))


def _merged_metadata(
    model: nn.Module, layers: list[nn.Module], dt: float, metadata: dict | None
) -> dict[str, Any]:
    """The default metadata with ``metadata`` over it (its ``neurocxr`` dict merged key by key)."""
    meta = _default_metadata(model, layers, dt)
    for key, value in (metadata or {}).items():
        if key == "neurocxr" and isinstance(value, dict):
            meta["neurocxr"] = {**meta["neurocxr"], **value}
        else:
            meta[key] = value
    return meta


def to_nir(
    model: nn.Module,
    *,
    input_shape: tuple[int, ...],
    dt: float = DEFAULT_DT,
    metadata: dict | None = None,
) -> nir.NIRGraph:
    """Convert a SpikingSequential (or nn.Sequential) SNN to a chain-shaped NIR graph.

    ``input_shape`` is one sample's shape without time and batch, e.g. ``(1, 28, 28)``. BatchNorm is
    folded into the preceding conv/linear, Dropout skipped; layers Loihi cannot hold raise
    `UnsupportedLayerError` naming the layer. ``metadata`` entries override the defaults
    (``dt``, ``producer``, ``neurocxr``: encoding, num_steps, model, input_neurons).
    """
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ExportError(f"dt must be a positive number of seconds, got {dt!r}")
    layers, readout = _model_layers(model)
    _check_eval(layers)
    input_shape = tuple(int(s) for s in input_shape)
    shape = input_shape
    probe = torch.zeros((1,) + input_shape)
    chain = _Chain(input_shape)
    n_synaptic = 0
    # the last synaptic node (name, weight, bias), for BatchNorm folding
    pending: tuple[str, np.ndarray, np.ndarray | None] | None = None
    recurrent_layers: list[str] = []  # recurrent neurons, written as sub-graphs
    for i, m in enumerate(layers):
        try:
            if is_neuron(m):
                recurrent = m.recurrent if isinstance(m, nrn.RecurrentNeuron) else None
                node = _neuron_node(i, m.neuron if recurrent is not None else m, shape, dt)
                name = chain.free_name(
                    f"{'cuba' if isinstance(node, nir.CubaLIF) else 'lif'}{n_synaptic}"
                )
                if recurrent is not None:
                    node = _recurrent_neuron_graph(node, recurrent, shape)
                    recurrent_layers.append(name)
                chain.put(name, node)
                pending = None
                continue
            if isinstance(m, nn.Dropout):
                continue
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                if pending is None or chain.order[-1] != pending[0]:
                    raise UnsupportedLayerError(
                        f"cannot export {_name_layer(i, m)}: BatchNorm must directly follow a "
                        "Conv2d or Linear so it can be "
                        "folded into its weights; Loihi has no separate normalisation layer"
                    )
                pname, pw, pb = pending
                w, b = _fold_bn(pw, pb if pb is not None else np.zeros(pw.shape[0], np.float32), m)
                chain.nodes[pname] = _bn_folded_node(chain.nodes[pname], w, b)
                pending = (pname, w, b)
                continue
            if isinstance(m, nn.Conv2d):
                conv, w, b = _conv_node(i, m, shape)
                n_synaptic += 1
                pending = (chain.add("conv", conv), w, b)
            elif isinstance(m, nn.Linear):
                w, lb = _weights(m)
                n_synaptic += 1
                pending = (chain.add("fc", _synapse_node(w, lb)), w, lb)
            elif isinstance(m, nn.AvgPool2d):
                chain.add("pool", _avgpool_node(i, m, shape))
                pending = None
            elif isinstance(m, nn.Flatten):
                chain.add("flatten", _flatten_node(i, m, shape), numbered=False)
                pending = None
            else:
                raise _unsupported(i, m)
        except NeurocxrError:  # our own errors pass through with their message
            raise
        except Exception as exc:  # a library failing three levels down: say which layer
            raise ExportError(f"could not convert {_name_layer(i, m)} to NIR: {exc}") from exc
        with torch.no_grad():
            probe = m(probe)
        shape = tuple(probe.shape[1:])

    if readout is not None:
        if not isinstance(readout, nn.Linear):
            raise UnsupportedLayerError(
                f"cannot export readout ({type(readout).__name__}): only a Linear readout is supported"
            )
        chain.put("readout", _synapse_node(*_weights(readout)))
        shape = (int(readout.weight.shape[0]),)
    chain.put("output", nir.Output(output_type=np.array(shape)))
    meta = _merged_metadata(model, layers, dt, metadata)
    nodes, edges = chain.nodes, chain.edges()
    if recurrent_layers:
        # nir.read returns nodes in alphabetical order, and snnTorch 1.0's import_from_nir (nirtorch 2.6) fails on a
        # graph holding a sub-graph when its nodes are not in chain order ("'GraphModule' object has no attribute
        # 'items'"): number the nodes so that alphabetical order is chain order.
        width = len(str(len(chain.order)))
        rename = {name: f"n{k:0{width}d}_{name}" for k, name in enumerate(chain.order)}
        nodes = {rename[name]: node for name, node in nodes.items()}
        edges = [(rename[a], rename[b]) for a, b in edges]
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)
    except Exception as exc:
        raise ExportError(
            f"NIR rejected the exported graph (shape/type check): {exc}; input_shape was {input_shape}"
        ) from exc


# --------------------------------------------------------------------------------------------
# import: NIR -> torch
# --------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """HDF5 round trips turn metadata into numpy scalars/bytes: back to Python values."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _recurrent_subgraph(node: nir.NIRNode) -> tuple[str, str] | None:
    """(neuron, synapse) inner names when ``node`` is a recurrent neuron written as a sub-graph: Input -> neuron
    -> Output with neuron -> Linear/Affine -> neuron (what `to_nir` writes); None for anything else."""
    if not isinstance(node, nir.NIRGraph) or len(node.nodes) != 4:
        return None
    inp = [k for k, n in node.nodes.items() if isinstance(n, nir.Input)]
    out = [k for k, n in node.nodes.items() if isinstance(n, nir.Output)]
    neu = [k for k, n in node.nodes.items() if isinstance(n, (nir.LIF, nir.CubaLIF, nir.IF))]
    syn = [k for k, n in node.nodes.items() if isinstance(n, (nir.Linear, nir.Affine))]
    if not (len(inp) == len(out) == len(neu) == len(syn) == 1):
        return None
    want = {(inp[0], neu[0]), (neu[0], syn[0]), (syn[0], neu[0]), (neu[0], out[0])}
    return (neu[0], syn[0]) if {(str(a), str(b)) for a, b in node.edges} == want else None


def inline_recurrent_subgraphs(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The graph with each recurrent-neuron sub-graph (`_recurrent_subgraph`) replaced by its neuron
    ``<name>.lif`` and synapse ``<name>.w_rec`` as top-level nodes (the flat form snnTorch's exporter writes);
    edges to ``<name>`` (or ``<name>.<inner>``) go to the neuron, edges from it leave the neuron. Other graphs
    are returned unchanged."""
    found = {name: _recurrent_subgraph(node) for name, node in graph.nodes.items()}
    found = {name: pair for name, pair in found.items() if pair is not None}
    if not found:
        return graph
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    for name, node in graph.nodes.items():
        if name in found:
            neuron, synapse = found[name]
            nodes[f"{name}.lif"] = node.nodes[neuron]
            nodes[f"{name}.w_rec"] = node.nodes[synapse]
            edges += [(f"{name}.lif", f"{name}.w_rec"), (f"{name}.w_rec", f"{name}.lif")]
        else:
            nodes[name] = node

    def outer(end: str) -> str:
        top = end if end in found else end.rsplit(".", 1)[0]
        return f"{top}.lif" if top in found else end

    edges += [(outer(str(a)), outer(str(b))) for a, b in graph.edges]
    return nir.NIRGraph(
        nodes=nodes, edges=edges, metadata=dict(graph.metadata or {}), type_check=False
    )


def fold_recurrence(
    nodes: dict[str, nir.NIRNode], edges: list[tuple[str, str]]
) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Take out each neuron's own recurrent synapse: a Linear/Affine fed only by one LIF/CubaLIF/IF neuron
    and feeding only back into it (the Braille graphs of the NIR paper; snnTorch 1.0's RLeaky/RSynaptic).

    Returns the edges without those loops and ``{neuron name: recurrent synapse name}``.
    """
    succ: dict[str, set[str]] = {}
    pred: dict[str, set[str]] = {}
    for a, b in edges:
        succ.setdefault(str(a), set()).add(str(b))
        pred.setdefault(str(b), set()).add(str(a))
    recurrent: dict[str, str] = {}
    for name, node in nodes.items():
        if (
            not isinstance(node, (nir.Linear, nir.Affine))
            or len(pred.get(name, ())) != 1
            or pred[name] != succ.get(name)
        ):
            continue
        (neuron,) = pred[name]
        if not isinstance(nodes.get(neuron), (nir.LIF, nir.CubaLIF, nir.IF)):
            continue
        if neuron in recurrent:
            raise UnsupportedLayerError(
                f"neuron {neuron!r} feeds back through two synapses ({recurrent[neuron]!r}, {name!r}); a layer may "
                "feed back into itself through one recurrent weight matrix"
            )
        recurrent[neuron] = name
    loops = {(n, r) for n, r in recurrent.items()} | {(r, n) for n, r in recurrent.items()}
    return [(str(a), str(b)) for a, b in edges if (str(a), str(b)) not in loops], recurrent


_NETX_SHAPE = (
    "netx holds a chain of layers where a layer may also feed back into itself (dense_rec)"
)


def _fold_recurrence(
    nodes: dict[str, nir.NIRNode], edges: list[tuple[str, str]]
) -> tuple[list[tuple[str, str]], dict[str, tuple[str, nir.NIRNode]]]:
    """`exporters.nir.fold_recurrence` with the synapse nodes: ``{neuron: (synapse name, synapse node)}``."""
    folded, recurrent = fold_recurrence(nodes, edges)
    return folded, {neuron: (rname, nodes[rname]) for neuron, rname in recurrent.items()}


def _depths(start: str, succ: dict[str, list[str]]) -> dict[str, int]:
    """Steps from ``start`` to every node it reaches (shortest), for naming where a skip begins."""
    depth = {start: 0}
    frontier = [start]
    while frontier:
        nxt = []
        for a in frontier:
            for b in succ[a]:
                if b not in depth:
                    depth[b] = depth[a] + 1
                    nxt.append(b)
        frontier = nxt
    return depth


@dataclass
class ChainWalk:
    """A NIR graph read as netx holds it: ``chain`` is every node between ``input`` and ``output`` in
    order; ``recurrent`` maps a neuron to its own recurrent synapse (name, node), off the chain."""

    input: str
    output: str
    chain: list[tuple[str, nir.NIRNode]]
    recurrent: dict[str, tuple[str, nir.NIRNode]]

    def names(self) -> list[str]:
        """Input, the chain and Output, by name."""
        return [self.input, *(name for name, _ in self.chain), self.output]


def walk_chain(graph: nir.NIRGraph) -> ChainWalk:
    """The nodes from Input to Output as one chain, and each neuron's recurrent synapse (by neuron
    name); anything else (branches, skips, other cycles, nested sub-graphs) is refused naming what netx
    cannot hold. The one walker of NIR graphs: `from_nir` and the quantiser (`exporters.loihi`) use it."""
    nodes = graph.nodes
    edges = sorted({(str(a), str(b)) for a, b in graph.edges})
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise UnsupportedLayerError(
                    f"edge {a!r} -> {b!r} refers to {end!r}, which is not a top-level node: nested sub-graphs are "
                    f"not read; {_NETX_SHAPE}, written flat: the neuron and its recurrent Linear/Affine as top-level "
                    "nodes (as snnTorch 1.0 writes RLeaky/RSynaptic)"
                )
    edges, recurrent = _fold_recurrence(nodes, edges)
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    pred: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        succ[a].append(b)
        pred[b].append(a)
    inputs = [n for n, node in nodes.items() if isinstance(node, nir.Input)]
    if len(inputs) != 1:
        raise UnsupportedLayerError(
            f"the graph needs exactly one Input node, found {len(inputs)}: {inputs}"
        )
    depth = _depths(inputs[0], succ)
    for name in nodes:
        if len(pred[name]) > 1:
            below = _depths(name, succ)
            back = sorted(p for p in pred[name] if p in below)
            if back:
                raise UnsupportedLayerError(
                    f"{_NETX_SHAPE}; this graph loops back from {back[0]!r} to {name!r} through several layers "
                    "(only a neuron's own Linear/Affine may feed back into it)"
                )
            # where the paths that meet here split: the deepest node with two successors reaching this one
            splits = [
                b
                for b in nodes
                if b in depth and sum(name in _depths(c, succ) for c in succ[b]) > 1
            ]
            source = max(splits, key=lambda b: depth[b]) if splits else sorted(pred[name])[0]
            raise UnsupportedLayerError(
                f"{_NETX_SHAPE}; this graph has a skip from {source!r} to {name!r} ({name!r} receives from "
                f"{sorted(pred[name])}): merge the paths in the model, or export a plain chain"
            )
    for name in nodes:
        if len(succ[name]) > 1:
            raise UnsupportedLayerError(
                f"{_NETX_SHAPE}; this graph branches at {name!r} into {sorted(succ[name])}: netx has one output "
                "per layer, export a plain chain"
            )
    chain: list[tuple[str, nir.NIRNode]] = []
    seen = {inputs[0]}
    current = inputs[0]
    while True:
        if not succ[current]:
            raise UnsupportedLayerError(
                f"node {current!r} is a dead end: the chain from Input never reaches Output"
            )
        current = succ[current][0]
        if current in seen:
            raise UnsupportedLayerError(
                f"{_NETX_SHAPE}; node {current!r} closes a cycle through several layers, which it cannot hold "
                "(only a neuron's own Linear/Affine may feed back into it)"
            )
        seen.add(current)
        node = nodes[current]
        if isinstance(node, nir.Output):
            break
        chain.append((current, node))
    seen |= {r for r, _ in recurrent.values()}
    unused = sorted(set(nodes) - seen)
    if unused:
        raise UnsupportedLayerError(
            f"nodes {unused} are not on the Input -> Output chain; remove them or the branch"
        )
    return ChainWalk(inputs[0], current, chain, recurrent)


def _f64(a: Any, like: np.ndarray | None = None) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if like is not None:
        arr = np.broadcast_to(arr, np.shape(like)).copy()
    return arr


def _zero_or_refuse(name: str, what: str, value: Any) -> None:
    if value is not None and np.any(np.asarray(value) != 0):
        raise UnsupportedLayerError(
            f"NIR node {name!r}: {what} != 0 is not representable by a reset-to-zero neuron without leak potential "
            "(Loihi's CUBA neuron); re-export the model with it set to 0"
        )


def _exact(node: nir.NIRNode, key: str) -> np.ndarray | None:
    meta = node.metadata if isinstance(node.metadata, dict) else {}
    exact = meta.get(EXACT_KEY, {})
    return (
        np.asarray(exact[key], dtype=np.float32)
        if isinstance(exact, dict) and key in exact
        else None
    )


def _threshold(name: str, thr: Any, gain: np.ndarray) -> torch.Tensor:
    thr32 = np.asarray(thr, dtype=np.float32)
    if np.any(gain <= 0) or not np.all(np.isfinite(gain)):
        raise UnsupportedLayerError(
            f"NIR node {name!r}: input gain must be positive and finite, got {np.unique(gain)[:5]}"
        )
    if np.all(gain == 1.0):
        return torch.from_numpy(thr32.copy())
    return torch.from_numpy(np.asarray(thr32.astype(np.float64) / gain).astype(np.float32))


def _import_neuron(name: str, node: nir.NIRNode, dt: float) -> nn.Module:
    if isinstance(node, nir.IF):
        _zero_or_refuse(name, "v_reset", node.v_reset)
        gain = _ratio_over_dt(_f64(node.r), np.ones_like(_f64(node.r)), dt)
        beta = np.ones(np.shape(node.r), dtype=np.float32)
        return nrn.LIF(
            torch.from_numpy(beta), _threshold(name, _f64(node.v_threshold, node.r), gain)
        )
    if isinstance(node, nir.LIF):
        _zero_or_refuse(name, "v_leak", node.v_leak)
        _zero_or_refuse(name, "v_reset", node.v_reset)
        tau = _f64(node.tau, node.v_threshold)
        beta = _exact(node, "beta")
        beta = _decay_from_tau(tau, dt) if beta is None else beta
        gain = _ratio_over_dt(_f64(node.r, tau), tau, dt)
        thr_exact = _exact(node, "threshold")
        thr_nir = _f64(node.v_threshold, tau)
        if thr_exact is not None and np.allclose(thr_exact * gain, thr_nir, rtol=1e-6, atol=0):
            # neurocxr's portable form: the producer's unit-gain threshold, bit for bit
            return nrn.LIF(torch.from_numpy(beta.copy()), torch.from_numpy(thr_exact.copy()))
        return nrn.LIF(
            torch.from_numpy(beta.copy()), _threshold(name, _f64(node.v_threshold, tau), gain)
        )
    if isinstance(node, nir.CubaLIF):
        _zero_or_refuse(name, "v_leak", node.v_leak)
        _zero_or_refuse(name, "v_reset", node.v_reset)
        tau_syn = _f64(node.tau_syn, node.v_threshold)
        tau_mem = _f64(node.tau_mem, node.v_threshold)
        alpha = _exact(node, "alpha")
        alpha = _decay_from_tau(tau_syn, dt) if alpha is None else alpha
        beta = _exact(node, "beta")
        beta = _decay_from_tau(tau_mem, dt) if beta is None else beta
        g_syn = _ratio_over_dt(_f64(node.w_in, tau_syn), tau_syn, dt)
        g_mem = _ratio_over_dt(_f64(node.r, tau_mem), tau_mem, dt)
        gain = np.where((g_syn == 1.0) & (g_mem == 1.0), 1.0, g_syn * g_mem)
        thr = _threshold(name, _f64(node.v_threshold, tau_mem), gain)
        return nrn.CubaLIF(torch.from_numpy(alpha.copy()), torch.from_numpy(beta.copy()), thr)
    raise UnsupportedLayerError(
        f"NIR node {name!r} of type {type(node).__name__} is not a neuron neurocxr imports"
    )


def _shape_of(node: nir.NIRNode, key: str) -> tuple[int, ...] | None:
    types = node.output_type if key == "output" else node.input_type
    if not isinstance(types, dict):
        return None
    val = types.get(key)
    return None if val is None else tuple(int(s) for s in np.asarray(val).reshape(-1))


def _linear(name: str, node: nir.NIRNode) -> nn.Linear:
    """An NIR Affine/Linear as ``nn.Linear`` (float32, bias only for an Affine with one)."""
    w = torch.from_numpy(np.asarray(node.weight, dtype=np.float32).copy())
    if w.dim() != 2:
        raise UnsupportedLayerError(
            f"NIR node {name!r}: only 2-D Affine/Linear weights are supported, got {tuple(w.shape)}"
        )
    has_bias = isinstance(node, nir.Affine) and node.bias is not None
    lin = nn.Linear(w.shape[1], w.shape[0], bias=has_bias)
    with torch.no_grad():
        lin.weight.copy_(w)
        if has_bias:
            lin.bias.copy_(
                torch.from_numpy(
                    np.broadcast_to(np.asarray(node.bias, np.float32), (w.shape[0],)).copy()
                )
            )
    return lin


def stated_dt(graph: nir.NIRGraph, source: str = "the NIR graph") -> float | None:
    """The time step (seconds) a graph states in its metadata, None when it states none. The one
    reader of a graph's dt: `from_nir` falls back to `FALLBACK_DT` with a warning when it is missing,
    the Loihi export (`neurocxr.deploy.nir_file.resolve_dt`) refuses to guess."""
    meta = _plain(graph.metadata) if isinstance(graph.metadata, dict) else {}
    if meta.get("dt") is None:
        return None
    try:
        return float(meta["dt"])
    except (TypeError, ValueError):
        raise ExportError(f"{source}: metadata 'dt' = {meta['dt']!r} is not a number") from None


def _import_dt(graph: nir.NIRGraph, dt: float | None) -> float:
    """The graph's stated dt (warning when it overrides ``dt``), else ``dt``, else FALLBACK_DT with a warning."""
    graph_dt = stated_dt(graph)
    if graph_dt is not None:
        if dt is not None and not math.isclose(dt, graph_dt, rel_tol=1e-12):
            warnings.warn(
                f"the NIR graph states dt={graph_dt}; using it instead of dt={dt}", stacklevel=3
            )
        dt = graph_dt
    elif dt is None:
        warnings.warn(
            f"the NIR graph does not state its time step; assuming dt={FALLBACK_DT} s (pass dt=... to from_nir)",
            stacklevel=3,
        )
        dt = FALLBACK_DT
    if not (math.isfinite(dt) and dt > 0):
        raise ExportError(f"dt must be positive, got {dt}")
    return dt


def _readout_positions(graph: nir.NIRGraph, body: list[str]) -> tuple[int | None, int | None]:
    """(index of the readout Affine/Linear, index of the LI integrator after it) in ``body``."""
    if body and isinstance(graph.nodes[body[-1]], nir.LI):
        if len(body) < 2 or not isinstance(graph.nodes[body[-2]], (nir.Affine, nir.Linear)):
            raise UnsupportedLayerError(
                f"NIR LI node {body[-1]!r} must directly follow an Affine/Linear readout"
            )
        return len(body) - 2, len(body) - 1
    if body and isinstance(graph.nodes[body[-1]], (nir.Affine, nir.Linear)):
        return len(body) - 1, None
    return None, None


def _check_li_readout(name: str, node: nir.LI, dt: float) -> None:
    """The LI after the readout: refuse a leak toward a non-zero rest, warn about a leak at all."""
    _zero_or_refuse(name, "v_leak", node.v_leak)
    leak = _decay_from_tau(_f64(node.tau), dt)
    if not np.all(leak == 1.0):
        warnings.warn(
            f"NIR LI readout {name!r} leaks (decay {np.unique(leak)[:3]}); "
            "SpikingSequential reads the readout as "
            "its mean over time, which ranks classes like a non-leaky integrator",
            stacklevel=3,
        )


def _int_pair(value: Any) -> tuple[int, int]:
    """A NIR stride/padding/dilation (scalar or array) as a pair of ints."""
    return as_pair(tuple(np.asarray(value).reshape(-1)) if np.ndim(value) else int(value))


def _conv_module(node: nir.Conv2d) -> nn.Conv2d:
    w = torch.from_numpy(np.asarray(node.weight, dtype=np.float32).copy())
    padding = node.padding if isinstance(node.padding, str) else _int_pair(node.padding)
    groups = int(np.asarray(node.groups))
    conv = nn.Conv2d(
        w.shape[1] * groups,
        w.shape[0],
        tuple(w.shape[2:]),
        stride=_int_pair(node.stride),
        padding=padding,
        dilation=_int_pair(node.dilation),
        groups=groups,
        bias=True,
    )
    with torch.no_grad():
        conv.weight.copy_(w)
        bias = (
            np.zeros(w.shape[0], np.float32)
            if node.bias is None
            else np.broadcast_to(np.asarray(node.bias, np.float32), (w.shape[0],))
        )
        conv.bias.copy_(torch.from_numpy(bias.copy()))
    return conv


def _pool_module(
    node: nir.AvgPool2d | nir.SumPool2d, after: nir.NIRNode | None
) -> tuple[nn.Module, int]:
    """(the pooling module, NIR nodes it consumes): SumPool2d + Scale(1/area) is one AvgPool2d."""
    ks, st, pd = (
        as_pair(
            tuple(np.asarray(v).reshape(-1))
            if np.size(v) > 1
            else int(np.asarray(v).reshape(-1)[0])
        )
        for v in (node.kernel_size, node.stride, node.padding)
    )
    if not isinstance(node, nir.SumPool2d):
        return nn.AvgPool2d(ks, st, pd), 1
    area = ks[0] * ks[1]
    if isinstance(after, nir.Scale) and np.allclose(
        np.asarray(after.scale, np.float64), 1.0 / area, rtol=1e-6, atol=0
    ):
        return nn.AvgPool2d(ks, st, pd), 2
    return nn.AvgPool2d(ks, st, pd, divisor_override=1), 1  # a plain sum


def _flatten_module(node: nir.Flatten) -> nn.Flatten:
    start, end = int(node.start_dim), int(node.end_dim)  # NIR's dims exclude the batch
    return nn.Flatten(
        start_dim=start + 1 if start >= 0 else start, end_dim=end + 1 if end >= 0 else end
    )


def _unsupported_import(name: str, node: nir.NIRNode) -> UnsupportedLayerError:
    if isinstance(node, nir.LI):
        return UnsupportedLayerError(
            f"NIR LI node {name!r} is a non-spiking integrator in the middle of the "
            "network; Loihi layers talk only "
            "through spikes, so LI is supported only as the final readout (after the last Affine/Linear)"
        )
    if isinstance(node, nir.NIRGraph):
        return UnsupportedLayerError(
            f"NIR node {name!r} is a subgraph (e.g. a recurrent layer); only flat chains are supported"
        )
    return UnsupportedLayerError(
        f"NIR node {name!r} of type {type(node).__name__} is not supported: neurocxr "
        "imports Affine, Linear, Conv2d, "
        "AvgPool2d, SumPool2d, Scale, Flatten, IF, LIF, CubaLIF and a final LI"
    )


def _config_from_metadata(
    graph: nir.NIRGraph, chain: list[str], info: dict[str, Any]
) -> ModelConfig | None:
    """The ModelConfig the writer's ``neurocxr`` metadata describes (image models only), or None."""
    in_shape = _shape_of(graph.nodes[chain[0]], "input") or _shape_of(
        graph.nodes[chain[0]], "output"
    )
    out_shape = _shape_of(graph.nodes[chain[-1]], "output")
    if not (info and in_shape and len(in_shape) == 3):
        return None
    try:
        return ModelConfig(
            name=str(info.get("model", "nir_import")),
            image_size=int(in_shape[-1]),
            in_channels=int(in_shape[0]),
            num_classes=int(out_shape[0]) if out_shape else 2,
            num_steps=int(info.get("num_steps", 16)),
            encoding=str(info.get("encoding", "direct")),
        )
    except (ValueError, TypeError) as exc:
        warnings.warn(f"could not rebuild a ModelConfig from the NIR metadata: {exc}", stacklevel=3)
        return None


def from_nir(graph: nir.NIRGraph | str | Path, *, dt: float | None = None) -> SpikingSequential:
    """Build a SpikingSequential (torch layers + neurocxr LIF/CubaLIF) from a chain-shaped NIR graph.

    dt comes from ``graph.metadata['dt']`` when present, else the argument, else `FALLBACK_DT`
    (with a warning). A trailing Affine/Linear (optionally followed by a non-spiking LI) becomes
    the readout. Graphs written by `to_nir` reproduce the original spikes bit for bit.
    """
    if isinstance(graph, (str, Path)):
        graph = read_nir(graph)
    if not isinstance(graph, nir.NIRGraph):
        raise ExportError(
            f"from_nir expects a nir.NIRGraph or a .nir path, got {type(graph).__name__}"
        )
    meta = _plain(graph.metadata) if isinstance(graph.metadata, dict) else {}
    dt = _import_dt(graph, dt)
    graph = inline_recurrent_subgraphs(graph)
    chain = walk_chain(graph).names()
    recurrent = fold_recurrence(graph.nodes, list(graph.edges))[1]
    body = chain[1:-1]
    readout_at, li_at = _readout_positions(graph, body)
    layers: list[nn.Module] = []
    readout: nn.Linear | None = None
    k = 0
    while k < len(body):
        name = body[k]
        node = graph.nodes[name]
        consumed = 1
        if k == li_at:
            _check_li_readout(name, node, dt)
        elif isinstance(node, (nir.Affine, nir.Linear)):
            if k == readout_at:
                readout = _linear(name, node)
            else:
                layers.append(_linear(name, node))
        elif isinstance(node, nir.Conv2d) and pool_of_conv(node) is not None:
            ks, st, pd = pool_of_conv(node)  # type: ignore[misc]
            layers.append(nn.AvgPool2d(ks, st, pd))
        elif isinstance(node, nir.Conv2d):
            layers.append(_conv_module(node))
        elif isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
            after = graph.nodes[body[k + 1]] if k + 1 < len(body) else None
            pool, consumed = _pool_module(node, after)
            layers.append(pool)
        elif isinstance(node, nir.Scale):
            layers.append(
                ElementwiseScale(torch.from_numpy(np.asarray(node.scale, np.float32).copy()))
            )
        elif isinstance(node, nir.Flatten):
            layers.append(_flatten_module(node))
        elif isinstance(node, (nir.LIF, nir.CubaLIF, nir.IF)):
            neuron = _import_neuron(name, node, dt)
            if (
                name in recurrent
            ):  # its spikes come back through its own Linear/Affine, one step later
                neuron = nrn.RecurrentNeuron(
                    neuron, _linear(recurrent[name], graph.nodes[recurrent[name]])
                )
            layers.append(neuron)
        else:
            raise _unsupported_import(name, node)
        k += consumed

    model = SpikingSequential(layers, readout=readout)
    info = meta.get("neurocxr", {}) if isinstance(meta.get("neurocxr"), dict) else {}
    config = _config_from_metadata(graph, chain, info)
    if config is not None:
        model.config = config  # type: ignore[attr-defined]
    model.nir_metadata = {**meta, "dt": dt}  # type: ignore[attr-defined]
    model.eval()
    return model


# --------------------------------------------------------------------------------------------
# files and summaries
# --------------------------------------------------------------------------------------------


def write_nir(graph: nir.NIRGraph, path: str | Path, *, overwrite: bool = True) -> Path:
    """Write ``graph`` to ``path`` atomically (temporary file + os.replace) with nir.write."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ExportError(f"{path} exists; pass overwrite=True (CLI: --force) to replace it")
    if not path.parent.exists():
        raise ExportError(f"cannot write {path}: folder {path.parent} does not exist")
    try:
        return atomic_write(path, lambda tmp: nir.write(str(tmp), graph))
    except Exception as exc:
        raise ExportError(f"could not write NIR graph to {path}: {exc}") from exc


def read_nir(path: str | Path) -> nir.NIRGraph:
    """Read a .nir file; unreadable or malformed files raise ExportError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(missing_file_message(path, "NIR file"))
    try:
        return nir.read(path)
    except Exception as exc:  # h5py / nir errors: keep their text, name the file
        try:
            graph = nir.read(path, type_check=False)
        except Exception:
            if file_kind(path) not in (
                "nir",
                "hdf5",
                "unknown",
            ):  # a checkpoint or npz named .nir: say what it is
                raise ExportError(f"{path} is not a NIR graph: it {describe_file(path)}") from exc
            raise ExportError(
                f"{path} is not a readable NIR file ({type(exc).__name__}: {exc})"
            ) from exc
        warnings.warn(
            f"{path}: NIR type check failed ({exc}); read without type checking", stacklevel=2
        )
        return graph


def _key_params(node: nir.NIRNode) -> dict[str, Any]:
    def rng(a: Any) -> list[float]:
        arr = np.asarray(a, dtype=np.float64)
        return [float(arr.min()), float(arr.max())]

    if isinstance(node, nir.Conv2d):
        return {
            "weight": list(node.weight.shape),
            "stride": [int(s) for s in np.ravel(node.stride)],
            "padding": node.padding
            if isinstance(node.padding, str)
            else [int(p) for p in np.ravel(node.padding)],
            "groups": int(node.groups),
        }
    if isinstance(node, nir.Affine):
        return {"weight": list(node.weight.shape), "bias": True}
    if isinstance(node, nir.Linear):
        return {"weight": list(node.weight.shape), "bias": False}
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        return {
            "kernel_size": [int(k) for k in np.ravel(node.kernel_size)],
            "stride": [int(s) for s in np.ravel(node.stride)],
        }
    if isinstance(node, nir.Flatten):
        return {"start_dim": int(node.start_dim), "end_dim": int(node.end_dim)}
    if isinstance(node, nir.LIF):
        return {"tau": rng(node.tau), "r": rng(node.r), "v_threshold": rng(node.v_threshold)}
    if isinstance(node, nir.CubaLIF):
        return {
            "tau_syn": rng(node.tau_syn),
            "tau_mem": rng(node.tau_mem),
            "r": rng(node.r),
            "w_in": rng(node.w_in),
            "v_threshold": rng(node.v_threshold),
        }
    if isinstance(node, nir.IF):
        return {"r": rng(node.r), "v_threshold": rng(node.v_threshold)}
    if isinstance(node, nir.LI):
        return {"tau": rng(node.tau), "r": rng(node.r)}
    if isinstance(node, nir.Scale):
        return {"scale": rng(node.scale)}
    return {}


def graph_summary(graph: nir.NIRGraph) -> list[dict]:
    """One dict per node in chain order (name, type, input/output shape, key parameters) for reports."""
    try:
        graph = inline_recurrent_subgraphs(graph)
        names = walk_chain(graph).names()
    except UnsupportedLayerError:
        names = list(graph.nodes)
    rows = []
    for name in names:
        node = graph.nodes[name]
        rows.append(
            {
                "name": name,
                "type": type(node).__name__,
                "input_shape": list(_shape_of(node, "input") or []),
                "output_shape": list(_shape_of(node, "output") or []),
                "params": _key_params(node),
            }
        )
    return rows
