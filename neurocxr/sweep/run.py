"""`run_sweep`: the trials of a checked config not finished yet run on Ray (`neurocxr.sweep.ray_runner`),
each finished trial is written as it comes back, then the tables; Ctrl-C removes what this run
wrote except finished trials."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from neurocxr.errors import ConfigError, Interrupted, NeurocxrError
from neurocxr.fileio import write_json, write_text
from neurocxr.sweep import ray_runner
from neurocxr.sweep.config import (
    RayOptions,
    SweepConfig,
    TrialSettings,
    check_sweep_data,
    expand_grid,
    trial_id,
)
from neurocxr.sweep.results import (
    RESULTS_FILE,
    SweepJournal,
    SweepResult,
    discard_interrupted,
    read_trials,
    sweep_outputs,
    write_tables,
)
from neurocxr.sweep.trial import row_base


def run_sweep(
    cfg: SweepConfig,
    out_dir: str | Path,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    max_concurrent: int | None = None,
    cpus_per_trial: float | None = None,
    progress: bool | None = True,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
) -> SweepResult:
    """Run every grid point not finished in ``out_dir`` on Ray Tune; write the tables; return them.

    Arguments override the config's [ray] table. ``on_trial`` is called (in this process) with each
    finished trial's row. ``progress``: a bar of trials, drawn only on a terminal (None: the
    process default, `neurocxr.validation.set_progress`). Ctrl-C stops Ray and raises
    `neurocxr.errors.Interrupted` after removing what this run wrote, except finished trials.
    Ray leaves nothing behind in this process: ``os.environ`` (including what Ray's start-up sets)
    and ``sys.modules['amdsmi']`` are as they were when it returns or raises.
    """
    out = Path(out_dir)
    # what this run creates, so that a Ctrl-C can take it away again (`discard_interrupted`)
    journal = SweepJournal(
        [
            p
            for p in (out, out / "trials", out / "checkpoints", *sweep_outputs(out))
            if not p.exists()
        ]
    )
    options = _ray_options(
        cfg.ray,
        address=address,
        num_cpus=num_cpus,
        max_concurrent=max_concurrent,
        cpus_per_trial=cpus_per_trial,
    )
    try:
        return _run_sweep(cfg, out, journal, options, progress=progress, on_trial=on_trial)
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(discard_interrupted(out, journal)) from None


def _ray_options(
    configured: RayOptions,
    *,
    address: str | None,
    num_cpus: int | None,
    max_concurrent: int | None,
    cpus_per_trial: float | None,
) -> RayOptions:
    """The config's [ray] table with the arguments that override it, checked."""
    options = replace(configured)
    if address is not None:
        options.address = address
    if num_cpus is not None:
        options.num_cpus = num_cpus
    if max_concurrent is not None:
        options.max_concurrent = max_concurrent
    if cpus_per_trial is not None:
        options.cpus_per_trial = cpus_per_trial
    if (
        options.cpus_per_trial <= 0
        or (options.num_cpus is not None and options.num_cpus < 1)
        or (options.max_concurrent is not None and options.max_concurrent < 1)
    ):
        raise ConfigError("num_cpus and max_concurrent must be >= 1 and cpus_per_trial > 0")
    if (
        options.num_cpus is not None
        and not options.address
        and options.cpus_per_trial > options.num_cpus
    ):
        raise ConfigError(
            f"cpus_per_trial {options.cpus_per_trial:g} exceeds num_cpus {options.num_cpus}: no trial could start"
        )
    return options


def _trial_settings(
    cfg: SweepConfig, options: RayOptions, out: Path
) -> tuple[TrialSettings, dict[str, Any]]:
    """(what the workers get, what the trial ids hash): the ids leave out how a trial is run."""
    id_settings = cfg.settings()
    settings = replace(
        id_settings,
        threads=max(1, int(options.cpus_per_trial)),
        # Checkpoints are written by the workers: on a cluster the sweep directory must be shared.
        checkpoint_dir=str((out / "checkpoints").resolve()),
    )
    if settings.data and str(settings.data).lower() != "synthetic":
        # Workers may run in another folder (Ray Tune's trial dirs): they get the absolute path; the
        # trial ids keep the configured one, so a rerun still finds its finished trials.
        settings.data = str(Path(settings.data).expanduser().resolve())
    return settings, id_settings.to_dict()


def _run_sweep(
    cfg: SweepConfig,
    out: Path,
    journal: SweepJournal,
    options: RayOptions,
    *,
    progress: bool | None,
    on_trial: Callable[[dict[str, Any]], None] | None,
) -> SweepResult:
    points = expand_grid(cfg)
    check_sweep_data(cfg.data)  # a missing or wrong data path is refused before Ray starts
    if options.address:
        ray_runner.check_ray_address(options.address)
    trials_dir = out / "trials"
    try:
        trials_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NeurocxrError(f"cannot create sweep directory {out}: {exc}") from None
    if cfg.source != "<dict>" and Path(cfg.source).is_file():
        write_text(out / "sweep_config.toml", Path(cfg.source).read_text(encoding="utf-8"))
    settings, id_settings = _trial_settings(cfg, options, out)
    todo: list[tuple[str, dict[str, Any]]] = []
    finished = read_trials(trials_dir)
    skipped = 0
    for params in points:
        tid = trial_id(params, id_settings)
        if finished.get(tid, {}).get("status") == "ok":
            skipped += 1
        else:
            todo.append((tid, params))

    journal.todo_ids = [t for t, _ in todo]

    def record(row: dict[str, Any]) -> None:
        write_json(trials_dir / f"{row['trial_id']}.json", row)
        finished[row["trial_id"]] = row
        journal.recorded.append(row)
        if on_trial is not None:
            on_trial(row)

    if todo:
        ray_runner.run_on_ray(todo, settings, options, out, record, progress)
    ids = {trial_id(p, id_settings) for p in points}
    trials = [finished[t] for t in sorted(ids) if t in finished]
    for params in points:  # a trial Ray lost without a result still gets a row
        tid = trial_id(params, id_settings)
        if tid not in finished:
            row = row_base(params, settings.train).to_dict()
            row.update(trial_id=tid, status="failed", error="no result came back from Ray")
            trials.append(row)
    rows, front = write_tables(out, trials, cfg.pareto_profile, cfg.ensembles)
    files = {"results": out / RESULTS_FILE, "pareto_json": out / "pareto.json"}
    if (out / "pareto.png").is_file():
        files["pareto_png"] = out / "pareto.png"
    failed = sum(1 for r in rows if r.get("status") != "ok")
    return SweepResult(out, rows, front, ran=len(todo), skipped=skipped, failed=failed, files=files)
