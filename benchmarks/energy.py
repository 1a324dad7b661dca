"""Energy benchmark on the real PneumoniaMNIST test set, from checkpoints trained elsewhere.

For the SNN checkpoint and the CNN baseline(s): accuracy at validation-chosen thresholds (the
chip's chosen on the chip's own validation scores), per-layer counts from the emulator over the
whole test set (and how long counting took), estimates per device profile on both counting
bases, and measurements where this machine allows (NVML/Zeus on a GPU, RAPL on an Intel CPU;
otherwise latency only, marked "not measurable"). It never trains: `make bench` trains once in
benchmarks/accuracy.py and passes the same checkpoints here. Writes benchmarks/results/energy.json
(with the provenance block) and the full report (report.html, report.json) in benchmarks/results/energy/.

    python benchmarks/energy.py --checkpoint CKPT [--baseline CKPT ...] [--export-dir DIR] [--sweep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CHECKPOINTS = RESULTS / "checkpoints"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=os.environ.get("NEUROCXR_DATA"))
    parser.add_argument(
        "--checkpoint",
        "--snn",
        dest="checkpoint",
        type=Path,
        default=CHECKPOINTS / "snn_conv.pt",
        help="the SNN checkpoint (default: the one benchmarks/accuracy.py wrote)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        action="append",
        default=None,
        help="CNN baseline checkpoint(s) (default: benchmarks/results/checkpoints/cnn_small.pt)",
    )
    parser.add_argument(
        "--export-dir",
        type=Path,
        default=None,
        help="folder of `neurocxr export --target loihi` for this checkpoint: its export_report.json "
        "goes into the report",
    )
    parser.add_argument(
        "--sweep",
        type=Path,
        default=None,
        help="a sweep folder / results table to plot beside the models",
    )
    parser.add_argument("--measure-seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "energy")
    parser.add_argument("--json", type=Path, default=RESULTS / "energy.json")
    args = parser.parse_args(argv)
    if not args.data or not Path(args.data).exists():
        print(
            "NEUROCXR_DATA is not set to the PneumoniaMNIST .npz: this benchmark needs the real data.",
            file=sys.stderr,
        )
        return 2
    baselines = args.baseline or [CHECKPOINTS / "cnn_small.pt"]
    missing = [p for p in [args.checkpoint, *baselines] if not p.is_file()]
    if missing:
        print(
            f"missing checkpoint(s): {', '.join(map(str, missing))}. This benchmark never trains: run "
            "benchmarks/accuracy.py first (or `make bench`), or pass --checkpoint/--baseline.",
            file=sys.stderr,
        )
        return 2
    export_report = None
    if args.export_dir is not None:
        path = args.export_dir / "export_report.json"
        if not path.is_file():
            print(
                f"{path} not found: run `neurocxr export {args.checkpoint} --target loihi -o {args.export_dir}`",
                file=sys.stderr,
            )
            return 2
        export_report = json.loads(path.read_text(encoding="utf-8"))

    import neurocxr
    from neurocxr.fileio import write_json
    from neurocxr.report import format_energy, format_seconds, verdict

    t0 = time.perf_counter()
    rep = neurocxr.energy_report(
        args.checkpoint,
        baselines=baselines,
        data=args.data,
        out=args.out,
        force=True,
        export_report=export_report,
        sweep=args.sweep,
        measure_seconds=args.measure_seconds,
        on_status=lambda message: print(message, flush=True),
    )
    seconds = time.perf_counter() - t0
    data = json.loads(Path(rep.paths[1]).read_text(encoding="utf-8"))
    summary = {
        "measured": (
            "energy per inference of the given (trained) checkpoints: counts from the bit-exact emulator "
            "over the test split, estimates per device profile, CPU/GPU measurements where possible"
        ),
        "data": rep.data_source,
        "report_html": str(rep.paths[0]),
        "verdict": verdict(rep),
        "emulator_seconds_full_test_set": rep.parity["emulator_seconds"],
        "emulator_samples": rep.parity["samples"],
        "total_seconds": seconds,
        "operating_point": data["operating_point"],
        "parity": rep.parity,
        "not_measurable_here": rep.not_measurable,
        "summary": data["summary"],
        "accuracy": rep.accuracy,
        "counting_bases": data["counting_bases"],
        "layer_counts": data.get("layer_counts"),
        "export_report": str(args.export_dir / "export_report.json") if args.export_dir else None,
        "provenance": rep.provenance,
    }
    write_json(args.json, summary)
    print(
        f"counted {rep.parity['samples']} test samples on the emulator in {rep.parity['emulator_seconds']:.2f} s"
    )
    for r in rep.summary:
        print(
            f"{r.model:24s} {r.device:36s} {r.kind:15s} {(r.basis + ', ' + r.scope).strip(', '):44s} "
            f"dyn {format_energy(r.dynamic_j):>9s} total {format_energy(r.total_j):>9s} "
            f"latency {format_seconds(r.latency_s)}"
        )
    print(f"verdict: {verdict(rep)}")
    print(f"wrote {args.json} and {rep.paths[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
