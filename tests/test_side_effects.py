"""Importing or calling the library leaves process-global state as the caller set it."""

from __future__ import annotations

import subprocess
import sys

import torch

from neurocxr.threads import torch_threads


def test_torch_threads_are_restored_after_training_and_emulation() -> None:
    from neurocxr.data.datasets import DataSplits, ImageDataset
    from neurocxr.models.base import ModelConfig
    from neurocxr.training.train import TrainConfig, train

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(32) % 2

    def split(name: str) -> ImageDataset:
        images = torch.rand(32, 1, 16, 16, generator=g) * 0.2 + labels.view(-1, 1, 1, 1) * 0.6
        return ImageDataset(images.clamp(0, 1), labels.long(), name, "toy")

    splits = DataSplits(split("train"), split("val"), split("test"))
    before = torch.get_num_threads()
    caller = 1 if before != 1 else 2
    with torch_threads(caller):
        train(
            ModelConfig(name="cnn_small", image_size=16, channels=(4, 8)),
            splits,
            TrainConfig(epochs=1, batch_size=16, num_threads=3 if caller != 3 else 4),
            progress=False,
        )
        assert torch.get_num_threads() == caller
    assert torch.get_num_threads() == before


def test_emulate_leaves_numba_and_torch_threads_alone() -> None:
    import numba
    from _netx_programs import default_shaped_program, random_images

    from neurocxr.hardware_sims.emulator import emulate

    numba_before, torch_before = numba.get_num_threads(), torch.get_num_threads()
    program = default_shaped_program(num_steps=4)
    run = emulate(program, random_images(2), threads=2 if torch_before != 2 else 1)
    assert run.output_spikes.shape[1] == 2
    assert (numba.get_num_threads(), torch.get_num_threads()) == (numba_before, torch_before)


def test_import_keeps_a_callers_numba_threading_layer() -> None:
    code = (
        "import numba; numba.config.THREADING_LAYER = 'omp'; "
        "import neurocxr.hardware_sims.cuba_kernel; print(numba.config.THREADING_LAYER)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-1000:]
    assert out.stdout.strip() == "omp"
    default = subprocess.run(
        [
            sys.executable,
            "-c",
            "import neurocxr.hardware_sims.cuba_kernel, numba; print(numba.config.THREADING_LAYER)",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert default.stdout.strip() == "workqueue", default.stderr[-1000:]
