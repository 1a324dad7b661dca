"""Print the README's "What we measured" table from the benchmark JSON files, so the README's
figures are regenerated from what `make bench` wrote, never typed in by hand.

    python benchmarks/readme_figures.py [--results benchmarks/results]

Reads accuracy.json, emulator_vs_lava.json, energy.json (and pareto.json when present); prints a
Markdown table plus one provenance line per file (commit, dirty flag, checkpoint hashes). Files
that are missing are named, and their rows are left out: nothing is filled in from elsewhere.
Flags files whose checkpoints differ: then the figures do not come from one trained model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _load(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _pct(x: Any) -> str:
    return "—" if x is None else f"{100 * float(x):.1f}%"


def _f3(x: Any) -> str:
    return "—" if x is None else f"{float(x):.3f}"


def _energy(x: Any) -> str:
    from neurocxr.report import format_energy

    return format_energy(x)


def _value(q: Any) -> Any:
    return q.get("value") if isinstance(q, dict) else q


def _rows_by(summary: list[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    return [r for r in summary if r["model"].split(" (")[0] == model]


def _provenance_line(name: str, data: dict[str, Any]) -> str:
    prov = data.get("provenance") or {}
    git = prov.get("git") or {}
    ckpts = ", ".join(
        f"{k} {str((v or {}).get('sha256') or '?')[:12]}"
        for k, v in (prov.get("checkpoints") or {}).items()
    )
    threads = (prov.get("threads") or {}).get("torch_threads")
    return (
        f"- `{name}`: commit {str(git.get('commit') or '?')[:10]}{' (dirty)' if git.get('dirty') else ''}, "
        f"{prov.get('time_utc', '?')}, torch threads {threads}, checkpoints: {ckpts or 'none'}"
    )


def _checkpoint_hashes(data: dict[str, Any] | None) -> dict[str, str]:
    prov = (data or {}).get("provenance") or {}
    return {
        k: (v or {}).get("sha256")
        for k, v in (prov.get("checkpoints") or {}).items()
        if (v or {}).get("sha256")
    }


def table(results: Path) -> tuple[list[str], list[str]]:
    """(Markdown lines, warnings)."""
    acc = _load(results / "accuracy.json")
    emu = _load(results / "emulator_vs_lava.json")
    energy = _load(results / "energy.json")
    pareto = _load(results / "pareto.json")
    warnings = [
        f"{name} missing: its rows are left out"
        for name, d in (
            ("accuracy.json", acc),
            ("emulator_vs_lava.json", emu),
            ("energy.json", energy),
        )
        if d is None
    ]
    lines = ["| | result |", "|---|---|"]
    if acc:
        for name, m in acc.get("models", {}).items():
            cfg = m.get("model_config") or {}
            steps = (
                f"{cfg.get('num_steps')} steps, "
                if cfg.get("num_steps") and name.startswith("snn")
                else ""
            )
            lines.append(
                f"| `{name}` ({steps}{m.get('epochs_run')} epochs, best {m.get('best_epoch')}) | test accuracy "
                f"{_pct(m.get('test_accuracy'))}, ROC-AUC {_f3(m.get('test_auc'))}, sensitivity "
                f"{_f3(m.get('test_sensitivity'))}, specificity {_f3(m.get('test_specificity'))} "
                f"(threshold {_f3(m.get('threshold'))} chosen on val) |"
            )
    if energy:
        op = energy.get("operating_point") or {}
        f, c = op.get("float_test") or {}, op.get("chip_test") or {}
        if op:
            lines.append(
                f"| Loihi export, same operating point | float model: accuracy {_pct(f.get('accuracy'))}, sens/spec "
                f"{_f3(f.get('sensitivity'))}/{_f3(f.get('specificity'))}, AUC "
                f"{_f3(f.get('roc_auc'))}; chip (emulator, "
                f"threshold chosen on the chip's validation scores): {_pct(c.get('accuracy'))}, "
                f"{_f3(c.get('sensitivity'))}/{_f3(c.get('specificity'))}, AUC "
                f"{_f3(c.get('roc_auc'))}; decisions changed "
                f"{_pct(op.get('test_prediction_changed_fraction'))} |"
            )
    if emu:
        for key, label in (("a_spike_conv", "(a)"), ("b_default_model", "(b)")):
            case = emu.get(key)
            if not case:
                continue
            e, lv = case["emulator"], case["lava"]
            rounds = ", ".join(f"{x:.0f}x" for x in case.get("speedup_vs_lava_sim_each_round", []))
            lines.append(
                f"| emulator vs Lava {label}: {case.get('model')} | {e['samples_per_s_median']:.0f} samples/s "
                f"({e['threads']} thread(s), {e['kernel']}) vs Lava "
                f"{lv['samples_per_s_sim_median']:.3g} samples/s inside "
                f"net.run ({lv['run_mode']}): about {case['speedup_vs_lava_sim']:.0f}x (median of paired rounds: "
                f"{rounds}); output spikes and readout identical on {lv['samples']} samples every round, every layer "
                f"and count on {case['recorded']['samples']}: {case['identical']} |"
            )
    if energy:
        summary = energy.get("summary") or []
        models = list(dict.fromkeys(r["model"].split(" (")[0] for r in summary))
        for model in models:
            parts = []
            for r in _rows_by(summary, model):
                if r["kind"] != "estimated":
                    continue
                dyn, tot = _value(r["dynamic_energy"]), _value(r["total_energy"])
                lat, fps = _value(r.get("latency")), _value(r.get("throughput"))
                extra = f", total {_energy(tot)}" if tot is not None else ""
                if lat is not None:
                    from neurocxr.report import format_seconds

                    extra += f", latency {format_seconds(lat)}"
                if fps is not None:
                    extra += f", {fps:,.0f} fps"
                lat_slow = _value(r.get("latency_slow_bound"))
                fps_slow = _value(r.get("throughput_slow_bound"))
                if lat_slow is not None and fps_slow is not None:  # a bracket (Loihi 2)
                    from neurocxr.report import format_seconds

                    tot_slow = _value(r.get("total_energy_slow_bound"))
                    extra += (
                        f" (slow bound at the profile's slow synaptic op time: {format_seconds(lat_slow)}, "
                        f"{fps_slow:,.0f} fps"
                        + (f", total {_energy(tot_slow)}" if tot_slow is not None else "")
                        + ")"
                    )
                parts.append(
                    f"{r['device']} [{r.get('basis', '')}{', ' + r['scope'] if r.get('scope') else ''}]: "
                    f"{_energy(dyn)}{extra}"
                )
            if parts:
                lines.append(
                    f"| estimated energy per inference, `{model}` | " + "; ".join(parts) + " |"
                )
        measured = [r for r in summary if r["kind"] != "estimated"]
        if measured:
            from neurocxr.report import format_seconds

            parts = []
            for r in measured:
                dyn = _value(r["dynamic_energy"])
                parts.append(
                    f"{r['model']} on {r['device']}: latency {format_seconds(_value(r['latency']))}"
                    + (f", {_energy(dyn)} ({r['kind']})" if dyn is not None else "")
                )
            nm = energy.get("not_measurable_here") or {}
            tail = (
                ("; not measurable here: " + "; ".join(f"{k} ({v})" for k, v in nm.items()))
                if nm
                else ""
            )
            lines.append("| measured (batch 1) | " + "; ".join(parts) + tail + " |")
        if energy.get("verdict"):
            lines.append(f"| verdict | {energy['verdict']} |")
    if pareto:
        ok = [t for t in pareto.get("trials", []) if t.get("status", "ok") == "ok"]
        lines.append(
            f"| accuracy-vs-energy sweep | {len(ok)} finished trials; validation-selected Pareto front: "
            f"{len(pareto.get('pareto') or [])} trials (benchmarks/results/pareto.json) |"
        )
    # One trained model through every step: the checkpoint hashes must agree.
    hashes: dict[str, set[str]] = {}
    for d in (acc, emu, energy):
        for k, v in _checkpoint_hashes(d).items():
            hashes.setdefault(k, set()).add(v)
    for k, v in hashes.items():
        if len(v) > 1:
            warnings.append(
                f"checkpoint '{k}' differs between result files: the figures do not come from one model"
            )
    for name, d in (
        ("accuracy.json", acc),
        ("emulator_vs_lava.json", emu),
        ("energy.json", energy),
    ):
        if d is not None and not d.get("provenance"):
            warnings.append(f"{name} has no provenance block: rerun `make bench` before quoting it")
    lines.append("")
    lines.append("Provenance:")
    for name, d in (
        ("accuracy.json", acc),
        ("emulator_vs_lava.json", emu),
        ("energy.json", energy),
        ("pareto.json", pareto),
    ):
        if d is not None:
            lines.append(_provenance_line(name, d))
    return lines, warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    lines, warnings = table(args.results)
    print("\n".join(lines))
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
