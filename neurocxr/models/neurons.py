"""Neuron modules and the one place that knows how snnTorch and Norse neurons are stepped.

Loihi's CUBA neuron resets to zero, immediately, and has no subtractive reset or refractory time,
so neurocxr's deployable neurons do the same (see ../shared/docs/loihi.md):

    LIF:      v <- beta * v + I ;                       s = v > thr ; v <- 0 where s
    CubaLIF:  i <- alpha * i + I ; v <- beta * v + i ;  s = v > thr ; v <- 0 where s

`LIF` and `CubaLIF` are our own implementations of these (used by the NIR importer); snnTorch's
``Leaky(reset_mechanism="zero", reset_delay=False)`` and ``Synaptic(...)`` compute the same thing,
Norse's ``LIFBoxCell`` the LIF with the input scaled by ``dt/tau_mem``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class _SpikeFn(torch.autograd.Function):
    """Heaviside forward (strict >, as snnTorch, Norse and Loihi), fast-sigmoid surrogate backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, slope: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.slope = slope
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad / (ctx.slope * x.abs() + 1.0) ** 2, None


def spike(x: torch.Tensor, slope: float = 25.0) -> torch.Tensor:
    return _SpikeFn.apply(x, slope)


class LIF(nn.Module):
    """Discrete LIF with reset to zero; ``beta``/``threshold`` scalars or per-neuron tensors."""

    def __init__(self, beta: torch.Tensor | float, threshold: torch.Tensor | float = 1.0) -> None:
        super().__init__()
        self.register_buffer("beta", torch.as_tensor(beta, dtype=torch.float32))
        self.register_buffer("threshold", torch.as_tensor(threshold, dtype=torch.float32))

    def forward(
        self, x: torch.Tensor, v: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        v = torch.zeros_like(x) if v is None else v
        v = self.beta * v + x
        s = spike(v - self.threshold)
        return s, v * (1.0 - s)


class CubaLIF(nn.Module):
    """Current-based LIF (Loihi CUBA, snnTorch Synaptic) with reset to zero."""

    def __init__(
        self,
        alpha: torch.Tensor | float,
        beta: torch.Tensor | float,
        threshold: torch.Tensor | float = 1.0,
    ) -> None:
        super().__init__()
        self.register_buffer("alpha", torch.as_tensor(alpha, dtype=torch.float32))
        self.register_buffer("beta", torch.as_tensor(beta, dtype=torch.float32))
        self.register_buffer("threshold", torch.as_tensor(threshold, dtype=torch.float32))

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        i, v = (torch.zeros_like(x), torch.zeros_like(x)) if state is None else state
        i = self.alpha * i + x
        v = self.beta * v + i
        s = spike(v - self.threshold)
        return s, (i, v * (1.0 - s))


class RecurrentNeuron(nn.Module):
    """A neuron layer whose own spikes feed back through ``recurrent`` (an ``nn.Linear`` N -> N).

    Each step the neuron's input is ``x[t] + recurrent(s[t-1])`` (``s[-1] = 0``, so a recurrent bias
    reaches it every step): snnTorch's ``RLeaky``/``RSynaptic`` with reset to zero, the NIR graph
    ``neuron -> Linear/Affine -> neuron`` and Loihi's netx ``dense_rec``. ``neuron`` is any neuron
    `step` knows.
    """

    def __init__(self, neuron: nn.Module, recurrent: nn.Linear) -> None:
        super().__init__()
        if recurrent.in_features != recurrent.out_features:
            raise ValueError(
                f"a recurrent synapse maps N -> N, got {recurrent.in_features} -> {recurrent.out_features}"
            )
        self.neuron = neuron
        self.recurrent = recurrent

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        inner, prev = (None, torch.zeros_like(x)) if state is None else state
        s, inner = step(self.neuron, x + self.recurrent(prev), inner)
        return s, (inner, s)


def _snntorch_types() -> tuple[type, ...]:
    try:
        import snntorch as snn

        return (snn.Leaky, snn.Synaptic)
    except Exception:  # snnTorch missing: nothing of its kind can be in a model
        return ()


def _norse_types() -> tuple[type, ...]:
    try:
        from norse.torch import LIFBoxCell, LIFCell

        return (LIFBoxCell, LIFCell)
    except Exception:
        return ()


def is_neuron_module(module: nn.Module) -> bool:
    return isinstance(module, (LIF, CubaLIF, RecurrentNeuron) + _snntorch_types() + _norse_types())


def step(neuron: nn.Module, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
    """One time step of any supported neuron: returns (spikes, new state)."""
    import snntorch as snn

    if isinstance(neuron, (LIF, CubaLIF, RecurrentNeuron)):
        return neuron(x, state)
    if isinstance(neuron, snn.Synaptic):
        syn, mem = (None, None) if state is None else state
        if syn is None:
            syn, mem = torch.zeros_like(x), torch.zeros_like(x)
        s, syn, mem = neuron(x, syn, mem)
        return s, (syn, mem)
    if isinstance(neuron, snn.Leaky):
        mem = torch.zeros_like(x) if state is None else state
        s, mem = neuron(x, mem)
        return s, mem
    if isinstance(neuron, _norse_types()):
        return neuron(x, state)
    raise TypeError(f"{type(neuron).__name__} is not a neuron type neurocxr can step")
