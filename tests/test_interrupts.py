"""Ctrl-C anywhere (issue 19 item 1): SIGINT to the command's whole process group, as a terminal
sends it, at several points of each command. Every time: exit code 130 within seconds, a one-line
"interrupted" and no traceback, no process of the group left running (Lava's and Ray's workers
included), no file left beside the inputs; and a rerun of the same command works.

The points are found from the outside: a time after the start, or the moment the command's first
child processes exist (Lava's runtime workers, Ray's services) or many of them do (Lava running,
Ray's trials)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch
from conftest import write_medmnist_npz

from neurocxr.models import ModelConfig, build_model
from neurocxr.models.checkpoint import save_checkpoint


@pytest.fixture(autouse=True, scope="module")
def sigint_not_ignored() -> Iterator[None]:
    """A suite started in the background by a non-interactive shell (``make test &``) inherits
    SIGINT ignored, and so would every command started here: Ctrl-C would do nothing and the tests
    would measure the shell, not neurocxr. A Python handler here resets to the default on exec."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


EXIT_WITHIN_S = 20.0  # from SIGINT to exit, on a loaded two-core machine
START_LIMIT_S = 240.0  # a trigger that never comes fails the test instead of hanging it


def _group_members(pgid: int) -> list[str]:
    """Processes of the group still running (zombies excluded: they have exited, and a container's
    init may never reap orphans)."""
    alive = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            stat = Path(entry.path, "stat").read_text()
        except (OSError, ProcessLookupError):
            continue
        if stat.rsplit(") ", 1)[1][0] not in "ZX":
            alive.append(f"{entry.name} {Path(entry.path, 'cmdline').read_bytes()[:120]!r}")
    return alive


Trigger = Callable[[int, float, str], bool]  # (process group, seconds since start, output so far)


def at_time(seconds: float) -> Trigger:
    return lambda pgid, elapsed, output: elapsed >= seconds


def with_children(count: int, then_s: float = 0.0) -> Trigger:
    """True ``then_s`` seconds after the command first has ``count`` child processes running."""
    first: list[float] = []

    def ready(pgid: int, elapsed: float, output: str) -> bool:
        if not first and len(_group_members(pgid)) - 1 >= count:
            first.append(elapsed)
        return bool(first) and elapsed >= first[0] + then_s

    return ready


def after_output(text: str, then_s: float = 0.0) -> Trigger:
    """True ``then_s`` seconds after ``text`` first appears in the command's output."""
    first: list[float] = []

    def ready(pgid: int, elapsed: float, output: str) -> bool:
        if not first and text in output:
            first.append(elapsed)
        return bool(first) and elapsed >= first[0] + then_s

    return ready


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def run_cli(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "neurocxr.cli", "--no-progress", *args],
        cwd=cwd,
        text=True,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def interrupt(args: list[str], cwd: Path, when: Trigger) -> str:
    """Start the command in its own session, SIGINT its process group when ``when`` says so, and
    check the exit: code 130, in time, said so, nothing running, no file beside the inputs."""
    before = _snapshot(cwd)
    proc = subprocess.Popen(
        [sys.executable, "-m", "neurocxr.cli", "--no-progress", *args],
        cwd=cwd,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    chunks: list[str] = []
    reader = threading.Thread(
        target=lambda: chunks.extend(iter(proc.stdout.readline, "")), daemon=True
    )
    reader.start()
    started = time.monotonic()
    try:
        while not when(proc.pid, time.monotonic() - started, "".join(chunks)):
            assert proc.poll() is None, (
                f"finished before the interrupt point: {''.join(chunks)[-2000:]}"
            )
            assert time.monotonic() - started < START_LIMIT_S, "the interrupt point never came"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)
        sent = time.monotonic()
        try:
            code = proc.wait(timeout=EXIT_WITHIN_S * 3)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"no exit {EXIT_WITHIN_S * 3:.0f} s after Ctrl-C: {''.join(chunks)[-2000:]}"
            )
        took = time.monotonic() - sent
        reader.join(timeout=5)
        output = "".join(chunks)
        assert code == 130, output[-3000:]
        assert took < EXIT_WITHIN_S, f"exit {took:.1f} s after Ctrl-C"
        assert "interrupted:" in output and "Traceback" not in output, output[-3000:]
        deadline = time.monotonic() + 10
        while _group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _group_members(proc.pid) == [], "left running after Ctrl-C"
        assert _snapshot(cwd) == before, (
            f"left behind: {sorted(_snapshot(cwd) - before)}; said: {output[-500:]}"
        )
        return output
    finally:
        if proc.poll() is None or _group_members(proc.pid):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ctrl c")
    torch.manual_seed(0)
    cfg = ModelConfig(name="snn_conv", image_size=16, num_steps=4, channels=(4, 8), hidden=(16,))
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(3.0)  # spikes in every layer
    save_checkpoint(root / "snn.pt", model, cfg, {"threshold": 0.5})
    write_medmnist_npz(
        root / "tiny.npz", 16, {"train": (30, 30), "val": (10, 10), "test": (10, 10)}
    )
    return root


def _rerun_works(args: list[str], cwd: Path, out: str) -> None:
    res = run_cli(args, cwd)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert (cwd / out).is_dir()


@pytest.mark.slow
@pytest.mark.lava
def test_ctrl_c_in_export_before_during_and_inside_lava(work: Path) -> None:
    args = ["export", "snn.pt", "--data", "tiny.npz", "-o", "export out", "--lava-samples", "2"]
    interrupt(args, work, at_time(2.0))  # imports, checkpoint
    interrupt(args, work, with_children(1))  # Lava compiled, its runtime starting its workers
    interrupt(args, work, with_children(8, then_s=0.5))  # Lava running
    _rerun_works(args, work, "export out")
    assert (work / "export out" / "model.net").is_file()


@pytest.mark.slow
def test_ctrl_c_in_energy(work: Path) -> None:
    args = ["energy", "snn.pt", "--data", "tiny.npz", "-o", "energy out", "--no-measure"]
    interrupt(args, work, at_time(2.0))
    interrupt(
        args, work, after_output("choosing the chip's threshold")
    )  # emulating the validation split
    # at once: on the 20 tiny test images the rest of the command (counts, report) can end in 0.1 s
    interrupt(args, work, after_output("emulating the Loihi program"))  # the test split
    _rerun_works(args, work, "energy out")


@pytest.mark.slow
def test_ctrl_c_in_evaluate_with_robustness(work: Path) -> None:
    args = ["evaluate", "snn.pt", "--data", "tiny.npz", "--robustness", "-o", "evaluate out"]
    interrupt(args, work, at_time(2.0))
    interrupt(
        args, work, after_output("confusion", 0.5)
    )  # perturbations on the float model and the emulator
    _rerun_works(args, work, "evaluate out")


@pytest.mark.slow
def test_ctrl_c_in_train(work: Path) -> None:
    args = [
        "train",
        "--model",
        "snn_conv",
        "--image-size",
        "16",
        "--data",
        "tiny.npz",
        "--epochs",
        "12",
        # slow epochs (small batches, many steps): an idle machine must not finish before 8 s
        "--batch-size",
        "4",
        "--num-steps",
        "64",
        "-o",
        "train out",
    ]
    interrupt(args, work, at_time(2.0))
    interrupt(args, work, at_time(8.0))  # an epoch (the data loads in about 5 s)
    _rerun_works(args, work, "train out")


SWEEP = """
[sweep]
data = "tiny.npz"
profiles = ["loihi2"]
max_eval_samples = 12

[grid]
model = ["snn_strided"]
num_steps = [2]
regulariser = [0.0, 0.001]
width = [0.5]
seed = [0]

[train]
epochs = 2
batch_size = 8

[ray]
num_cpus = 2
max_concurrent = 2
"""


@pytest.mark.slow
def test_ctrl_c_in_sweep_during_ray_start_up_and_trials(work: Path) -> None:
    (work / "sweep [x].toml").write_text(SWEEP, encoding="utf-8")
    args = ["sweep", "sweep [x].toml", "-o", "sweep out"]
    said = interrupt(args, work, with_children(1, then_s=0.3))  # Ray starting its services
    assert "no output was written" in said
    interrupt(args, work, with_children(6, then_s=6.0))  # trials training on Ray's workers
    res = run_cli(args, work)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert "2 trials run, 0 already finished, 0 failed" in res.stdout


CTRL_C_DURING_A_FORK = r"""
import os, signal, sys, time
# like logging's lock release: a Python callback run in the parent after every fork
os.register_at_fork(after_in_parent=lambda: os.kill(os.getpid(), signal.SIGINT))
if sys.argv[1] == "install":
    from neurocxr.interrupts import install
    install()
try:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    time.sleep(2)
    print("lost")
except KeyboardInterrupt:
    print("delivered")
"""


CTRL_C_IN_A_WEAKREF_CALLBACK = r"""
import os, signal, sys, time, weakref
if sys.argv[1] == "install":
    from neurocxr.interrupts import install
    install()

class Node:  # like matplotlib's transform tree: a weakref callback runs when a node goes
    pass

def callback(_):
    os.kill(os.getpid(), signal.SIGINT)
    sum(range(1000))  # the handler runs here, inside the callback

try:
    node = Node()
    ref = weakref.ref(node, callback)
    del node
    time.sleep(2)
    print("lost")
except KeyboardInterrupt:
    print("delivered")
"""


@pytest.mark.parametrize(
    "script", [CTRL_C_DURING_A_FORK, CTRL_C_IN_A_WEAKREF_CALLBACK], ids=["fork", "weakref"]
)
@pytest.mark.parametrize("mode, said", [("install", "delivered"), ("plain", "lost")])
def test_a_ctrl_c_python_would_drop_is_delivered(script: str, mode: str, said: str) -> None:
    # "plain" shows what happens without neurocxr.interrupts: Python drops the KeyboardInterrupt
    res = subprocess.run(
        [sys.executable, "-c", script, mode], capture_output=True, text=True, timeout=60
    )
    assert res.stdout.strip() == said, res.stdout + res.stderr
    assert ("Exception ignored" in res.stderr) is (mode == "plain")


def test_ctrl_c_while_outputs_are_moved_into_place_says_they_were_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import neurocxr.fileio as fileio
    from neurocxr.errors import Interrupted

    real_replace = os.replace

    def replace_then_ctrl_c(src, dst):
        real_replace(src, dst)
        os.kill(os.getpid(), signal.SIGINT)  # held until every file is in place

    monkeypatch.setattr(fileio.os, "replace", replace_then_ctrl_c)
    out = tmp_path / "out"
    with pytest.raises(Interrupted, match="complete and have been written to"):
        with fileio.staged_output(out, ["a.txt", "b.txt"], force=False) as stage:
            (stage / "a.txt").write_text("a")
            (stage / "b.txt").write_text("b")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the staging folder is gone


def test_an_interrupted_sweep_keeps_finished_trials_and_earlier_files_only(tmp_path: Path) -> None:
    import time as _time

    from neurocxr.sweep.results import SweepJournal, discard_interrupted, sweep_outputs

    out = tmp_path / "sweep out"
    (out / "trials").mkdir(parents=True)
    (out / "checkpoints").mkdir()
    earlier_failed = (
        out / "trials" / "t_old.json"
    )  # an earlier run's failed trial: not this run's to remove
    earlier_failed.write_text("{}")
    os.utime(earlier_failed, (1, 1))
    journal = SweepJournal(
        [p for p in (out / "checkpoints", *sweep_outputs(out)) if not p.exists()],
        started_at=_time.time() - 1,
    )
    journal.todo_ids = ["t_ok", "t_cut", "t_old"]
    # what this run wrote before Ctrl-C
    (out / "sweep_config.toml").write_text("x")
    (out / "ray" / "tune").mkdir(parents=True)
    for name in ("t_ok.json", "t_cut.json"):
        (out / "trials" / name).write_text("{}")
    for name in ("t_ok.pt", "t_cut.pt", ".t_cut.pt.abc.tmp"):
        (out / "checkpoints" / name).write_bytes(b"x")
    journal.recorded = [
        {"trial_id": "t_ok", "status": "ok"},
        {"trial_id": "t_cut", "status": "failed"},
    ]
    said = discard_interrupted(out, journal)
    assert said.startswith(f"kept 1 finished trial(s) in {out / 'trials'}")
    assert _snapshot(out) == {
        "trials",
        "trials/t_ok.json",
        "trials/t_old.json",
        "checkpoints",
        "checkpoints/t_ok.pt",
    }

    # nothing finished in a folder this run made: the folder goes too
    fresh = tmp_path / "fresh"
    journal = SweepJournal([fresh, fresh / "trials", fresh / "checkpoints", *sweep_outputs(fresh)])
    journal.todo_ids = ["t1"]
    (fresh / "trials").mkdir(parents=True)
    (fresh / "sweep_config.toml").write_text("x")
    assert discard_interrupted(fresh, journal) == "no output was written"
    assert not fresh.exists()


def test_ctrl_c_in_evaluate_after_its_json_says_the_json_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import neurocxr.api as api
    from neurocxr.cli import app

    ckpt = tmp_path / "snn.pt"
    cfg = ModelConfig(name="snn_conv", image_size=16, num_steps=4, channels=(4, 8), hidden=(16,))
    save_checkpoint(ckpt, build_model(cfg).eval(), cfg, {"threshold": 0.5})
    npz = write_medmnist_npz(
        tmp_path / "tiny.npz", 16, {"train": (6, 10), "val": (3, 3), "test": (3, 4)}
    )

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "clinical_evaluation", interrupted)  # where the API calls it
    res = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(ckpt),
            "--data",
            str(npz),
            "--json",
            str(tmp_path / "m.json"),
            "--robustness",
            "-o",
            str(tmp_path / "ev"),
        ],
    )
    assert res.exit_code == 130, res.output
    assert f"interrupted: wrote {tmp_path / 'm.json'} (the metrics) only" in res.output
    assert (tmp_path / "m.json").is_file() and not (tmp_path / "ev").exists()


@pytest.mark.lava
def test_ctrl_c_while_lava_builds_its_runtime_stops_the_workers_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing as mp

    from _netx_programs import default_shaped_program, random_images

    from neurocxr.exporters.netx import write_netx
    from neurocxr.hardware_sims.lava import _import_lava, run_lava

    _import_lava()
    from lava.magma.runtime.runtime import Runtime

    program = default_shaped_program(num_steps=4)
    path = write_netx(program, tmp_path / "p.net")
    started_workers: list[int] = []
    real_build = Runtime._build_processes

    def build_then_ctrl_c(self):  # Ctrl-C once the workers exist, before the runtime has started
        real_build(self)
        started_workers.extend(a.pid for a in self._messaging_infrastructure.actors)
        raise KeyboardInterrupt

    monkeypatch.setattr(Runtime, "_build_processes", build_then_ctrl_c)
    before = set(mp.active_children())
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_lava(path, random_images(2, seed=2), num_steps=4, program=program)
    assert time.monotonic() - t0 < 60
    assert started_workers and set(mp.active_children()) <= before
    for pid in started_workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.lava
def test_ctrl_c_between_a_lava_worker_start_and_its_listing_stops_it_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing as mp

    from _netx_programs import default_shaped_program, random_images

    from neurocxr.exporters.netx import write_netx
    from neurocxr.hardware_sims.lava import _import_lava, run_lava

    _import_lava()
    from lava.magma.runtime.message_infrastructure.multiprocessing import SystemProcess

    program = default_shaped_program(num_steps=4)
    path = write_netx(program, tmp_path / "p.net")
    started: list[int] = []
    real_start = SystemProcess.start

    def start_then_ctrl_c(self):  # the third worker runs, but Lava never gets to list it
        real_start(self)
        started.append(self.pid)
        if len(started) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(SystemProcess, "start", start_then_ctrl_c)
    before = set(mp.active_children())
    with pytest.raises(KeyboardInterrupt):
        run_lava(path, random_images(2, seed=2), num_steps=4, program=program)
    assert len(started) == 3 and set(mp.active_children()) <= before
    for pid in started:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_caught_interrupt_does_not_turn_the_exit_code_into_sigint(tmp_path: Path) -> None:
    """CPython 3.10 leaves its 'unhandled KeyboardInterrupt' flag set after a KeyboardInterrupt
    that Cython import code let through and Python code caught; run with ``-m`` (as the CLI is), the
    flag turns ``sys.exit(130)`` into death by SIGINT (-2). `forget_caught_interrupt` clears it."""
    import ctypes

    try:
        ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt")
    except ValueError:
        pytest.skip("this interpreter does not export _Py_UnhandledKeyboardInterrupt")
    body = (
        "import ctypes, sys\n"
        "from neurocxr.interrupts import forget_caught_interrupt\n"
        "ctypes.c_int.in_dll(ctypes.pythonapi, '_Py_UnhandledKeyboardInterrupt').value = 1\n"
        "{clear}\n"
        "sys.exit(130)\n"
    )
    (tmp_path / "flag_cleared.py").write_text(body.format(clear="forget_caught_interrupt()"))
    (tmp_path / "flag_left.py").write_text(body.format(clear="pass"))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}

    def exit_code(module: str) -> int:
        return subprocess.run([sys.executable, "-m", module], cwd=tmp_path, env=env).returncode

    assert exit_code("flag_left") == -signal.SIGINT  # the CPython behaviour worked around
    assert exit_code("flag_cleared") == 130


def test_a_finalizer_cut_off_by_ctrl_c_stays_quiet_at_exit() -> None:
    """A Ctrl-C inside multiprocessing's ``Finalize.__init__`` (Lava starting its workers) can leave
    a finalizer with a weak reference but no ``_key``; when its object dies it used to print
    "Exception ignored ... AttributeError" after neurocxr had said it was interrupted."""
    import multiprocessing.util as mp_util
    import weakref

    from neurocxr.interrupts import disarm_half_built_finalizers

    class Resource:
        pass

    def half_built(obj: Resource) -> mp_util.Finalize:
        finalizer = mp_util.Finalize.__new__(mp_util.Finalize)
        finalizer._weakref = weakref.ref(obj, finalizer)  # where __init__ was cut off
        return finalizer

    resource = Resource()
    finalizer = half_built(resource)
    with pytest.raises(AttributeError, match="_key"):
        finalizer()  # what the interpreter ran at shutdown
    intact = mp_util.Finalize(resource, lambda: None, exitpriority=None)
    disarm_half_built_finalizers()
    assert finalizer() is None  # quiet now
    assert intact._key in mp_util._finalizer_registry  # registered finalizers are left alone
    intact.cancel()
    unraisable: list[Any] = []
    previous, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        del resource  # the weak reference's callback runs the disarmed finalizer
    finally:
        sys.unraisablehook = previous
    assert unraisable == []
