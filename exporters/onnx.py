"""ONNX export of CNN baselines and an ONNX Runtime runner, MAC counter and latency benchmark.

CNN baselines (``cnn_small``, ``resnet18``) are compared with the SNNs on conventional hardware
through ONNX Runtime: it is what a hospital would deploy on a CPU or GPU, and its graph gives an
exact MAC count that the energy tables can price with the same per-op constants as the SNN counts.
SNNs do not go through ONNX: they are stepped over time with membrane state and go to NIR / Loihi.

All ONNX and ONNX Runtime quirks live in this module; everything else sees numpy arrays and dicts.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from neurocxr.errors import DataError, ExportError
from neurocxr.fileio import atomic_write
from neurocxr.models.base import MODEL_REGISTRY, SpikingSequential, is_neuron

__all__ = [
    "export_onnx",
    "onnx_session",
    "run_onnx",
    "check_onnx_equivalence",
    "OnnxEquivalence",
    "benchmark_onnx",
]


def _is_spiking(model: nn.Module) -> bool:
    """True for a SpikingSequential, a model whose config names an SNN, or one holding neurons."""

    if isinstance(model, SpikingSequential):
        return True
    config = getattr(model, "config", None)
    name = getattr(config, "name", None)
    if name in MODEL_REGISTRY and MODEL_REGISTRY[name].kind == "snn":
        return True
    return any(is_neuron(m) for m in model.modules())


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    input_shape: Sequence[int] = (1, 1, 28, 28),
    opset: int = 17,
    dynamic_batch: bool = True,
    overwrite: bool = True,
) -> Path:
    """Export a CNN baseline to ONNX at ``path`` and return the path.

    The graph is written to a temporary file next to ``path``, checked with
    ``onnx.checker.check_model`` and only then moved into place (``os.replace``), so a failed
    export never leaves a half-written or invalid file and an existing file is either kept whole
    or replaced whole. ``overwrite=False`` refuses to replace an existing file (the CLI decides
    with ``--force`` through ``fileio.prepare_out_dir`` before calling this). ``dynamic_batch``
    makes the batch dimension symbolic (name ``batch``).
    SNNs are refused: they carry state over time steps and are exported to NIR / Loihi instead.
    """
    import onnx

    if not isinstance(model, nn.Module):
        raise ExportError(f"export_onnx expects a torch nn.Module, got {type(model).__name__}")
    if _is_spiking(model):
        raise ExportError(
            f"{type(model).__name__} is a spiking network; ONNX export is for CNN baselines only. "
            "Export SNNs with neurocxr.exporters.nir (NIR graph) and neurocxr.exporters.loihi (netx for Loihi 2)."
        )
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ExportError(
            f"input_shape must be (batch, channels, height, width) with positive sizes, got {shape}"
        )
    out = Path(path)
    if out.exists() and not overwrite:
        raise ExportError(f"{out} already exists; pass overwrite=True (CLI: --force) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)

    was_training = model.training
    model.eval()
    dummy = torch.zeros(
        shape, dtype=torch.float32, device=next(model.parameters(), torch.zeros(0)).device
    )
    dynamic_axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None

    def write(tmp: Path) -> None:
        try:
            with torch.no_grad():
                torch.onnx.export(
                    model,
                    (dummy,),
                    str(tmp),
                    input_names=["input"],
                    output_names=["logits"],
                    dynamic_axes=dynamic_axes,
                    opset_version=opset,
                    do_constant_folding=True,
                )
        except Exception as exc:  # torch raises many types; the user needs one explanation
            raise ExportError(
                f"torch.onnx.export failed for {type(model).__name__} at opset {opset} "
                f"with input shape {shape}: {exc}. Check that the model's forward takes one image "
                "tensor [B, C, H, W] and returns logits, and that every layer has an ONNX equivalent."
            ) from exc
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except Exception as exc:
            raise ExportError(
                f"the exported ONNX graph for {type(model).__name__} is invalid: {exc}"
            ) from exc

    try:
        atomic_write(out, write)
    finally:
        model.train(was_training)
    return out


def onnx_session(path: str | os.PathLike[str], *, threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path``: CUDA provider when available, else CPU.

    ``threads`` sets the intra-op thread count (None: ONNX Runtime's default).
    """
    import onnxruntime as ort

    p = Path(path)
    if not p.is_file():
        raise ExportError(
            f"ONNX file {p} not found; create it with export_onnx (CLI: neurocxr export --format onnx)"
        )
    options = ort.SessionOptions()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    available = ort.get_available_providers()
    providers = [p_ for p_ in ("CUDAExecutionProvider", "CPUExecutionProvider") if p_ in available]
    try:
        return ort.InferenceSession(str(p), sess_options=options, providers=providers)
    except Exception as exc:
        raise ExportError(f"ONNX Runtime cannot load {p}: {exc}") from exc


def _as_session(path_or_session: Any) -> Any:
    if isinstance(path_or_session, (str, os.PathLike)):
        return onnx_session(path_or_session)
    if not hasattr(path_or_session, "run") or not hasattr(path_or_session, "get_inputs"):
        raise TypeError(
            f"expected a path or an onnxruntime.InferenceSession, got {type(path_or_session).__name__}"
        )
    return path_or_session


def _check_images(images: np.ndarray, session: Any) -> np.ndarray:
    x = np.ascontiguousarray(np.asarray(images), dtype=np.float32)
    if x.ndim != 4:
        raise DataError(f"images must be [B, C, H, W], got shape {x.shape}")
    expected = session.get_inputs()[0].shape
    for axis, (want, got) in enumerate(zip(expected[1:], x.shape[1:]), start=1):
        if isinstance(want, int) and want != got:
            raise DataError(
                f"images have shape {x.shape} but the ONNX model expects {tuple(expected)} "
                f"(axis {axis}: {want} != {got}); resize or re-export with the right input_shape"
            )
    return x


def run_onnx(path_or_session: Any, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Logits ``[B, K]`` (float32) of the ONNX model for ``images`` ``[B, C, H, W]``.

    Runs in chunks of ``batch_size``; a graph exported with a fixed batch size is fed chunks of
    exactly that size (the last one padded with zeros, the padding dropped from the output).
    """
    session = _as_session(path_or_session)
    x = _check_images(images, session)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    input_meta = session.get_inputs()[0]
    fixed_batch = input_meta.shape[0] if isinstance(input_meta.shape[0], int) else None
    chunk = fixed_batch or batch_size
    outputs = []
    for start in range(0, x.shape[0], chunk):
        part = x[start : start + chunk]
        n = part.shape[0]
        if fixed_batch is not None and n < fixed_batch:
            part = np.concatenate(
                [part, np.zeros((fixed_batch - n, *part.shape[1:]), dtype=np.float32)]
            )
        result = session.run(None, {input_meta.name: part})[0]
        outputs.append(np.asarray(result)[:n])
    if not outputs:
        num_out = session.get_outputs()[0].shape[-1]
        return np.zeros((0, num_out if isinstance(num_out, int) else 0), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32, copy=False)


def _torch_logits(model: nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    was_training = model.training
    model.eval()
    device = next(model.parameters(), torch.zeros(0)).device
    out = []
    try:
        with torch.no_grad():
            for start in range(0, images.shape[0], batch_size):
                y = model(torch.from_numpy(images[start : start + batch_size]).to(device))
                if isinstance(y, (tuple, list)):
                    y = y[0]
                out.append(y.detach().float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out)


@dataclass
class OnnxEquivalence:
    """PyTorch vs ONNX Runtime logits on one batch: differences, prediction agreement and the
    tolerance they were tested against."""

    max_abs_diff: float
    mean_abs_diff: float
    argmax_agreement: float  # fraction of equal predictions
    num_samples: int
    atol: float
    rtol: float
    within_tolerance: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.mean_abs_diff,
            "argmax_agreement": self.argmax_agreement,
            "num_samples": self.num_samples,
            "atol": self.atol,
            "rtol": self.rtol,
            "within_tolerance": self.within_tolerance,
        }


def check_onnx_equivalence(
    model: nn.Module,
    path: str | os.PathLike[str],
    images: np.ndarray,
    *,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> OnnxEquivalence:
    """Compare PyTorch and ONNX Runtime logits on ``images``; raise ExportError outside tolerance.

    Returns an `OnnxEquivalence`: ``max_abs_diff``, ``mean_abs_diff``, ``argmax_agreement`` (fraction of equal
    predictions), ``num_samples``, ``atol``, ``rtol`` and ``within_tolerance``. The tolerance test
    is numpy's ``allclose``: ``|onnx - torch| <= atol + rtol * |torch|`` element-wise.
    """
    x = np.ascontiguousarray(np.asarray(images), dtype=np.float32)
    if x.ndim != 4 or x.shape[0] == 0:
        raise DataError(f"images must be a non-empty [B, C, H, W] batch, got shape {x.shape}")
    reference = _torch_logits(model, x)
    got = run_onnx(path, x)
    if got.shape != reference.shape:
        raise ExportError(f"ONNX output shape {got.shape} differs from PyTorch's {reference.shape}")
    diff = np.abs(got.astype(np.float64) - reference.astype(np.float64))
    within = bool(np.allclose(got, reference, atol=atol, rtol=rtol))
    result = OnnxEquivalence(
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        argmax_agreement=float(np.mean(np.argmax(got, axis=1) == np.argmax(reference, axis=1))),
        num_samples=int(x.shape[0]),
        atol=float(atol),
        rtol=float(rtol),
        within_tolerance=within,
    )
    if not within:
        raise ExportError(
            f"ONNX Runtime output differs from PyTorch beyond atol={atol}, rtol={rtol}: "
            f"max |diff| {result.max_abs_diff:.3g}, predictions agree on "
            f"{100 * result.argmax_agreement:.1f}% of {result.num_samples} samples. "
            "Re-export with a different opset or check for layers that behave differently in eval mode."
        )
    return result


def benchmark_onnx(
    path: str | os.PathLike[str],
    images: np.ndarray,
    *,
    batch_sizes: Sequence[int] = (1, 64),
    warmup: int = 3,
    repeats: int = 20,
    threads: int | None = None,
) -> list[dict[str, Any]]:
    """Latency and throughput of ONNX Runtime inference per batch size (wall clock, host timer).

    For each batch size the batch is cut from ``images`` (repeated when there are fewer images),
    run ``warmup`` times untimed and ``repeats`` times timed. Returns one dict per batch size:
    ``batch_size``, ``latency_s`` (median per batch), ``latency_min_s``, ``latency_max_s``,
    ``latency_per_sample_s``, ``throughput_sps`` (samples per second at the median),
    ``repeats``, ``provider`` and ``runtime``.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    session = onnx_session(path, threads=threads)
    x = _check_images(images, session)
    if x.shape[0] == 0:
        raise DataError("benchmark_onnx needs at least one image")
    input_meta = session.get_inputs()[0]
    fixed_batch = input_meta.shape[0] if isinstance(input_meta.shape[0], int) else None
    results = []
    for bs in batch_sizes:
        bs = int(bs)
        if bs < 1:
            raise ValueError(f"batch sizes must be >= 1, got {bs}")
        if fixed_batch is not None and bs != fixed_batch:
            raise ExportError(
                f"{path} was exported with a fixed batch of {fixed_batch}; cannot benchmark batch {bs}. "
                "Re-export with dynamic_batch=True."
            )
        reps = -(-bs // x.shape[0])
        batch = (
            np.ascontiguousarray(np.concatenate([x] * reps)[:bs])
            if reps > 1
            else np.ascontiguousarray(x[:bs])
        )
        feed = {input_meta.name: batch}
        for _ in range(warmup):
            session.run(None, feed)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            session.run(None, feed)
            times.append(time.perf_counter() - t0)
        median = statistics.median(times)
        results.append(
            {
                "batch_size": bs,
                "latency_s": median,
                "latency_min_s": min(times),
                "latency_max_s": max(times),
                "latency_per_sample_s": median / bs,
                "throughput_sps": bs / median if median > 0 else float("inf"),
                "repeats": repeats,
                "provider": session.get_providers()[0],
                "runtime": "onnxruntime",
            }
        )
    return results
