"""Run a netx file on Lava's bit-accurate CPU simulator (the one module that imports lava).

It follows the emulator's sample protocol (hardware_sims/emulator.py docstring) natively:
``netx.hdf5.Network(reset_interval=T, reset_offset=r)`` gives every layer a staggered LIFReset
so that program layer ``k`` resets at the first step of its window. netx numbers the first *built*
layer's reset at step ``reset_offset + 1``: with bias input the input neuron is built (``r = 0``),
with spike input it is not, so ``r = 1`` puts the first synaptic layer's reset at step 2, when the
source's first spikes reach it through the one-step synapse.

Samples run back to back: sample ``i`` owns global steps ``i*T + 1 .. i*T + T`` at the input,
layer ``k`` owns ``i*T + k + 1 .. i*T + k + T``; the run lasts ``N*T + L`` steps. Spike inputs come
from a ``lava.proc.io.source.RingBuffer`` (data in netx's W,H,C order); bias inputs are written to
the input neuron's ``bias_mant`` before each sample's input window. Every layer's output port also
feeds a sink RingBuffer; the readout's ``v`` is read with ``Var.get()`` at the end of its window.
Always ``Loihi2SimCfg(select_tag='fixed_pt')``; the runtime is stopped in a ``finally``.

Ctrl-C: the processes Lava forks ignore SIGINT (a Ctrl-C reaches the whole process group; in Lava's
workers it only printed tracebacks and left their channels half-used), so it reaches this process
alone, which then kills Lava's workers and shuts down its shared memory instead of calling
``net.stop()``: a stop handshake over channels interrupted mid-message waits forever.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurocxr.errors import NeurocxrError, SimulationError
from neurocxr.exporters.netx import read_netx
from neurocxr.exporters.program import DenseLayer, LoihiProgram
from neurocxr.interrupts import install

from .counts import CountAccumulator
from .protocol import coerce_inputs, place_window, sample_timeline
from .results import RunResult

__all__ = ["run_lava"]


def _whc(arr: np.ndarray) -> np.ndarray:
    """torch (C, H, W, ...) -> netx (W, H, C, ...) for 3-D layer shapes; 1-D unchanged."""
    if arr.ndim >= 3:
        axes = (2, 1, 0, *range(3, arr.ndim))
        return np.transpose(arr, axes)
    return arr


def _from_whc(arr: np.ndarray, ndim: int) -> np.ndarray:
    if ndim == 3:
        return np.transpose(arr, (2, 1, 0, *range(3, arr.ndim)))
    return arr


def _import_lava() -> tuple[Any, ...]:
    """Import Lava, tolerating a multiprocessing context that is already set.

    lava-nc 0.10 calls ``multiprocessing.set_start_method('fork')`` at import, which raises
    "context has already been set" once anything fixed the context first (tqdm's progress-bar lock
    does, so training before exporting broke the Lava import). Lava needs 'fork', which is Linux's
    default, so during the import a repeated request for the current method is a no-op and another
    method is forced. This is the library's one process-wide change (the README's Python API section
    says so): Lava starts its runtime processes from the global context, so a caller's 'spawn' or
    'forkserver' cannot be kept in a process that runs Lava.
    """
    import multiprocessing as mp

    original = mp.set_start_method

    def tolerant(method: str, force: bool = False) -> None:
        if mp.get_start_method(allow_none=True) != method:
            original(method, force=True)

    mp.set_start_method = tolerant  # type: ignore[assignment]
    try:
        # lava-dl prints a warning about an optional DVS dataset toolbox on import: not ours to show.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            from lava.lib.dl import netx
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.io import sink, source
    except Exception as exc:  # pragma: no cover - environment problem
        raise SimulationError(
            f"Lava is not importable ({exc}); install lava-nc 0.10 / lava-dl 0.6 on Python 3.10"
        ) from exc
    finally:
        mp.set_start_method = original  # type: ignore[assignment]
    return netx, RunSteps, Loihi2SimCfg, sink, source


# True while Lava forks its runtime processes (this module's own flag): those children ignore SIGINT.
_forking_lava = False


def _lava_child_ignores_sigint() -> None:
    if _forking_lava:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_lava_child_ignores_sigint)


def _terminate_runtime(net: Any, children_before: set[Any] | None = None) -> None:
    """Kill the runtime's worker processes and shut down its shared memory, without the channel
    handshake of ``net.stop()``; used when a run was interrupted or never started (a stop on an
    unstarted runtime also waits forever). Marks the runtime stopped so that its ``__del__`` does
    not try that handshake again. Then kills any other process forked since ``children_before``:
    a Ctrl-C between a worker's start and Lava recording it leaves one Lava does not list, and
    Python's exit would wait for it forever."""
    try:
        _stop_runtime_processes(getattr(net, "_runtime", None))
    finally:
        if children_before is not None:
            for child in set(mp.active_children()) - children_before:
                with contextlib.suppress(Exception):
                    child.kill()
                    mp.Process.join(child, timeout=5)


def _stop_runtime_processes(runtime: Any) -> None:
    if runtime is None:
        return
    infra = getattr(runtime, "_messaging_infrastructure", None)
    actors = list(getattr(infra, "actors", None) or [])
    for actor in actors:
        with contextlib.suppress(Exception):
            if actor.is_alive():
                actor.kill()
    for actor in actors:
        with contextlib.suppress(Exception):
            mp.Process.join(actor, timeout=5)  # the plain join: Lava's override takes no timeout
    smm = getattr(infra, "smm", None)
    if smm is not None:
        with contextlib.suppress(Exception):
            smm.shutdown()  # unlinks the channels' shared memory blocks; the manager ignores SIGINT
        manager = getattr(smm, "_manager", None)
        if manager is not None and not hasattr(manager, "shutdown"):
            # interrupted inside the manager's start() (the stdlib defines shutdown only once it
            # started): drop it, else every Lava process's __del__ retries and prints a traceback
            smm._manager = None
    watchdog = getattr(runtime, "_watchdog_manager", None)
    if watchdog is not None:
        with contextlib.suppress(Exception):
            watchdog.stop()
    runtime._is_started = False
    runtime._is_running = False


def _shut_down(net: Any, *, graceful: bool, children_before: set[Any]) -> None:
    """``net.stop()`` after a clean run; otherwise, or when a second Ctrl-C cuts the stop short,
    `_terminate_runtime`."""
    if graceful:
        try:
            net.stop()
            return
        except Exception:
            pass  # a failed stop still leaves workers to end
        except BaseException:
            _terminate_runtime(net, children_before)
            raise
    _terminate_runtime(net, children_before)


def run_lava(
    netx_path: str | os.PathLike[str],
    inputs: np.ndarray | torch.Tensor,
    *,
    num_steps: int,
    program: LoihiProgram | None = None,
    record: bool = False,
    progress: bool = False,
    monitor: str = "all",
    raw_bias: bool = False,
) -> RunResult:
    """Run the netx file on Lava (fixed_pt) with the emulator's sample protocol; return a RunResult.
    ``inputs`` as `emulate` takes them (one pixel rule; integer bias mantissas with ``raw_bias=True``).

    ``program`` (the LoihiProgram the file was written from) saves re-reading the file; it is used
    for shapes and count constants, never for the dynamics, which are Lava's.

    ``monitor="all"`` attaches a sink to every layer (needed for ``record`` and for the per-layer
    counts); ``monitor="output"`` attaches one to the output (last spiking) layer only, Lava's
    leanest way to the network's result (the readout is read either way): the result then has
    ``counts == []`` and no ``layer_spikes``.
    """
    if monitor not in ("all", "output"):
        raise SimulationError(f"monitor must be 'all' or 'output', got {monitor!r}")
    if record and monitor != "all":
        raise SimulationError("record=True needs monitor='all' (every layer's spikes)")
    netx, RunSteps, Loihi2SimCfg, sink, source = _import_lava()

    path = Path(netx_path)
    if program is None:
        program = read_netx(path)
    data, steps = coerce_inputs(program, inputs, num_steps, raw_bias=raw_bias)
    _, t_run = sample_timeline(program, steps)
    n_layers = len(program.layers)
    depth = n_layers - 1
    num_samples = data.shape[0] if program.input_kind == "bias" else data.shape[1]
    if num_samples == 0:
        raise SimulationError("run_lava needs at least one sample")
    total = num_samples * steps + depth
    bias_input = program.input_kind == "bias"

    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            net = netx.hdf5.Network(
                net_config=str(path), reset_interval=steps, reset_offset=0 if bias_input else 1
            )
    except Exception as exc:
        raise SimulationError(
            f"Lava's netx loader could not build {path}: {type(exc).__name__}: {exc}"
        ) from exc
    built = list(net.layers)
    layer_of_built = list(range(n_layers)) if bias_input else list(range(1, n_layers))
    if len(built) != len(layer_of_built):
        raise SimulationError(
            f"netx built {len(built)} layers from {path}, the program has {len(layer_of_built)}"
        )
    spiking_idx = n_layers - 2 if program.has_readout else n_layers - 1
    monitored = (
        layer_of_built if monitor == "all" else [k for k in layer_of_built if k == spiking_idx]
    )
    sinks = []
    for k in monitored:
        blk = built[layer_of_built.index(k)]
        snk = sink.RingBuffer(shape=blk.out.shape, buffer=total)
        blk.out.connect(snk.a_in)
        sinks.append(snk)
    src = None
    if not bias_input:
        spikes = data.reshape(steps, num_samples, *program.layers[0].shape)
        if isinstance(program.layers[1], DenseLayer):
            # netx applies its flatten only between built layers: a dense first layer takes the
            # stream already flattened, in torch C,H,W order (the order of its weight columns)
            spikes = spikes.reshape(steps, num_samples, -1)
        frame = _whc(np.zeros(spikes.shape[2:]))
        stream = np.zeros((*frame.shape, total), dtype=np.int32)
        for i in range(num_samples):
            stream[..., i * steps : (i + 1) * steps] = _whc(np.moveaxis(spikes[:, i], 0, -1))
        try:
            src = source.RingBuffer(data=stream)
            src.s_out.connect(net.inp)
        except Exception as exc:
            raise SimulationError(
                f"cannot feed input of shape {frame.shape} into {path}: {exc}"
            ) from exc

    # pause points: bias changes at i*T (input window start - 1), readout reads at i*T + T + depth;
    # a spike-input program without readout runs continuously: one net.run over all samples.
    pauses_set = {total}
    if bias_input:
        pauses_set |= {i * steps for i in range(1, num_samples)}
    if program.has_readout:
        pauses_set |= {i * steps + steps + depth for i in range(num_samples)}
    pauses = sorted(pauses_set)
    run_cfg = Loihi2SimCfg(select_tag="fixed_pt")
    readouts: list[np.ndarray] = []
    # run_s: everything after compile; sim_s: inside net.run only; readback_s: Var.get() of the
    # recorded spikes, which in Lava 0.10 costs far more than the simulation for large layers.
    compile_s = run_s = sim_s = readback_s = 0.0
    sink_data: list[np.ndarray] = []
    started = False
    if bias_input:
        # Var.set() needs a started runtime; the first sample's bias goes in as the Var's initial value.
        built[0].neuron.bias_mant.init = _whc(data[0].reshape(program.layers[0].shape)).astype(
            np.int32
        )
    global _forking_lava

    install()  # a Ctrl-C while Lava forks its workers is not dropped
    children_before = set(mp.active_children())
    interrupted = False
    try:
        try:
            _forking_lava = True
            net.create_runtime(run_cfg=run_cfg)
        except Exception as exc:
            raise SimulationError(
                f"Lava could not compile {path}: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            _forking_lava = False
        compile_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        now = 0
        iterator: Any = pauses
        if progress:
            from tqdm import tqdm

            iterator = tqdm(pauses, desc="lava", unit="pause")
        for p in iterator:
            if p > now:
                started = True  # from here on the runtime must be stopped (stop() on an unstarted one hangs)
                t_sim = time.perf_counter()
                net.run(condition=RunSteps(num_steps=p - now, blocking=True), run_cfg=run_cfg)
                sim_s += time.perf_counter() - t_sim
                now = p
            if bias_input and p % steps == 0 and 0 < p // steps < num_samples:
                i = p // steps
                bias = data[i].reshape(program.layers[0].shape)
                built[0].neuron.bias_mant.set(_whc(bias).astype(np.int32))
            if program.has_readout and p >= steps + depth and (p - depth) % steps == 0:
                readouts.append(np.asarray(built[-1].neuron.v.get()).astype(np.int64).reshape(-1))
        t_read = time.perf_counter()
        sink_data = [np.asarray(s.data.get()) for s in sinks]
        readback_s = time.perf_counter() - t_read
        run_s = time.perf_counter() - t1
    except NeurocxrError:
        raise
    except Exception as exc:
        raise SimulationError(f"Lava run of {path} failed: {type(exc).__name__}: {exc}") from exc
    except BaseException:  # Ctrl-C (or SystemExit) anywhere in compile or run
        interrupted = True
        raise
    finally:
        _shut_down(net, graceful=started and not interrupted, children_before=children_before)

    # per-layer window spikes [T, B, N] from the global recordings
    windows: dict[int, torch.Tensor] = {}
    for k, layer in enumerate(program.layers):
        if k == 0 and not bias_input:
            win = data.reshape(steps, num_samples, -1).astype(bool)
        elif k in monitored:
            rec = sink_data[monitored.index(k)]  # (*WHC, total)
            rec = _from_whc(rec, len(layer.shape)).reshape(-1, total)  # [N, total] torch order
            win = np.stack(
                [rec[:, i * steps + k : i * steps + k + steps].T for i in range(num_samples)],
                axis=1,
            )
            win = win.astype(bool)
        else:
            continue
        windows[k] = torch.as_tensor(np.ascontiguousarray(win))
    counts = []
    if monitor == "all":
        counter = CountAccumulator(program)
        counter.add([windows[k] for k in range(n_layers)])
        counts = counter.result(steps, num_samples)
    return RunResult(
        output_spikes=place_window(
            windows[spiking_idx], spiking_idx, t_run, program.layers[spiking_idx].shape
        ),
        readout=np.stack(readouts) if program.has_readout else None,
        counts=counts,
        time_steps=t_run,
        layer_spikes=[
            place_window(windows[k], k, t_run, program.layers[k].shape) for k in range(n_layers)
        ]
        if record
        else None,
        simulator="lava",
        metadata={
            "num_steps": steps,
            "t_run": t_run,
            "protocol": "staggered-window",
            "global_steps": total,
            "compile_s": compile_s,
            "run_s": run_s,
            "sim_s": sim_s,
            "readback_s": readback_s,
            "select_tag": "fixed_pt",
            "net_run_calls": len(pauses),
            "monitor": monitor,
            "run_mode": (
                "continuous: one net.run over all samples, reset_interval per sample"
                if len(pauses) == 1
                else f"{len(pauses)} net.run calls (pauses to set input bias / read the readout)"
            ),
            "counts_cover": "each layer's num_steps window",
        },
    )
