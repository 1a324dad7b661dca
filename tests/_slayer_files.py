"""netx files as users bring them, written at test time by lava-dl's own slayer exporter.

Each builder makes a small slayer network (random, untrained), runs it once on random input so
that per-channel neuron parameters take their shape, and writes it with the blocks'
``export_hdf5`` — the way lava-dl's tutorials export trained networks. Edits applied afterwards
(`edit_neuron`) stand for fields slayer can write but these builders do not set.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np
import torch

from neurocxr.hardware_sims.lava import _import_lava

_import_lava()  # Lava's own import fails once another module fixed the multiprocessing context
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    import lava.lib.dl.slayer as slayer

_SHARED = {"threshold": 1.0, "current_decay": 0.25, "voltage_decay": 0.1, "requires_grad": False}
_PER_CHANNEL = dict(_SHARED, shared_param=False)  # slayer jitters decays per channel / per neuron


def _export(
    blocks: list[torch.nn.Module],
    path: Path,
    sample: torch.Tensor,
    *,
    input_shape: tuple[int, ...] | None = None,
) -> Path:
    with torch.no_grad():
        x = sample
        for block in blocks:
            x = block(x)
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        offset = 0
        if input_shape is not None:  # a shape-only input layer (spike input), as netx reads it
            g = layer.create_group("0")
            g.create_dataset("type", (1,), "S10", [b"input"])
            g.create_dataset("shape", data=np.array(input_shape))
            offset = 1
        for i, block in enumerate(blocks):
            block.export_hdf5(layer.create_group(str(i + offset)))
    return path


def dense_first_file(path: Path, seed: int = 0) -> Path:
    """Dense 20 -> 12 -> 4, no input layer (input = 20 spike trains), per-neuron decays."""
    torch.manual_seed(seed)
    blocks = [
        slayer.block.cuba.Dense(_PER_CHANNEL, 20, 12, weight_scale=3, weight_norm=False),
        slayer.block.cuba.Dense(_PER_CHANNEL, 12, 4, weight_scale=3, weight_norm=False),
    ]
    return _export(blocks, path, (torch.rand(1, 20, 4) < 0.3).float())


def conv_bias_input_file(path: Path, seed: int = 0) -> Path:
    """Input neurons with a weight/bias transform -> conv 3x3 s2 (per-channel decays) -> conv 3x2
    stride (1, 2) padding (1, 0) -> flatten -> dense 3 (per-neuron decays)."""
    torch.manual_seed(seed)
    blocks = [
        slayer.block.cuba.Input(_SHARED, weight=2.0, bias=0.5),
        slayer.block.cuba.Conv(
            _PER_CHANNEL, 1, 4, 3, stride=2, padding=1, weight_scale=2, weight_norm=False
        ),
        slayer.block.cuba.Conv(
            _SHARED, 4, 6, (3, 2), stride=(1, 2), padding=(1, 0), weight_scale=2, weight_norm=False
        ),
        slayer.block.cuba.Flatten(),
        slayer.block.cuba.Dense(_PER_CHANNEL, 6 * 5 * 2, 3, weight_scale=2, weight_norm=False),
    ]
    return _export(blocks, path, torch.rand(1, 1, 10, 8, 4))


def conv_spike_input_file(path: Path, seed: int = 0) -> Path:
    """Shape-only input (2, 9, 7) spikes -> grouped, dilated conv (per-channel vThMant, iDecay, vDecay)
    -> conv 2x3 stride (2, 1) -> flatten -> dense 5 (per-neuron decays)."""
    torch.manual_seed(seed)
    blocks = [
        # slayer's own per-channel decays on a conv broadcast over the width (a slayer quirk), so
        # this file's per-channel parameters are written afterwards (see the docstring)
        slayer.block.cuba.Conv(
            _SHARED,
            2,
            4,
            3,
            stride=1,
            padding=2,
            dilation=2,
            groups=2,
            weight_scale=4,
            weight_norm=False,
        ),
        slayer.block.cuba.Conv(
            _SHARED, 4, 3, (2, 3), stride=(2, 1), padding=(0, 1), weight_scale=3, weight_norm=False
        ),
        slayer.block.cuba.Flatten(),
        slayer.block.cuba.Dense(_PER_CHANNEL, 3 * 4 * 7, 5, weight_scale=3, weight_norm=False),
    ]
    _export(blocks, path, (torch.rand(1, 2, 9, 7, 4) < 0.3).float(), input_shape=(2, 9, 7))
    edit_neuron(
        path,
        1,
        vThMant=np.array([40, 64, 90, 120]),
        iDecay=np.array([0, 1024, 2048, 4096]),
        vDecay=np.array([4096, 410, 100, 0]),
    )
    return path


def edit_neuron(path: Path, layer: int, **fields: Any) -> None:
    """Overwrite or add ``/layer/<layer>/neuron/<key>`` datasets."""
    with h5py.File(path, "r+") as f:
        ng = f[f"layer/{layer}/neuron"]
        for key, value in fields.items():
            if key in ng:
                del ng[key]
            ng.create_dataset(key, data=value)


@contextlib.contextmanager
def older_slayer_fields() -> Iterator[None]:
    """Export CUBA neurons in the layout of older slayer versions: today's fields plus the training-only
    ``scaleRho``, ``tauRho``, ``theta`` and ``wgtExp`` (the neuron keys netx's NetDict still lists and its
    hdf5.Network never reads). The blocks' own ``export_hdf5`` writes them, from the neuron's own values."""
    cls = slayer.neuron.cuba.Neuron
    current = cls.device_params

    def older(self: Any) -> dict[str, Any]:
        return {
            **current.fget(self),
            "scaleRho": self.scale_rho,
            "tauRho": self.tau_rho,
            "theta": float(self.threshold),
            "wgtExp": 0,
        }

    cls.device_params = property(older)
    try:
        yield
    finally:
        cls.device_params = current


def recurrent_file(path: Path, seed: int = 0) -> Path:
    """Dense-first: slayer ``Recurrent`` 20 -> 12 (dense_rec, per-neuron decays) -> Dense 4 with slayer's
    weight-scale norm (a bias and the norm's ``weight_exp`` in the neuron group)."""
    torch.manual_seed(seed)
    blocks = [
        slayer.block.cuba.Recurrent(dict(_PER_CHANNEL), 20, 12, weight_scale=3, weight_norm=False),
        slayer.block.cuba.Dense(
            dict(_SHARED, norm=slayer.neuron.norm.WgtScaleBatchNorm),
            12,
            4,
            weight_scale=3,
            weight_norm=False,
        ),
    ]
    return _export(blocks, path, (torch.rand(1, 20, 4) < 0.3).float())


def conv_recurrent_file(path: Path, seed: int = 0) -> Path:
    """Shape-only input (2, 9, 7) spikes -> conv 3x3 stride 2 -> flatten -> slayer ``Recurrent`` 10 -> Dense 3."""
    torch.manual_seed(seed)
    blocks = [
        slayer.block.cuba.Conv(
            _SHARED, 2, 4, 3, stride=2, padding=1, weight_scale=4, weight_norm=False
        ),
        slayer.block.cuba.Flatten(),
        slayer.block.cuba.Recurrent(
            dict(_SHARED), 4 * 5 * 4, 10, weight_scale=3, weight_norm=False
        ),
        slayer.block.cuba.Dense(_SHARED, 10, 3, weight_scale=3, weight_norm=False),
    ]
    return _export(blocks, path, (torch.rand(1, 2, 9, 7, 4) < 0.3).float(), input_shape=(2, 9, 7))
