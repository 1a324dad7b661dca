"""The sample protocol both simulators follow (described in hardware_sims/emulator.py's docstring):
the sample timeline, input checking/encoding, and placing a layer's window on the timeline."""

from __future__ import annotations

import numpy as np
import torch

from neurocxr.errors import DataError, SimulationError
from neurocxr.exporters.program import BIAS_MAX, BIAS_MIN, LoihiProgram, ProgramError
from neurocxr.validation import images_to_unit_range

__all__ = ["sample_timeline", "coerce_inputs", "place_window"]


def sample_timeline(program: LoihiProgram, num_steps: int | None = None) -> tuple[int, int]:
    """(T, T_run) of the sample protocol: T = num_steps, T_run = T + number of synaptic layers."""
    steps = int(num_steps if num_steps is not None else program.num_steps)
    if steps < 1:
        raise SimulationError(f"num_steps must be >= 1, got {steps}")
    return steps, steps + len(program.layers) - 1


def coerce_inputs(
    program: LoihiProgram,
    inputs: np.ndarray | torch.Tensor,
    steps: int | None,
    *,
    raw_bias: bool = False,
) -> tuple[np.ndarray, int]:
    """Check a batch against the program's input and return (data, T).

    Bias input: images ``[B, *shape]`` by the one pixel rule (floats in [0, 1], uint8 / 255,
    uint16 / 65535; `neurocxr.validation.images_to_unit_range`), encoded with the program's input
    scale and the input layer's transform; integer ``bias_mant`` values only with ``raw_bias=True``
    (any other integer array is refused, never guessed at) -> int64 ``[B, *shape]``. Spike input:
    0/1 trains ``[T, B, *shape]`` -> int8.
    """
    arr = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
    shape0 = tuple(program.layers[0].shape)
    if program.input_kind == "bias":
        if arr.ndim == len(shape0) and shape0[0] == 1 and arr.shape[1:] == shape0[1:]:
            arr = arr[:, None]
        if arr.shape[1:] != shape0:
            raise SimulationError(
                f"bias input must be images [B, {', '.join(map(str, shape0))}], got {arr.shape}"
            )
        integer = np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_
        if raw_bias and not integer:
            raise SimulationError(
                f"raw_bias=True needs an integer array of bias mantissas, got {arr.dtype}"
            )
        if not raw_bias and integer and arr.dtype not in (np.uint8, np.uint16):
            raise SimulationError(
                f"{arr.dtype} inputs are ambiguous: pass images as float in [0, 1], uint8 in 0-255 or uint16 in "
                "0-65535, or raw input-bias mantissas with raw_bias=True"
            )
        if not raw_bias:
            try:  # the one pixel rule; float images keep their dtype (their quantisation is what it was)
                unit = images_to_unit_range(arr, "bias input images")
            except DataError as exc:
                raise SimulationError(str(exc)) from None
            arr = unit if integer else arr
        if raw_bias:
            bias = arr.astype(np.int64)
            if bias.size and (bias.min() < BIAS_MIN or bias.max() > BIAS_MAX):
                raise SimulationError(
                    f"integer input bias {bias.min()}..{bias.max()} does not fit 13 bits"
                )
        else:
            try:
                bias = program.quantise_input(arr)
            except ProgramError as exc:
                raise SimulationError(str(exc)) from exc
        return bias, int(steps if steps is not None else program.num_steps)
    if raw_bias:
        raise SimulationError(
            "raw_bias=True applies to bias-input programs; this one takes spike trains"
        )
    if arr.ndim != len(shape0) + 2 or arr.shape[2:] != shape0:
        raise SimulationError(
            f"spike input must be [T, B, {', '.join(map(str, shape0))}], got {arr.shape}"
        )
    if arr.dtype in (np.int8, np.uint8, np.bool_):
        # one pass: as bytes, 0 and 1 are the only values <= 1 (a negative int8 reads as >= 128)
        if arr.size and bool((arr.view(np.uint8) > 1).any()):
            raise SimulationError("spike input must contain only 0 and 1")
    elif arr.size and not (arr.min() >= 0 and arr.max() <= 1 and ((arr == 0) | (arr == 1)).all()):
        raise SimulationError("spike input must contain only 0 and 1")
    t_in = arr.shape[0]
    steps = int(steps if steps is not None else t_in)
    if t_in != steps:
        raise SimulationError(f"spike input has {t_in} steps but num_steps is {steps}")
    return arr.astype(np.int8, copy=False) if arr.dtype != np.bool_ else arr.view(np.int8), steps


def place_window(
    window: torch.Tensor, offset: int, t_run: int, shape: tuple[int, ...]
) -> np.ndarray:
    """Window spikes [T, B, N] -> sample timeline [T_run, B, *shape] int8 at rows offset..offset+T-1."""
    steps, batch = window.shape[:2]
    out = np.zeros((t_run, batch, *shape), dtype=np.int8)
    out[offset : offset + steps] = window.reshape(steps, batch, *shape).numpy().astype(np.int8)
    return out
