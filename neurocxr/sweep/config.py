"""The sweep's TOML config: schema, checks, the grid's trials and their ids.

    neurocxr sweep sweep.toml -o runs/sweep            # Ray starts locally
    neurocxr sweep sweep.toml -o runs/sweep --address 10.0.0.5:6379

The config (TOML)::

    [sweep]                      # all optional
    data = "/path/pneumoniamnist.npz"   # default: $NEUROCXR_DATA, ~/.medmnist, else synthetic phantoms
    profiles = ["loihi", "loihi2"]      # energy on these device profiles (default: every registered one)
    max_eval_samples = 200              # cap val/test samples (default: all)
    ensembles = true                    # also score seed ensembles of otherwise equal trials
    pareto_profile = "loihi2"           # the energy axis of the Pareto front
    max_trials = 2000                   # confirm a grid over 1000 combinations (also --max-trials)

    [grid]                       # lists; every combination is a trial
    model = ["snn_strided", "snn_conv"]
    num_steps = [4, 8]
    encoding = ["direct"]
    regulariser = [0.0, 0.01]    # lambda of the chip-cost regulariser (uJ per sample), 0 = off
    width = [1.0, 0.5]           # multiplies channels and hidden sizes
    seed = [0]
    # also allowed as grid axes: readout_steps (read the decision out after that many steps;
    # combinations with readout_steps > num_steps are skipped), the levers of `neurocxr train` under
    # the same names -- depth (snn_vgg), teacher (CNN checkpoint to distil from), convert_from (a
    # cnn_vgg checkpoint to convert; model snn_vgg), augment (none/light/shift), qat_epochs, prune --
    # and any [train] / [model] key

    [train]                      # fixed neurocxr.training.train.TrainConfig fields
    epochs = 6
    [model]                      # fixed neurocxr.models.ModelConfig fields (beta, threshold, channels, hidden, dropout)
    [ray]                        # num_cpus, max_concurrent, cpus_per_trial, address
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from neurocxr.data.datasets import (
    MIN_IMAGE_SIZE,
    check_data_path,
    load_dataset,
    resolve_data_source,
)
from neurocxr.energy.profiles import get_profile
from neurocxr.errors import ConfigError, NeurocxrError
from neurocxr.exporters.model_checks import check_model_options
from neurocxr.models import ModelConfig, model_info
from neurocxr.training.train import TrainConfig, check_validation_classes, lever_configs
from neurocxr.validation import missing_file_message

if sys.version_info >= (3, 11):  # pragma: no cover - the project runs on 3.10
    import tomllib
else:
    import tomli as tomllib

SWEEP_KEYS = (
    "data",
    "profiles",
    "max_eval_samples",
    "ensembles",
    "pareto_profile",
    "regulariser_profile",
    "max_trials",
)
RAY_KEYS = ("num_cpus", "max_concurrent", "cpus_per_trial", "address")
SECTIONS = ("sweep", "grid", "train", "model", "ray")
# The levers carry the names of `neurocxr train`'s options (neurocxr.training.train.LEVERS); convert_from,
# augment, qat_epochs and prune are TrainConfig fields, so they are axes as [train] keys are.
CORE_AXES = (
    "model",
    "num_steps",
    "encoding",
    "regulariser",
    "width",
    "seed",
    "readout_steps",
    "depth",
    "teacher",
    "feature_distill",
    "strides",
)
MODEL_KEYS = ("beta", "threshold", "channels", "hidden", "dropout", "image_size")
DEFAULT_GRID: dict[str, list[Any]] = {
    "model": ["snn_strided"],
    "num_steps": [4],
    # None: direct, or regular with convert_from (neurocxr.training.train.default_encoding)
    "encoding": [None],
    "regulariser": [0.0],
    "width": [1.0],
    "seed": [0],
}
MAX_STEPS = 16
# A grid with more combinations than this is refused unless confirmed (--max-trials / sweep.max_trials):
# every trial trains a model, and Ray spends minutes generating very large grids before the first trial.
DEFAULT_MAX_TRIALS = 1000


def _train_keys() -> tuple[str, ...]:
    # seed and the regulariser weight are grid axes with their own names
    return tuple(f.name for f in fields(TrainConfig) if f.name not in ("seed", "chip_cost_weight"))


@dataclass
class RayOptions:
    """How trials are scheduled: a local Ray (``address`` None) with ``num_cpus``, or a cluster."""

    address: str | None = None
    num_cpus: int | None = None
    max_concurrent: int | None = None
    cpus_per_trial: float = 1.0


@dataclass
class TrialSettings:
    """What every trial needs besides its grid point (`SweepConfig.settings`; sent to the Ray
    workers). ``threads``, ``checkpoint_dir`` and ``trial_id`` say how one trial is run, are set
    by the sweep runner, and stay out of the trial id."""

    data: str | None = None
    train: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    profiles: list[str] | None = None
    max_eval_samples: int | None = None
    regulariser_profile: str = "loihi2"
    threads: int | None = None
    checkpoint_dir: str | None = None
    trial_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "data": self.data,
            "train": self.train,
            "model": self.model,
            "profiles": self.profiles,
            "max_eval_samples": self.max_eval_samples,
            "regulariser_profile": self.regulariser_profile,
        }
        for key in ("threads", "checkpoint_dir", "trial_id"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass
class SweepConfig:
    """A checked sweep config (`load_sweep_config`, `sweep_config_from_dict`)."""

    grid: list[
        dict[str, list[Any]]
    ]  # one or more blocks; the trials are the union of their combinations
    train: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    data: str | None = None
    profiles: list[str] | None = None
    max_eval_samples: int | None = None
    ensembles: bool = True
    pareto_profile: str = "loihi2"
    regulariser_profile: str = "loihi2"
    ray: RayOptions = field(default_factory=RayOptions)
    source: str = "<dict>"

    def settings(self) -> TrialSettings:
        """What every trial needs besides its grid point (sent to the Ray workers)."""
        return TrialSettings(
            data=self.data,
            train=dict(self.train),
            model=dict(self.model),
            profiles=self.profiles,
            max_eval_samples=self.max_eval_samples,
            regulariser_profile=self.regulariser_profile,
        )


def _as_list(name: str, value: Any) -> list[Any]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ConfigError(f"grid.{name} is an empty list: the grid has no trials")
    return values


def grid_size(grid: list[dict[str, list[Any]]]) -> int:
    """Combinations in the grid blocks (before duplicates and impossible readouts are dropped)."""
    return sum(math.prod(len(values) for values in block.values()) for block in grid)


def sweep_config_from_dict(
    data: dict[str, Any], source: str = "<dict>", *, max_trials: int | None = None
) -> SweepConfig:
    """Check every section and key; raise ConfigError naming the first problem. ``max_trials``
    (default: sweep.max_trials, else DEFAULT_MAX_TRIALS) caps the grid's combinations."""
    sweep, ray, train, model = _sections(data, source)
    grid = _grid_blocks(data.get("grid", {}), source, train, model)
    _check_profiles(sweep, source)
    cpus_per_trial = ray.get("cpus_per_trial", 1.0)
    if (
        isinstance(cpus_per_trial, bool)
        or not isinstance(cpus_per_trial, (int, float))
        or not cpus_per_trial > 0
    ):
        raise ConfigError(
            f"{source}: ray.cpus_per_trial must be a number > 0, got {cpus_per_trial!r}"
        )
    address = ray.get("address")
    if address is not None and not isinstance(address, str):
        raise ConfigError(
            f"{source}: ray.address must be a string like 'host:6379', got {address!r}"
        )
    data_path = sweep.get("data")
    if data_path is not None and not isinstance(data_path, str):
        raise ConfigError(f"{source}: sweep.data must be a path string, got {data_path!r}")
    ensembles = sweep.get("ensembles", True)
    if not isinstance(ensembles, bool):
        raise ConfigError(f"{source}: sweep.ensembles must be true or false, got {ensembles!r}")
    limit = (
        max_trials
        if max_trials is not None
        else _opt_int(sweep, "max_trials", 1, source) or DEFAULT_MAX_TRIALS
    )
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"--max-trials must be an integer >= 1, got {limit!r}")
    combinations = grid_size(grid)
    if combinations > limit:  # counted, not expanded: a huge grid is refused at once
        raise ConfigError(
            f"{source}: the grid has {combinations:,} combinations, over the limit of {limit:,} trials (each trains "
            f"a model); narrow the grid, or confirm with --max-trials {combinations} (or sweep.max_trials)"
        )
    cfg = SweepConfig(
        grid=grid,
        train=train,
        model=model,
        data=data_path,
        profiles=sweep.get("profiles"),
        max_eval_samples=_opt_int(sweep, "max_eval_samples", 2, source),
        ensembles=ensembles,
        pareto_profile=sweep.get("pareto_profile", "loihi2"),
        regulariser_profile=sweep.get("regulariser_profile", "loihi2"),
        ray=RayOptions(
            address=address,
            num_cpus=_opt_int(ray, "num_cpus", 1, source),
            max_concurrent=_opt_int(ray, "max_concurrent", 1, source),
            cpus_per_trial=float(cpus_per_trial),
        ),
        source=source,
    )
    expand_grid(cfg)  # an impossible grid fails here, before anything starts
    return cfg


def _sections(
    data: Any, source: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The [sweep], [ray], [train] and [model] tables, every key known."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the sweep config must be a table")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(
            f"{source}: unknown section [{unknown[0]}]; sections are {', '.join(SECTIONS)}"
        )
    for section in SECTIONS:
        if (
            section in data
            and not isinstance(data[section], dict)
            and not (section == "grid" and isinstance(data[section], list))
        ):
            raise ConfigError(f"{source}: [{section}] must be a table of key = value")
    train_keys = _train_keys()
    sweep = dict(data.get("sweep", {}))
    for key in sweep:
        if key not in SWEEP_KEYS:
            raise ConfigError(
                f"{source}: unknown key sweep.{key}; allowed: {', '.join(SWEEP_KEYS)}"
            )
    ray = dict(data.get("ray", {}))
    for key in ray:
        if key not in RAY_KEYS:
            raise ConfigError(f"{source}: unknown key ray.{key}; allowed: {', '.join(RAY_KEYS)}")
    train = dict(data.get("train", {}))
    for key in train:
        if key not in train_keys:
            hint = (
                " (use grid.seed / grid.regulariser)" if key in ("seed", "chip_cost_weight") else ""
            )
            raise ConfigError(
                f"{source}: unknown key train.{key}{hint}; allowed: {', '.join(train_keys)}"
            )
    model = dict(data.get("model", {}))
    for key in model:
        if key not in MODEL_KEYS:
            raise ConfigError(
                f"{source}: unknown key model.{key}; allowed: {', '.join(MODEL_KEYS)}"
            )
    return sweep, ray, train, model


def _grid_blocks(
    blocks_in: Any, source: str, train: dict[str, Any], model: dict[str, Any]
) -> list[dict[str, list[Any]]]:
    """The [grid] table or [[grid]] tables (a union of grids), each axis a list, defaults filled in."""
    blocks_in = blocks_in if isinstance(blocks_in, list) else [blocks_in]
    if not blocks_in:
        raise ConfigError(f"{source}: [[grid]] is empty: the grid has no trials")
    allowed_axes = CORE_AXES + _train_keys() + MODEL_KEYS
    grid: list[dict[str, list[Any]]] = []
    for block in blocks_in:
        if not isinstance(block, dict):
            raise ConfigError(f"{source}: every [[grid]] entry must be a table of axis = [values]")
        axes: dict[str, list[Any]] = {}
        for key, value in block.items():
            if key not in allowed_axes:
                raise ConfigError(
                    f"{source}: unknown key grid.{key}; grid axes: {', '.join(CORE_AXES)} or any [train]/[model] key"
                )
            if key in train or key in model:
                raise ConfigError(
                    f"{source}: grid.{key} is also fixed in [{'train' if key in train else 'model'}]; give it once"
                )
            axes[key] = _as_list(key, value)
        for key, value in DEFAULT_GRID.items():
            axes.setdefault(key, list(value))
        grid.append(axes)
    return grid


def _opt_int(section: dict[str, Any], key: str, low: int, source: str) -> int | None:
    v = section.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ConfigError(f"{source}: {key} must be an integer >= {low}, got {v!r}")
    return v


def _check_profiles(sweep: dict[str, Any], source: str) -> None:
    """sweep.profiles, pareto_profile and regulariser_profile name registered device profiles."""
    profiles = sweep.get("profiles")
    if profiles is not None and (
        not isinstance(profiles, list)
        or not profiles
        or not all(isinstance(p, str) for p in profiles)
    ):
        raise ConfigError(
            f"{source}: sweep.profiles must be a non-empty list of profile names, got {profiles!r}"
        )
    for name in (profiles or []) + [
        sweep.get("pareto_profile", "loihi2"),
        sweep.get("regulariser_profile", "loihi2"),
    ]:
        try:
            get_profile(name)
        except NeurocxrError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    if profiles is not None and sweep.get("pareto_profile", "loihi2") not in profiles:
        raise ConfigError(
            f"{source}: sweep.pareto_profile {sweep.get('pareto_profile', 'loihi2')!r} is not in sweep.profiles"
        )


def load_sweep_config(path: str | Path, *, max_trials: int | None = None) -> SweepConfig:
    """Read and check a sweep TOML file (ConfigError naming the key on any problem); ``max_trials``
    as in `sweep_config_from_dict`."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(missing_file_message(p, "sweep config"))
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"sweep config {p} is not valid TOML: {exc}") from None
    return sweep_config_from_dict(data, str(p), max_trials=max_trials)


def trial_configs(
    params: dict[str, Any], settings: TrialSettings
) -> tuple[ModelConfig, TrainConfig, int]:
    """(ModelConfig, TrainConfig, readout_steps) of one grid point; ConfigError naming what is wrong."""
    train_keys = set(_train_keys())
    model_kw = dict(settings.model)
    train_kw = dict(settings.train)
    for key, value in params.items():
        if key in train_keys:
            train_kw[key] = value
        elif key in MODEL_KEYS:
            model_kw[key] = value
    name = params["model"]
    try:
        info = model_info(str(name))
    except (ValueError, NeurocxrError) as exc:
        raise ConfigError(f"grid.model: {exc}") from None
    if info.kind != "snn":
        raise ConfigError(
            f"grid.model: {name!r} is a CNN; a sweep trains SNNs for the chip (CNN baselines go in the energy report)"
        )
    steps = params["num_steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ConfigError(f"grid.num_steps: {steps!r} is not an integer in 1..{MAX_STEPS}")
    readout = params.get("readout_steps", steps)
    if isinstance(readout, bool) or not isinstance(readout, int) or not 1 <= readout <= steps:
        raise ConfigError(
            f"grid.readout_steps: {readout!r} must be an integer in 1..num_steps ({steps})"
        )
    lam = params["regulariser"]
    if (
        isinstance(lam, bool)
        or not isinstance(lam, (int, float))
        or not math.isfinite(lam)
        or lam < 0
    ):
        raise ConfigError(f"grid.regulariser: {lam!r} must be a number >= 0 (lambda per uJ)")
    width = params["width"]
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ConfigError(f"grid.width: {width!r} must be a number > 0")
    model_kw.setdefault("channels", (16, 32))
    model_kw.setdefault("hidden", (128,))
    image_size = model_kw.pop("image_size", 28)
    try:
        model_cfg, train_cfg = lever_configs(
            str(name),
            image_size=image_size,
            num_steps=steps,
            encoding=params["encoding"],
            depth=params.get("depth"),
            width=float(width),
            teacher=params.get("teacher"),
            feature_distill=params.get("feature_distill", 0.0),
            strides=params.get("strides"),
            regulariser=float(lam),
            convert_from=train_kw.pop("convert_from", None),
            augment=train_kw.pop("augment", "none"),
            qat_epochs=train_kw.pop("qat_epochs", 0),
            prune=train_kw.pop("prune", 0.0),
            model_fields=model_kw,
            seed=params["seed"],
            chip_cost_profile=settings.regulariser_profile,
            **train_kw,
        )
    except (ValueError, TypeError, NeurocxrError) as exc:
        raise ConfigError(f"grid point {params}: {exc}") from None
    try:  # an image size export would refuse fails here, not in every trial after training
        check_model_options(
            model_cfg, size_option="model.image_size", encoding_option="grid.encoding"
        )
    except ConfigError as exc:
        raise ConfigError(f"grid point {params}: {exc}") from None
    return model_cfg, train_cfg, readout


def expand_grid(cfg: SweepConfig) -> list[dict[str, Any]]:
    """Every combination of the grid axes, checked (ConfigError names the first impossible one)."""
    points: list[dict[str, Any]] = []
    seen: set[str] = set()
    combos = []
    for block in cfg.grid:
        keys = sorted(block)
        combos += [
            dict(zip(keys, values)) for values in itertools.product(*(block[k] for k in keys))
        ]
    for params in combos:
        key = json.dumps(params, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        if (
            "readout_steps" in params
            and isinstance(params["readout_steps"], int)
            and isinstance(params["num_steps"], int)
            and not isinstance(params["readout_steps"], bool)
            and params["readout_steps"] > params["num_steps"]
        ):
            continue  # reading out after more steps than the model runs is not a trial
        trial_configs(params, cfg.settings())
        points.append(params)
    if not points:
        raise ConfigError(
            f"{cfg.source}: the grid has no possible trial (every readout_steps exceeds num_steps)"
        )
    return points


def check_sweep_data(data: str | None) -> None:
    """Refuse, before Ray starts, a data path (sweep.data or $NEUROCXR_DATA) that does not exist
    or is not a data set, or whose validation split lacks a class (train's refusal), so the sweep
    never runs every trial into the same failure. (Relative paths are read from the folder the
    sweep is started in.)"""
    check_data_path(data, "sweep.data" if data is not None else "$NEUROCXR_DATA")
    # The labels do not depend on the image size (a folder's carved val split neither), so the
    # smallest size loads them; phantoms hold both classes by construction.
    if resolve_data_source(data) not in (None, "synthetic"):
        check_validation_classes(load_dataset(data, image_size=MIN_IMAGE_SIZE).val.labels)


def trial_id(params: dict[str, Any], settings: dict[str, Any]) -> str:
    """Stable hash of everything that defines a trial's result."""
    blob = json.dumps({"params": params, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
