"""Accuracy-vs-energy sweeps on Ray Tune: every trial trains, exports, runs on the chip emulator, counts
and estimates energy; the validation-selected Pareto front comes out as a table and a plot.

    neurocxr sweep sweep.toml -o runs/sweep            # Ray starts locally
    neurocxr sweep sweep.toml -o runs/sweep --address 10.0.0.5:6379

One module per job, each importing only those above it:

- `neurocxr.sweep.config`: the TOML config (its format is documented there), its checks, the
  grid's trials and their ids;
- `neurocxr.sweep.trial`: one trial on the deployment object (`TrialResult`);
- `neurocxr.sweep.plots` and `neurocxr.sweep.results`: the Pareto plot; the table, seed
  ensembles, the Pareto front, resume bookkeeping and the clean-up after Ctrl-C;
- `neurocxr.sweep.ray_runner`: Ray's import and start-up (every Ray quirk of neurocxr), the trials
  on Ray Tune;
- `neurocxr.sweep.run`: `run_sweep`, which puts them together.
"""

from neurocxr.sweep.config import (
    CORE_AXES,
    DEFAULT_GRID,
    DEFAULT_MAX_TRIALS,
    MAX_STEPS,
    MODEL_KEYS,
    RAY_KEYS,
    SECTIONS,
    SWEEP_KEYS,
    RayOptions,
    SweepConfig,
    TrialSettings,
    check_sweep_data,
    expand_grid,
    grid_size,
    load_sweep_config,
    sweep_config_from_dict,
    trial_configs,
    trial_id,
)
from neurocxr.sweep.plots import plot_pareto
from neurocxr.sweep.ray_runner import check_ray_address
from neurocxr.sweep.results import (
    RESULTS_FILE,
    SweepResult,
    ensemble_rows,
    pareto_front,
    write_tables,
)
from neurocxr.sweep.run import run_sweep
from neurocxr.sweep.trial import (
    GridPoint,
    TrialResult,
    TrialRow,
    TrialTraining,
    chip_evaluation,
    run_trial,
)

__all__ = [
    "CORE_AXES",
    "DEFAULT_GRID",
    "DEFAULT_MAX_TRIALS",
    "MAX_STEPS",
    "MODEL_KEYS",
    "RAY_KEYS",
    "RESULTS_FILE",
    "SECTIONS",
    "SWEEP_KEYS",
    "RayOptions",
    "SweepConfig",
    "GridPoint",
    "SweepResult",
    "TrialResult",
    "TrialRow",
    "TrialSettings",
    "TrialTraining",
    "check_ray_address",
    "check_sweep_data",
    "chip_evaluation",
    "ensemble_rows",
    "expand_grid",
    "grid_size",
    "load_sweep_config",
    "pareto_front",
    "plot_pareto",
    "run_sweep",
    "run_trial",
    "sweep_config_from_dict",
    "trial_configs",
    "trial_id",
    "write_tables",
]
