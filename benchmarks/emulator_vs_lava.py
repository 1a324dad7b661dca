"""Samples/second of the emulator vs Lava's fixed-point simulator on the default-shaped program.

Program source, in order of preference: a real exported default model (needs exporters/loihi.py
and a checkpoint; not wired yet), else the hand-built default-shaped program of
tests/_netx_programs.py. Writes benchmarks/results/emulator_vs_lava.json and prints a table.
Usage: OMP_NUM_THREADS=1 python benchmarks/emulator_vs_lava.py [--lava-samples 20] [--emu-samples 512]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _netx_programs import default_shaped_program, random_images  # noqa: E402

from neurocxr.exporters.netx import write_netx  # noqa: E402
from neurocxr.hardware_sims.emulator import emulate  # noqa: E402
from neurocxr.hardware_sims.lava import run_lava  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lava-samples", type=int, default=20)
    parser.add_argument("--emu-samples", type=int, default=512)
    parser.add_argument("--num-steps", type=int, default=8)
    args = parser.parse_args()

    program = default_shaped_program(num_steps=args.num_steps)
    program_source = "hand-built default-shaped program (random integer weights; no trained export available)"
    images = random_images(max(args.lava_samples, args.emu_samples), seed=7)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        path = write_netx(program, Path(tmp) / "default.net")
        write_s = time.perf_counter() - t
        emulate(program, images[:4])  # warm-up
        t = time.perf_counter()
        emu_all = emulate(program, images[: args.emu_samples], batch_size=256)
        emu_s = time.perf_counter() - t
        t = time.perf_counter()
        lava = run_lava(path, images[: args.lava_samples], num_steps=args.num_steps, program=program, record=True)
        lava_wall = time.perf_counter() - t
    emu_same = emulate(program, images[: args.lava_samples], record=True)
    identical = bool(np.array_equal(emu_same.readout, lava.readout) and all(
        np.array_equal(a, b) for a, b in zip(emu_same.layer_spikes, lava.layer_spikes)))
    emu_sps = args.emu_samples / emu_s
    lava_sps_run = args.lava_samples / lava.metadata["run_s"]
    lava_sps_wall = args.lava_samples / lava_wall
    result = {
        "program_source": program_source,
        "num_steps": args.num_steps,
        "t_run": emu_all.time_steps,
        "emulator": {"samples": args.emu_samples, "seconds": emu_s, "samples_per_s": emu_sps},
        "lava": {"samples": args.lava_samples, "compile_s": lava.metadata["compile_s"],
                 "run_s": lava.metadata["run_s"], "wall_s": lava_wall,
                 "samples_per_s_run": lava_sps_run, "samples_per_s_wall": lava_sps_wall},
        "speedup_vs_lava_run": emu_sps / lava_sps_run,
        "speedup_vs_lava_wall": emu_sps / lava_sps_wall,
        "identical_outputs": identical,
        "netx_write_s": write_s,
        "export_s": None,
        "threads": "OMP_NUM_THREADS as set by the caller",
    }
    out = ROOT / "benchmarks" / "results" / "emulator_vs_lava.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"{'simulator':<10} {'samples':>8} {'seconds':>9} {'samples/s':>11}")
    print(f"{'emulator':<10} {args.emu_samples:>8} {emu_s:>9.3f} {emu_sps:>11.1f}")
    print(f"{'lava run':<10} {args.lava_samples:>8} {lava.metadata['run_s']:>9.3f} {lava_sps_run:>11.2f}")
    print(f"{'lava wall':<10} {args.lava_samples:>8} {lava_wall:>9.3f} {lava_sps_wall:>11.2f}")
    print(f"speedup (vs run) {result['speedup_vs_lava_run']:.0f}x, (vs wall) {result['speedup_vs_lava_wall']:.0f}x; "
          f"identical outputs: {identical}; written {out}")


if __name__ == "__main__":
    main()
