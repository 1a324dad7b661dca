"""Energy benchmark on the real PneumoniaMNIST test set.

For the default SNN and the CNN baselines: accuracy, per-layer counts from the emulator over the
whole test set (and how long counting took), estimates per device profile, and measurements where
this machine allows (NVML on a GPU, RAPL on an Intel CPU; otherwise latency only, marked
"not measurable"). Uses the checkpoints written by benchmarks/accuracy.py when present, otherwise
trains briefly. Writes benchmarks/results/energy.json and report.html beside it.

    python benchmarks/energy.py [--snn CKPT] [--baseline CKPT ...] [--epochs N]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("NEUROCXR_DATA"))
    parser.add_argument("--snn", type=Path, default=RESULTS / "checkpoints" / "snn_conv.pt")
    parser.add_argument("--baseline", type=Path, action="append", default=None)
    parser.add_argument("--epochs", type=int, default=4, help="training epochs when a checkpoint is missing")
    parser.add_argument("--out", type=Path, default=RESULTS / "energy")
    args = parser.parse_args(argv)
    if not args.data or not Path(args.data).exists():
        print("NEUROCXR_DATA is not set to the PneumoniaMNIST .npz: this benchmark needs the real data.", file=sys.stderr)
        return 2

    import neurocxr
    from neurocxr.fileio import write_json

    baselines = args.baseline or [RESULTS / "checkpoints" / "cnn_small.pt"]
    ckpts = {"snn_conv": args.snn}
    for b in baselines:
        ckpts[b.stem] = b
    for name, path in list(ckpts.items()):
        if not path.exists():
            print(f"{path} missing: training {name} for {args.epochs} epochs")
            res = neurocxr.train(name, data=args.data, out=path.parent, epochs=args.epochs, force=True)
            ckpts[name] = Path(res["checkpoint"])

    t0 = time.perf_counter()
    rep = neurocxr.energy_report(
        ckpts["snn_conv"], baselines=[ckpts[k] for k in ckpts if k != "snn_conv"], data=args.data, out=args.out, force=True
    )
    seconds = time.perf_counter() - t0
    data = json.loads(Path(rep.paths[1]).read_text())
    summary = {
        "data": rep.data_source,
        "report_html": str(rep.paths[0]),
        "emulator_seconds_full_test_set": rep.parity["emulator_seconds"],
        "emulator_samples": rep.parity["samples"],
        "total_seconds": seconds,
        "parity": rep.parity,
        "summary": [r.__dict__ for r in rep.summary],
        "accuracy": rep.accuracy,
        "layer_counts": data.get("layer_counts"),
    }
    write_json(RESULTS / "energy.json", summary)
    print(f"counted {rep.parity['samples']} test samples on the emulator in {rep.parity['emulator_seconds']:.2f} s")
    for r in rep.summary:
        dyn = "-" if r.dynamic_j is None else f"{r.dynamic_j:.3e} J"
        tot = "-" if r.total_j is None else f"{r.total_j:.3e} J"
        lat = "-" if r.latency_s is None else f"{r.latency_s * 1e3:.3g} ms"
        print(f"{r.model:32s} {r.device:28s} {r.kind:15s} dyn {dyn:>12s} total {tot:>12s} latency {lat}")
    print(f"wrote {RESULTS / 'energy.json'} and {rep.paths[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
