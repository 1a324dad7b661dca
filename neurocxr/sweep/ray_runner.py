"""Ray for the sweep: every Ray quirk of neurocxr lives here.

Ray is imported lazily (a heavy optional dependency, the `ray` extra) and started for one sweep
only (`ray_session`): the environment variables that quiet Ray and Tune, and the hiding of a
broken `amdsmi`, last as long as the session and the caller's values are back afterwards.
Trials run as Ray Tune function trainables; each finished trial's row comes back to this process.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import tqdm.auto

from neurocxr.errors import ConfigError
from neurocxr.fileio import dumps_json
from neurocxr.interrupts import install as install_interrupt_handler
from neurocxr.sweep.config import RayOptions, TrialSettings
from neurocxr.sweep.trial import row_base, run_trial
from neurocxr.validation import show_progress

_SHIMS = Path(__file__).resolve().parent.parent / "_ray_shims"
# Set for the sweep's lifetime (a caller's own value wins, as with os.environ.setdefault): worker
# logs not deduplicated, no Tune result loggers in the trial folders, the classic Tune output.
_RAY_ENV_DEFAULTS = {
    "RAY_DEDUP_LOGS": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
}
# Tune's own SIGINT handler turns Ctrl-C into "stop gracefully, report the trials failed";
# without it Ctrl-C raises KeyboardInterrupt in `run_on_ray` and the session stops Ray.
_RAY_ENV_FORCED = {"TUNE_DISABLE_SIGINT_HANDLER": "1"}


def check_ray_address(address: str, timeout_s: float = 3.0) -> None:
    """Fail fast (ConfigError) when ``host:port`` does not answer; 'auto' and ray:// are left to Ray."""
    if address == "auto":
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address {address!r} is not host:port (or 'auto')")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConfigError(f"Ray address {address} is unreachable ({exc.strerror or exc})") from None


@functools.lru_cache(maxsize=1)  # the installed packages do not change while the process runs
def _amdsmi_is_broken() -> bool:
    """An installed `amdsmi` whose import fails with something other than ImportError (a wheel
    without libamd_smi.so raises KeyError), which would make `import ray` fail."""
    if importlib.util.find_spec("amdsmi") is None:
        return False
    probe = subprocess.run([sys.executable, "-c", "import amdsmi"], capture_output=True, timeout=60)
    if probe.returncode == 0:
        return False
    last = probe.stderr.decode(errors="replace").strip().splitlines()[-1:]
    return not (last and last[0].startswith(("ImportError", "ModuleNotFoundError")))


@contextlib.contextmanager
def _amdsmi_hidden() -> Iterator[dict[str, str]]:
    """Hide a broken `amdsmi` from Ray (its AMD GPU probe catches only ImportError) in this process
    while the block runs, and yield the environment variables that hide it in the processes Ray
    starts (the shim first on their PYTHONPATH); ``{}`` when amdsmi imports fine or is absent. The caller's
    ``sys.modules`` entry is back afterwards."""
    if not _amdsmi_is_broken():
        yield {}
        return
    missing = object()
    saved = sys.modules.get("amdsmi", missing)
    sys.modules["amdsmi"] = None  # type: ignore[assignment]  # `import amdsmi` -> ImportError here
    # Ray applies runtime_env env_vars to a worker's environment just before it execs the worker
    # (RuntimeEnvContext.exec_worker), so PYTHONPATH there reaches the worker's sys.path; the value
    # replaces the inherited one, hence the driver's own PYTHONPATH after the shim, as before.
    old = os.environ.get("PYTHONPATH", "")
    try:
        yield {"PYTHONPATH": str(_SHIMS) + (os.pathsep + old if old else "")}
    finally:
        if saved is missing:
            sys.modules.pop("amdsmi", None)
        else:
            sys.modules["amdsmi"] = saved  # type: ignore[assignment]


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` for the block; the caller's values (or their absence) afterwards."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, previous in saved.items():
            if previous is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = previous


@contextlib.contextmanager
def _environ_kept() -> Iterator[None]:
    """``os.environ`` as it was before the block, whatever the block set: the sweep's RAY_/TUNE_
    variables, and those Ray's start-up sets in the driver (RAY_USAGE_STATS_ENABLED, RAY_CLIENT_MODE,
    PYTHONBREAKPOINT pointing at Ray's debugger, ...), which would outlive ``ray.shutdown()``."""
    before = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(before):
            os.environ.pop(key, None)
        for key, value in before.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


def import_ray() -> Any:
    """``import ray`` with a broken `amdsmi` hidden while it runs."""
    with _amdsmi_hidden():
        import ray  # lazily: Ray is a heavy optional dependency

    return ray


@contextlib.contextmanager
def ray_session(options: RayOptions) -> Iterator[Any]:
    """Ray imported and started locally or joined (``options.address``) for the block; yields the
    ``ray`` module. Ray is stopped afterwards when this session started it, and ``os.environ`` and
    ``sys.modules['amdsmi']`` are as before. A broken `amdsmi` stays hidden for the whole session:
    Ray probes for AMD GPUs at start-up and again later."""
    with _environ_kept(), _amdsmi_hidden() as worker_env:
        import ray  # lazily: Ray is a heavy optional dependency

        for key, value in _RAY_ENV_DEFAULTS.items():  # set after `import ray`, as they always were
            os.environ.setdefault(key, value)
        os.environ.update(_RAY_ENV_FORCED)
        install_interrupt_handler()  # a Ctrl-C while Ray forks its services is not dropped
        started = _start_ray(ray, options, worker_env)
        interrupted = False
        try:
            yield ray
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            if started:
                _stop_ray(ray, interrupted=interrupted and not options.address)


def _start_ray(ray: Any, options: RayOptions, worker_env: dict[str, str]) -> bool:
    """Start a local Ray or join a cluster; returns True when this call started it (so we stop it).
    ``worker_env``: environment variables for the processes of a local Ray (a cluster's keep their
    own environment)."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = dict(
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        configure_logging=True,
    )
    try:
        if options.address:
            ray.init(address=options.address, **kwargs)
        elif worker_env:
            # Every Ray process imports ray, which probes for AMD GPUs: the services ray.init spawns
            # (raylet, agents) inherit the shim from this environment, set only while they start;
            # the workers get it as their runtime_env too.
            with _environ(worker_env):
                ray.init(
                    num_cpus=options.num_cpus or os.cpu_count() or 1,
                    runtime_env={"env_vars": worker_env},
                    **kwargs,
                )
        else:
            ray.init(num_cpus=options.num_cpus or os.cpu_count() or 1, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"could not start or join Ray ({options.address or 'local'}): {exc}"
        ) from None
    except BaseException:  # Ctrl-C during start-up: stop whatever Ray started so far
        _stop_ray(ray, interrupted=not options.address)
        raise
    return True


def _stop_ray(ray: Any, *, interrupted: bool) -> None:
    """``ray.shutdown()``; after a Ctrl-C also kill Ray processes left in this process group: a
    Ctrl-C during start-up can end the raylet before it stops the agents it started, which then
    linger for a minute or more."""
    with contextlib.suppress(BaseException):
        ray.shutdown()
    if not interrupted or not os.path.isdir("/proc"):
        return
    ray_dir = os.path.dirname(ray.__file__).encode()
    group, me = os.getpgrp(), os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if os.getpgid(int(entry.name)) != group:
                continue
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            if argv[0].startswith(b"ray::") or any(arg.startswith(ray_dir) for arg in argv[:4]):
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue  # gone already, or not ours to read


def _trainable(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Tune function trainable: one trial; the row travels back as a JSON string (Tune flattens dicts)."""
    row = run_trial(
        config["params"], replace(config["settings"], trial_id=config["trial_id"])
    ).to_dict()
    row["trial_id"] = config["trial_id"]
    return {"row_json": dumps_json(row, indent=None), "done": True}


def run_on_ray(
    todo: list[tuple[str, dict[str, Any]]],
    settings: TrialSettings,
    options: RayOptions,
    out: Path,
    record: Callable[[dict[str, Any]], None],
    progress: bool | None,
) -> None:
    """Run the ``todo`` trials (trial id, grid point) on Ray Tune; ``record`` gets each finished row."""
    with ray_session(options):
        from ray import tune  # lazily, as Ray itself

        bar = tqdm.auto.tqdm(
            total=len(todo), desc="sweep trials", disable=not show_progress(progress), unit="trial"
        )
        try:
            space = {"trial": tune.grid_search([{"trial_id": t, "params": p} for t, p in todo])}

            def unpack(config: dict[str, Any]) -> dict[str, Any]:
                return _trainable({**config["trial"], "settings": settings})

            trainable = tune.with_resources(unpack, {"cpu": options.cpus_per_trial})
            tuner = tune.Tuner(
                trainable,
                param_space=space,
                tune_config=tune.TuneConfig(
                    max_concurrent_trials=options.max_concurrent or 0, reuse_actors=False
                ),
                run_config=tune.RunConfig(
                    name="tune",
                    storage_path=str((out / "ray").resolve()),
                    verbose=0,
                    callbacks=[_recorder(tune.Callback, record, bar)],
                    failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
                ),
            )
            tuner.fit()
        finally:
            bar.close()


def _recorder(base: type, record: Callable[[dict[str, Any]], None], bar: Any) -> Any:
    """A Tune callback (``base`` is ``tune.Callback``, imported with Ray) that records each finished
    trial and advances the bar."""

    class _Recorder(base):  # type: ignore[valid-type,misc]
        """Tune pickles its callbacks with the experiment state; the bar (a lock) and the writer
        stay out of that state."""

        def __init__(self, record: Callable[[dict[str, Any]], None], bar: Any) -> None:
            self.record, self.bar = record, bar

        def __getstate__(self) -> dict[str, Any]:
            return {}

        def _done(self, row: dict[str, Any]) -> None:
            if getattr(self, "record", None) is None:  # an unpickled copy: nothing to write to
                return
            self.record(row)
            self.bar.update(1)
            self.bar.set_postfix_str(
                f"{row.get('model')} T={row.get('num_steps')}: {row.get('status')}"
            )

        def on_trial_result(
            self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
        ) -> None:
            if "row_json" in result:
                self._done(json.loads(result["row_json"]))

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            cfg = trial.config["trial"]
            row = row_base(cfg["params"]).to_dict()
            row.update(
                trial_id=cfg["trial_id"],
                status="failed",
                error=f"Ray: {trial.error_msg or 'worker failed'}"[:2000],
            )
            self._done(row)

    return _Recorder(record, bar)
