"""Samples/second of the batched emulator vs Lava's fixed-point CPU simulator on the REAL default model.

The program is the default model exported through ``neurocxr.pipeline.to_program``: the trained
checkpoint given with ``--checkpoint``, else a freshly initialised ``snn_conv`` (seed 0); the JSON
says which. Both simulators get the same random images in [0, 1]; Lava runs ``--lava-samples``
(>= 20), the emulator ``--emu-samples`` (several hundred, timed ``--repeats`` times, median
reported). Every layer's spikes and the readout are compared bitwise on the Lava samples.
Writes benchmarks/results/emulator_vs_lava.json and prints a table.

Usage: OMP_NUM_THREADS=1 python benchmarks/emulator_vs_lava.py [--checkpoint ckpt.pt] [--lava-samples 20]
       [--emu-samples 512] [--num-steps 16] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from neurocxr.exporters.netx import write_netx
from neurocxr.hardware_sims.emulator import DEFAULT_BATCH_SIZE, emulate
from neurocxr.hardware_sims.lava import run_lava
from neurocxr.models import ModelConfig, build_model
from neurocxr.pipeline import load, to_program

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None, help="trained neurocxr checkpoint (default model)")
    parser.add_argument("--lava-samples", type=int, default=20)
    parser.add_argument("--emu-samples", type=int, default=512)
    parser.add_argument("--num-steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5, help="emulator timing repeats (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for the emulator (default: caller's)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "emulator_vs_lava.json")
    args = parser.parse_args()
    if args.lava_samples < 1 or args.emu_samples < 1:
        parser.error("--lava-samples and --emu-samples must be >= 1")

    t = time.perf_counter()
    if args.checkpoint is not None:
        loaded = load(args.checkpoint)
        program_source = f"trained checkpoint {args.checkpoint}"
    else:
        torch.manual_seed(0)
        loaded = load(build_model(ModelConfig()).eval())
        program_source = "freshly initialised snn_conv (ModelConfig() defaults, torch seed 0; no checkpoint given)"
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    _, program = to_program(loaded)
    to_program_s = time.perf_counter() - t

    rng = np.random.default_rng(7)
    images = rng.random((max(args.lava_samples, args.emu_samples), *program.layers[0].shape)).astype(np.float32)
    threads_used = args.threads if args.threads is not None else torch.get_num_threads()

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        path = write_netx(program, Path(tmp) / "default.net")
        write_s = time.perf_counter() - t

        emulate(program, images[:4], num_steps=args.num_steps, threads=args.threads)  # warm-up
        emu_times = []
        for _ in range(max(1, args.repeats)):
            t = time.perf_counter()
            emulate(program, images[: args.emu_samples], num_steps=args.num_steps, batch_size=args.batch_size,
                    threads=args.threads)
            emu_times.append(time.perf_counter() - t)
        emu_s = statistics.median(emu_times)

        t = time.perf_counter()
        lava = run_lava(path, images[: args.lava_samples], num_steps=args.num_steps, program=program, record=True)
        lava_wall = time.perf_counter() - t

    emu_same = emulate(program, images[: args.lava_samples], num_steps=args.num_steps, record=True,
                       batch_size=args.batch_size, threads=args.threads)
    layer_equal = {layer.name: bool(np.array_equal(a, b))
                   for layer, a, b in zip(program.layers, emu_same.layer_spikes, lava.layer_spikes)}
    readout_equal = bool(np.array_equal(emu_same.readout, lava.readout))
    identical = readout_equal and all(layer_equal.values())
    emu_sps = args.emu_samples / emu_s
    lava_sps_run = args.lava_samples / lava.metadata["run_s"]
    lava_sps_wall = args.lava_samples / lava_wall
    result = {
        "program_source": program_source,
        "num_steps": args.num_steps,
        "t_run": emu_same.time_steps,
        "threads": {"emulator_torch_threads": threads_used,
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                    "lava": "Lava's own processes (one per process model), not controlled here"},
        "emulator": {"samples": args.emu_samples, "batch_size": args.batch_size, "repeats": len(emu_times),
                     "seconds_each": emu_times, "seconds_median": emu_s, "samples_per_s": emu_sps},
        "lava": {"samples": args.lava_samples, "compile_s": lava.metadata["compile_s"],
                 "run_s": lava.metadata["run_s"], "wall_s": lava_wall,
                 "samples_per_s_run": lava_sps_run, "samples_per_s_wall": lava_sps_wall},
        "speedup_vs_lava_run": emu_sps / lava_sps_run,
        "speedup_vs_lava_wall": emu_sps / lava_sps_wall,
        "identical_outputs": identical,
        "identical_layer_spikes": layer_equal,
        "identical_readout": readout_equal,
        "export_s": {"load_model": load_s, "to_program": to_program_s, "write_netx": write_s,
                     "to_program_plus_write_netx": to_program_s + write_s},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"program: {program_source}; num_steps {args.num_steps}; emulator threads {threads_used}")
    print(f"{'simulator':<10} {'samples':>8} {'seconds':>9} {'samples/s':>11}")
    print(f"{'emulator':<10} {args.emu_samples:>8} {emu_s:>9.3f} {emu_sps:>11.1f}   (median of {len(emu_times)})")
    print(f"{'lava run':<10} {args.lava_samples:>8} {lava.metadata['run_s']:>9.3f} {lava_sps_run:>11.3f}")
    print(f"{'lava wall':<10} {args.lava_samples:>8} {lava_wall:>9.3f} {lava_sps_wall:>11.3f}")
    print(f"speedup (vs run) {result['speedup_vs_lava_run']:.0f}x, (vs wall) {result['speedup_vs_lava_wall']:.0f}x; "
          f"identical spikes (every layer) and readout: {identical}; export to_program {to_program_s:.3f}s + "
          f"write_netx {write_s:.3f}s; written {args.out}")


if __name__ == "__main__":
    main()
