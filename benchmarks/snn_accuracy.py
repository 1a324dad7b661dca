"""Clinical-grade SNNs (issue 18): every accuracy lever, 3 seeds each, on the chip (emulator) and in float.

    OMP_NUM_THREADS=1 python benchmarks/snn_accuracy.py                       # every config, resumable
    python benchmarks/snn_accuracy.py --only hybrid_vgg6_T4 --seeds 0          # one config, one seed
    python benchmarks/snn_accuracy.py --list                                   # the configs, in run order

Per configuration and seed: train (levers below) -> export to Loihi 2 (8-bit weights, fits the chip:
`neurocxr.deploy.deployment.Deployment`) -> emulator on validation and test -> chip ROC-AUC, and accuracy /
sensitivity / specificity on test at the Youden threshold of the *validation* chip scores -> Loihi 2
dynamic energy from the test counts, cores and chips. Float AUC from the same model. Test is looked
at once per configuration and never used to choose anything; ``chosen`` is picked per image size by
``val_auc_mean`` among deployable configurations.

Levers (names as on `neurocxr train` and in the sweep grid): ``convert_from`` (a trained `cnn_vgg`,
converted with 99.9th-percentile balancing, `neurocxr.training.conversion`; ``epochs`` = 0: pure
conversion, > 0: hybrid fine-tuning), ``teacher`` (distillation from `medspectralnet`, the strongest
CNN, trained once per image size; named by checkpoint path and SHA-256), ``depth``/``width``
(`snn_vgg`), ``augment`` (none / light / shift), ``regulariser`` (chip-cost lambda), ``num_steps``,
``qat_epochs``.

Data: 28 px from ``pneumoniamnist.npz`` (official splits); 64 and 128 px from the Kermany folders (the same 624
test patients; validation carved out of train by patient). The JSON is rewritten atomically after
every finished configuration and a rerun skips configurations already in it (``--redo`` to rerun).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Everything imported up front: a long run must not pick up half-edited modules later.
import neurocxr.hardware_sims.emulator  # noqa: E402,F401  (imported now, not at the first evaluation)
import neurocxr.hardware_sims.lava  # noqa: E402,F401
import neurocxr.models.checkpoint  # noqa: E402,F401
import neurocxr.training.conversion  # noqa: E402,F401
from neurocxr.data.datasets import load_dataset  # noqa: E402
from neurocxr.deploy.deployment import Deployment, readout_difference  # noqa: E402
from neurocxr.energy.estimate import estimate_energy  # noqa: E402
from neurocxr.fileio import write_json  # noqa: E402
from neurocxr.metrics import choose_threshold, clinical_metrics  # noqa: E402
from neurocxr.models import ModelConfig, model_info  # noqa: E402
from neurocxr.models.loaded import LoadedModel  # noqa: E402
from neurocxr.models.vgg import vgg_channels  # noqa: E402
from neurocxr.provenance import file_record, provenance  # noqa: E402
from neurocxr.training.conversion import snn_config_for  # noqa: E402
from neurocxr.training.train import TrainConfig, evaluate, train  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "snn_accuracy.json"
CHECKPOINTS = ROOT / "benchmarks" / "results" / "checkpoints"  # *.pt is git-ignored
KERMANY = "../shared/data/kermany224"  # 64 and 128 px are resized from these 224 px folders
DATA = {28: "../shared/data/pneumoniamnist.npz", 64: KERMANY, 128: KERMANY}
TEACHER = "medspectralnet"
ENERGY_PROFILE = "loihi2"


@dataclass(frozen=True)
class Bench:
    """One configuration: which model and which levers (seed apart)."""

    name: str
    lever: str
    image_size: int = 28
    model: str = "snn_strided"
    num_steps: int = 4
    depth: int | None = None  # snn_vgg / cnn_vgg conv layers (vgg_channels)
    width: float = 1.0
    convert: bool = False  # start from a converted cnn_vgg (convert_from)
    cnn_epochs: int = 10  # epochs of the cnn_vgg conversion source
    epochs: int = 10  # SNN epochs (0 with convert: pure conversion)
    lr: float = 2e-3
    augment: str = "none"
    teacher: bool = False  # distil from medspectralnet of this image size
    distill_weight: float = 0.5
    feature_distill: float = (
        0.0  # feature distillation weight; teacher = the conversion source (cnn_vgg)
    )
    regulariser: float = 0.0
    qat_epochs: int = 0
    prune: float = 0.0  # fraction of each layer's weights zeroed by magnitude while fine-tuning
    hidden: tuple[int, ...] = (128,)
    # the SNN's input: direct (input neurons) or regular spike trains
    encoding: str = "direct"
    strides: tuple[int, ...] | None = None  # vgg conv strides (None: vgg_strides' default)

    def model_config(self) -> ModelConfig:
        channels = vgg_channels(self.depth, self.width) if self.depth else (16, 32)
        if not self.depth and self.width != 1.0:
            channels = tuple(max(1, round(c * self.width)) for c in channels)
        return ModelConfig(
            name=self.model,
            image_size=self.image_size,
            num_steps=self.num_steps,
            channels=channels,
            hidden=self.hidden,
            encoding=self.encoding,
            extra={"strides": list(self.strides)} if self.strides else {},
        )


def configs() -> list[Bench]:
    """In run order: what matters most first, so a run cut short still answers the main question."""
    conv = dict(model="snn_vgg", depth=6, convert=True, lever="conversion")
    regular = dict(
        augment="shift", cnn_epochs=10, encoding="regular", lr=5e-4, feature_distill=1.0, **conv
    )
    stride2_first = dict(  # a quarter of the first layer's neurons
        strides=(2, 1, 2, 1, 2, 1),
        **{
            **regular,
            "cnn_epochs": 6,
            "lever": "conversion+finetune+augment+feature-distill+regular input, stride 2 from "
            "the first conv (a quarter of the first layer's neurons)",
        },
    )
    stride2_cnn10 = dict(  # the same on a 10-epoch source
        epochs=3,
        **{
            **stride2_first,
            "cnn_epochs": 10,
            "lever": stride2_first["lever"] + ", 10-epoch source",
        },
    )
    return [
        Bench(
            "convert_vgg6_shift_T16_regular",
            num_steps=16,
            **{**regular, "epochs": 0, "feature_distill": 0.0, "lever": "conversion+regular input"},
        ),
        Bench(
            "hybrid_vgg6_shift_T8_featdistill_regular",
            num_steps=8,
            epochs=3,
            **{**regular, "lever": "conversion+finetune+augment+feature-distill+regular input"},
        ),
        Bench(
            "hybrid_vgg6_shift_T16_featdistill_regular",
            num_steps=16,
            epochs=3,
            **{**regular, "lever": "conversion+finetune+augment+feature-distill+regular input"},
        ),
        Bench(
            "hybrid_vgg6_shift_T4_featdistill_regular",
            num_steps=4,
            epochs=3,
            **{**regular, "lever": "conversion+finetune+augment+feature-distill+regular input"},
        ),
        Bench(
            "hybrid_vgg6_shift_T8_featdistill_reg_regular",
            num_steps=8,
            epochs=3,
            regulariser=0.002,
            **{
                **regular,
                "lever": "conversion+finetune+augment+feature-distill+regular input+regulariser",
            },
        ),
        Bench(
            "hybrid_vgg6s2_shift_T8_featdistill_regular",
            num_steps=8,
            epochs=3,
            **stride2_first,
        ),
        Bench(
            "hybrid_vgg6s2_shift_T4_featdistill_regular",
            num_steps=4,
            epochs=3,
            **stride2_first,
        ),
        Bench(
            "hybrid_vgg6_shift_T8_featdistill_e6_regular",
            num_steps=8,
            epochs=6,
            **{
                **regular,
                "lever": "conversion+finetune+augment+feature-distill+regular input, 6 epochs",
            },
        ),
        Bench(
            "hybrid_vgg6_shift_T32_featdistill_regular",
            num_steps=32,
            epochs=3,
            **{**regular, "lever": "conversion+finetune+augment+feature-distill+regular input"},
        ),
        Bench(
            "hybrid_vgg6_shift_T16_featdistill_e6_regular",
            num_steps=16,
            epochs=6,
            **{
                **regular,
                "lever": "conversion+finetune+augment+feature-distill+regular input, 6 epochs",
            },
        ),
        Bench(  # a quarter of the synaptic operations past conv1, half of conv1's: the energy aim
            "hybrid_vgg6w05_shift_T8_featdistill_regular",
            num_steps=8,
            epochs=3,
            width=0.5,
            **{
                **regular,
                "cnn_epochs": 6,
                "lever": "conversion+finetune+augment+feature-distill+regular input, half width",
            },
        ),
        Bench(  # the CNNs that generalise best are wider: the accuracy aim
            "hybrid_vgg6w2_shift_T8_featdistill_regular",
            num_steps=8,
            epochs=3,
            width=2.0,
            **{
                **regular,
                "cnn_epochs": 6,
                "lever": "conversion+finetune+augment+feature-distill+regular input, double width",
            },
        ),
        Bench(
            "hybrid_vgg6w2_shift_T16_featdistill_regular",
            num_steps=16,
            epochs=3,
            width=2.0,
            **{
                **regular,
                "cnn_epochs": 6,
                "lever": "conversion+finetune+augment+feature-distill+regular input, double width",
            },
        ),
        Bench(  # a quarter of the weight that kept no fine-tuned epoch
            "hybrid_vgg6_shift_T8_featdistill_reg0005_regular",
            num_steps=8,
            epochs=3,
            regulariser=0.0005,
            **{
                **regular,
                "lever": "conversion+finetune+augment+feature-distill+regular input+regulariser 0.0005",
            },
        ),
        Bench(
            "hybrid_vgg6s2_shift_T8_featdistill_reg0005_regular",
            num_steps=8,
            epochs=3,
            regulariser=0.0005,
            **{**stride2_first, "lever": stride2_first["lever"] + ", regulariser 0.0005"},
        ),
        Bench(  # 64 px seen by a stride-2 first conv (32 x 32 positions); the input spikes grow with the pixels
            "hybrid_vgg6s2_shift_T8_featdistill_regular_64",
            image_size=64,
            num_steps=8,
            epochs=3,
            **stride2_first,
        ),
        Bench(
            "hybrid_vgg6s2_shift_T16_featdistill_regular_64",
            image_size=64,
            num_steps=16,
            epochs=3,
            **stride2_first,
        ),
        # The 6-epoch sources above were still improving at their last epoch (best epoch 6 in 8 of
        # 12), while the standard-width rows reuse 10-epoch sources: the same levers on 10-epoch sources.
        Bench("hybrid_vgg6s2_shift_T8_featdistill_regular_cnn10", num_steps=8, **stride2_cnn10),
        Bench(
            "hybrid_vgg6w05_shift_T8_featdistill_regular_cnn10",
            num_steps=8,
            epochs=3,
            width=0.5,
            **{
                **regular,
                "lever": "conversion+finetune+augment+feature-distill+regular input, half width, "
                "10-epoch source",
            },
        ),
        Bench("hybrid_vgg6s2_shift_T6_featdistill_regular_cnn10", num_steps=6, **stride2_cnn10),
        Bench(
            "hybrid_vgg6w2_shift_T16_featdistill_regular_cnn10",
            num_steps=16,
            epochs=3,
            width=2.0,
            **{
                **regular,
                "lever": "conversion+finetune+augment+feature-distill+regular input, double width, "
                "10-epoch source",
            },
        ),
        Bench(  # the CNNs that generalise best are deeper: two 128-channel convs more (8 convs)
            "hybrid_vgg8_shift_T16_featdistill_regular",
            num_steps=16,
            epochs=3,
            **{
                **regular,
                "depth": 8,
                "lever": "conversion+finetune+augment+feature-distill+regular input, 8 convs",
            },
        ),
        # Pruning (issue 18's energy aim): synaptic ops are most of the dynamic energy and the chip
        # stores no zero weight; 6 epochs (a 2-epoch ramp, 4 at the full fraction) against the
        # 6-epoch dense row hybrid_vgg6_shift_T8_featdistill_e6_regular
        *(
            Bench(
                f"hybrid_vgg6_shift_T8_featdistill_e6_regular_prune{round(100 * fraction)}",
                num_steps=8,
                epochs=6,
                prune=fraction,
                **{
                    **regular,
                    "lever": "conversion+finetune+augment+feature-distill+regular input, 6 epochs, "
                    f"{round(100 * fraction)} % of the weights pruned by magnitude",
                },
            )
            for fraction in (0.25, 0.5, 0.75)
        ),
        Bench(  # half the weights at T = 16, 3 epochs (a 1-epoch ramp), against the dense T = 16 row
            "hybrid_vgg6_shift_T16_featdistill_regular_prune50",
            num_steps=16,
            epochs=3,
            prune=0.5,
            **{
                **regular,
                "lever": "conversion+finetune+augment+feature-distill+regular input, 50 % of the "
                "weights pruned by magnitude",
            },
        ),
        Bench(  # a quarter of the weights at T = 16, against hybrid_vgg6_shift_T16_featdistill_e6_regular
            "hybrid_vgg6_shift_T16_featdistill_e6_regular_prune25",
            num_steps=16,
            epochs=6,
            prune=0.25,
            **{
                **regular,
                "lever": "conversion+finetune+augment+feature-distill+regular input, 6 epochs, "
                "25 % of the weights pruned by magnitude",
            },
        ),
        Bench(  # the cheapest plan near 0.94 (stride 2 first), a quarter of its weights pruned
            "hybrid_vgg6s2_shift_T8_featdistill_e6_regular_prune25",
            num_steps=8,
            prune=0.25,
            **{
                **stride2_first,
                "epochs": 6,
                "lever": stride2_first["lever"]
                + ", 6 epochs, 25 % of the weights pruned by magnitude",
            },
        ),
        Bench(  # the SNN's decision pulled closer to its source CNN's (logit weight 0.9, not 0.5)
            "hybrid_vgg6_shift_T8_featdistill_kd09_regular",
            num_steps=8,
            epochs=3,
            distill_weight=0.9,
            **{
                **regular,
                "lever": "conversion+finetune+augment+feature-distill+regular input, logit "
                "distillation weight 0.9",
            },
        ),
        Bench(  # 128 px: stride 2 in the first two convs keeps the maps of the 64 px row (32 -> 8)
            "hybrid_vgg6s22_shift_T8_featdistill_regular_128",
            image_size=128,
            num_steps=8,
            epochs=3,
            **{
                **stride2_first,
                "strides": (2, 2, 2, 1, 2, 1),
                "lever": "conversion+finetune+augment+feature-distill+regular input, stride 2 in the "
                "first two convs",
            },
        ),
        Bench(
            "strided_T8_regular_shift",
            lever="augment+regular input",
            num_steps=8,
            epochs=10,
            augment="shift",
            encoding="regular",
        ),
        Bench(
            "strided_T16_regular_shift",
            lever="augment+regular input",
            num_steps=16,
            epochs=10,
            augment="shift",
            encoding="regular",
        ),
        Bench("convert_vgg6_T16", num_steps=16, epochs=0, **conv),
        Bench("convert_vgg6_T8", num_steps=8, epochs=0, **conv),
        Bench("convert_vgg6_T4", num_steps=4, epochs=0, **conv),
        Bench("convert_vgg6_T32", num_steps=32, epochs=0, **conv),
        Bench(
            "hybrid_vgg6_T4",
            num_steps=4,
            epochs=3,
            lr=5e-4,
            **{**conv, "lever": "conversion+finetune"},
        ),
        Bench("strided_T4", lever="baseline", epochs=10),
        Bench(
            "hybrid_vgg6_T4_distill",
            num_steps=4,
            epochs=3,
            lr=5e-4,
            teacher=True,
            **{**conv, "lever": "conversion+finetune+distill"},
        ),
        Bench(
            "hybrid_vgg6_T4_featdistill",
            num_steps=4,
            epochs=3,
            lr=5e-4,
            feature_distill=1.0,
            **{
                **conv,
                "lever": "conversion+finetune+feature-distill (teacher: the conversion source)",
            },
        ),
        Bench(
            "hybrid_vgg6_T4_shift",
            num_steps=4,
            epochs=3,
            lr=5e-4,
            augment="shift",
            **{**conv, "lever": "conversion+finetune+augment"},
        ),
        Bench("strided_T4_shift", lever="augment", epochs=10, augment="shift"),
        Bench("vgg6_T4_scratch", lever="depth", model="snn_vgg", depth=6, epochs=5),
        Bench(
            "vgg6_T4_scratch_shift",
            lever="depth+augment",
            model="snn_vgg",
            depth=6,
            epochs=4,
            augment="shift",
        ),
        Bench(
            "hybrid_vgg6_T4_64",
            image_size=64,
            num_steps=4,
            epochs=1,
            lr=5e-4,
            cnn_epochs=6,
            **{**conv, "lever": "conversion+finetune"},
        ),
        Bench(
            "strided_T4_distill_shift",
            lever="distill+augment",
            epochs=10,
            augment="shift",
            teacher=True,
        ),
        Bench(
            "hybrid_vgg6_T8",
            num_steps=8,
            epochs=2,
            lr=5e-4,
            **{**conv, "lever": "conversion+finetune"},
        ),
        Bench(
            "hybrid_vgg6w2_T4",
            num_steps=4,
            epochs=3,
            lr=5e-4,
            width=2.0,
            **{**conv, "lever": "conversion+finetune+width"},
        ),
        Bench(
            "hybrid_vgg6_T4_qat",
            num_steps=4,
            epochs=3,
            lr=5e-4,
            qat_epochs=1,
            **{**conv, "lever": "conversion+finetune+qat"},
        ),
        Bench(
            "hybrid_vgg6_T4_reg",
            num_steps=4,
            epochs=3,
            lr=5e-4,
            regulariser=0.01,
            **{**conv, "lever": "conversion+finetune+regulariser"},
        ),
        # Conversion from the shift-augmented cnn_vgg with input neurons at theta_in = 2
        # (neurocxr.training.conversion.DEFAULT_INPUT_THRESHOLD); the rows above used 0.5.
        Bench(
            "convert_vgg6_shift_T16",
            num_steps=16,
            epochs=0,
            augment="shift",
            **{**conv, "lever": "conversion+augment"},
        ),
        Bench(
            "convert_vgg6_shift_T32",
            num_steps=32,
            epochs=0,
            augment="shift",
            **{**conv, "lever": "conversion+augment"},
        ),
        Bench(
            "convert_vgg6_shift_T8",
            num_steps=8,
            epochs=0,
            augment="shift",
            **{**conv, "lever": "conversion+augment"},
        ),
        Bench(
            "hybrid_vgg6_shift_T8",
            num_steps=8,
            epochs=2,
            lr=5e-4,
            augment="shift",
            **{**conv, "lever": "conversion+finetune+augment"},
        ),
        Bench(
            "hybrid_vgg6_shift_T16",
            num_steps=16,
            epochs=3,
            lr=5e-4,
            augment="shift",
            **{**conv, "lever": "conversion+finetune+augment"},
        ),
        Bench(
            "hybrid_vgg6_shift_T16_e6",
            num_steps=16,
            epochs=6,
            lr=5e-4,
            augment="shift",
            **{**conv, "lever": "conversion+finetune+augment (6 epochs)"},
        ),
        Bench(
            "hybrid_vgg6_shift_T16_featdistill",
            num_steps=16,
            epochs=3,
            lr=5e-4,
            augment="shift",
            feature_distill=1.0,
            **{
                **conv,
                "lever": "conversion+finetune+augment+feature-distill (teacher: the conversion source)",
            },
        ),
        Bench(
            "hybrid_vgg6_shift_T8_featdistill_reg",
            num_steps=8,
            epochs=3,
            lr=5e-4,
            augment="shift",
            feature_distill=1.0,
            regulariser=0.01,
            **{**conv, "lever": "conversion+finetune+augment+feature-distill+regulariser"},
        ),
        Bench(
            "hybrid_vgg6_shift_T8_featdistill_qat",
            num_steps=8,
            epochs=3,
            lr=5e-4,
            augment="shift",
            feature_distill=1.0,
            qat_epochs=1,
            **{**conv, "lever": "conversion+finetune+augment+feature-distill+qat"},
        ),
        Bench(
            "hybrid_vgg6_shift_T8_featdistill_strong",
            num_steps=8,
            epochs=3,
            lr=5e-4,
            augment="shift",
            feature_distill=3.0,
            distill_weight=0.9,
            **{
                **conv,
                "lever": "conversion+finetune+augment+feature-distill x3, logit weight 0.9 "
                "(teacher: the conversion source)",
            },
        ),
        Bench(
            "hybrid_vgg6_shift_T16_featdistill_e6",
            num_steps=16,
            epochs=6,
            lr=5e-4,
            augment="shift",
            feature_distill=1.0,
            **{
                **conv,
                "lever": "conversion+finetune+augment+feature-distill, 6 epochs (teacher: the conversion source)",
            },
        ),
        Bench(
            "hybrid_vgg6_shift_T32",
            num_steps=32,
            epochs=3,
            lr=5e-4,
            augment="shift",
            **{**conv, "lever": "conversion+finetune+augment"},
        ),
        Bench(
            "hybrid_vgg6_shift_T8_e6",
            num_steps=8,
            epochs=6,
            lr=5e-4,
            augment="shift",
            **{**conv, "lever": "conversion+finetune+augment (6 epochs)"},
        ),
        Bench(
            "hybrid_vgg6_shift_T8_featdistill",
            num_steps=8,
            epochs=3,
            lr=5e-4,
            augment="shift",
            feature_distill=1.0,
            **{
                **conv,
                "lever": "conversion+finetune+augment+feature-distill (teacher: the conversion source)",
            },
        ),
        Bench(
            "hybrid_vgg6_shift_T4",
            num_steps=4,
            epochs=3,
            lr=5e-4,
            augment="shift",
            **{**conv, "lever": "conversion+finetune+augment"},
        ),
        Bench("strided_T4_64", image_size=64, lever="baseline", epochs=8),
        Bench("strided_T4_64_shift", image_size=64, lever="augment", epochs=6, augment="shift"),
    ]


# ----------------------------------------------------------------------------------------------


_SPLITS: dict[int, Any] = {}


def splits_for(size: int, data: dict[int, str]) -> Any:
    if size not in _SPLITS:
        t0 = time.perf_counter()
        _SPLITS[size] = load_dataset(data[size], image_size=size, synthetic_ok=False)
        print(
            f"data {size} px: {_SPLITS[size].source} ({time.perf_counter() - t0:.0f} s)", flush=True
        )
    return _SPLITS[size]


def train_cnn(name: str, config: ModelConfig, splits: Any, tc: TrainConfig) -> tuple[Path, float]:
    """Train (or reuse) a CNN checkpoint under CHECKPOINTS; returns (path, training seconds)."""
    path = CHECKPOINTS / f"{name}.pt"
    if path.is_file():
        from neurocxr.models.loaded import load

        meta = load(path).metadata
        return path, float(meta.get("bench_train_seconds", 0.0))
    CHECKPOINTS.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train(config, splits, tc, progress=False, checkpoint_path=path)
    seconds = time.perf_counter() - t0
    from neurocxr.models.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(path)
    save_checkpoint(
        path, ckpt.model, ckpt.config, {**ckpt.metadata, "bench_train_seconds": seconds}
    )
    return path, seconds


def teacher_for(size: int, data: dict[int, str], record: dict[str, Any]) -> Path:
    """medspectralnet at this size, trained once (seed 0) and kept; its metrics go into provenance."""
    splits = splits_for(size, data)
    path, seconds = train_cnn(
        f"{TEACHER}_{size}",
        ModelConfig(name=TEACHER, image_size=size),
        splits,
        TrainConfig(epochs=6, patience=2, seed=0),
    )
    key = str(size)
    if key not in record:
        from neurocxr.models.loaded import load

        loaded = load(path)
        val = evaluate(loaded.model, loaded.config, splits.val, loaded.threshold)
        test = evaluate(loaded.model, loaded.config, splits.test, loaded.threshold)
        record[key] = {
            "model": TEACHER,
            "checkpoint": file_record(path),
            "train_seconds": seconds,
            "val_auc": val.roc_auc,
            "test_auc": test.roc_auc,
            "test_accuracy": test.accuracy,
        }
        print(
            f"teacher {TEACHER} {size} px: val AUC {val.roc_auc:.4f}, test AUC {test.roc_auc:.4f}",
            flush=True,
        )
    return path


def run_seed(
    b: Bench, seed: int, data: dict[int, str], teachers: dict[str, Any], lava_samples: int
) -> dict[str, Any]:
    splits = splits_for(b.image_size, data)
    torch.manual_seed(seed)
    cfg = b.model_config()
    extra: dict[str, Any] = {}
    cnn_seconds = 0.0
    teacher_path = teacher_for(b.image_size, data, teachers) if b.teacher else None
    convert_from = None
    if b.convert:
        cnn_cfg = replace(cfg, name="cnn_vgg")
        plan = f"_st{''.join(map(str, b.strides))}" if b.strides else ""
        cnn_name = f"cnn_vgg_{b.image_size}_d{b.depth}{plan}_w{b.width:g}_{b.augment}_e{b.cnn_epochs}_s{seed}"
        cnn_path, cnn_seconds = train_cnn(
            cnn_name,
            cnn_cfg,
            splits,
            TrainConfig(epochs=b.cnn_epochs, seed=seed, augment=b.augment, patience=3),
        )
        cfg = snn_config_for(cnn_cfg, b.num_steps, 1.0, encoding=b.encoding)
        convert_from = str(cnn_path)
        if b.feature_distill > 0:  # features (and logits) of the CNN the SNN was converted from
            teacher_path = cnn_path
        extra["convert_from"] = file_record(cnn_path)
        extra["cnn_train_seconds"] = cnn_seconds
        from neurocxr.models.loaded import load

        source = load(
            cnn_path
        )  # the CNN itself, for reference (selection never looks at its test AUC)
        extra["source_cnn_epochs"] = int(source.metadata["train_config"]["epochs"])
        extra["source_cnn_val_auc"] = evaluate(
            source.model, source.config, splits.val, source.threshold
        ).roc_auc
        extra["source_cnn_test_auc"] = evaluate(
            source.model, source.config, splits.test, source.threshold
        ).roc_auc
    tc = TrainConfig(
        epochs=b.epochs,
        lr=b.lr,
        seed=seed,
        augment=b.augment,
        chip_cost_weight=b.regulariser,
        qat_epochs=b.qat_epochs,
        prune=b.prune,
        patience=3,
        convert_from=convert_from,
        distill_teacher=str(teacher_path) if teacher_path else None,
        distill_weight=b.distill_weight if teacher_path else 0.0,
        distill_feature_weight=b.feature_distill,
    )
    t0 = time.perf_counter()
    result = train(cfg, splits, tc, progress=False)
    snn_seconds = time.perf_counter() - t0
    if result.conversion:
        extra["conversion"] = {
            k: result.conversion[k]
            for k in ("percentile", "samples", "lambdas", "threshold", "input_threshold")
        }
        extra["conversion"]["encoding"] = result.conversion.get("encoding", "direct")
    t1 = time.perf_counter()
    dep = Deployment.from_checkpoint(
        LoadedModel(result.model.eval(), cfg, {"threshold": result.threshold})
    )
    diffs, labels, float_auc, runs = {}, {}, {}, {}
    for split in ("val", "test"):
        ds = getattr(splits, split)
        x = dep.encode(ds.images, seed=0)
        run = dep.run(x)
        runs[split] = run
        diffs[split] = readout_difference(run).astype(np.float64)
        labels[split] = ds.labels.numpy().astype(np.int64)
        logits = dep.float_logits(ds.images)
        float_scores = torch.softmax(torch.from_numpy(logits), 1)[:, 1].numpy()
        float_auc[split] = clinical_metrics(labels[split], float_scores).roc_auc
    threshold = choose_threshold(labels["val"], diffs["val"], "youden")  # chosen on validation only
    test = clinical_metrics(labels["test"], diffs["test"], threshold)
    energy = estimate_energy(list(runs["test"].counts), ENERGY_PROFILE, model=cfg.name)
    row = {
        "seed": seed,
        "val_auc": clinical_metrics(labels["val"], diffs["val"]).roc_auc,
        "val_auc_float": float_auc["val"],
        "test_auc_chip": test.roc_auc,
        "test_auc_float": float_auc["test"],
        "test_accuracy_chip": test.accuracy,
        "test_sensitivity_chip": test.sensitivity,
        "test_specificity_chip": test.specificity,
        "loihi2_dynamic_j": float(energy.dynamic_j),
        "cores": int(dep.resources.cores),
        "chips": int(dep.resources.chips),
        "neurons": int(dep.resources.total_neurons),
        "best_epoch": result.best_epoch,
        "weight_sparsity": result.weight_sparsity,
        "epochs_run": len([h for h in result.history if not h.get("converted")]),
        "train_seconds": snn_seconds + cnn_seconds,
        "eval_seconds": time.perf_counter() - t1,
        **extra,
    }
    if teacher_path:
        row["teacher"] = file_record(teacher_path)
    if lava_samples > 0:  # the program runs on Lava exactly as on the emulator
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            dep.write(tmp)
            row["lava_parity"] = dep.lava_parity(
                dep.encode(splits.test.images[:lava_samples]), lava_samples
            ).to_dict()
    return row


def summarise(b: Bench, rows: list[dict[str, Any]]) -> dict[str, Any]:
    def stat(key: str) -> tuple[float, float]:
        v = np.asarray([r[key] for r in rows], dtype=np.float64)
        return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0

    out: dict[str, Any] = {
        "name": b.name,
        "lever": b.lever,
        "deployable": bool(model_info(b.model).loihi_deployable),
        "image_size": b.image_size,
        "num_steps": b.num_steps,
        "seeds": [r["seed"] for r in rows],
    }
    for key in (
        "val_auc",
        "test_auc_chip",
        "test_auc_float",
        "test_accuracy_chip",
        "test_sensitivity_chip",
        "test_specificity_chip",
        "loihi2_dynamic_j",
        "train_seconds",
    ):
        mean, sd = stat(key)
        out[f"{key}_mean"], out[f"{key}_sd"] = mean, sd
    out["loihi2_dynamic_j"] = out["loihi2_dynamic_j_mean"]
    out["cores"] = max(r["cores"] for r in rows)
    out["chips"] = max(r["chips"] for r in rows)
    out["train_seconds"] = float(
        sum(r["train_seconds"] for r in rows)
    )  # the whole configuration, all seeds
    out["eval_seconds"] = float(sum(r["eval_seconds"] for r in rows))
    if rows and "conversion" in rows[0]:  # the SNN's input: encoding, and input neurons' threshold
        out["encoding"] = rows[0]["conversion"].get("encoding", "direct")
        out["input_threshold"] = rows[0]["conversion"].get("input_threshold", 0.5)
    if all("source_cnn_test_auc" in r for r in rows):
        out["source_cnn_test_auc_mean"] = float(np.mean([r["source_cnn_test_auc"] for r in rows]))
    out["settings"] = {k: v for k, v in asdict(b).items() if k not in ("name", "lever")}
    out["per_seed"] = rows
    return out


def choose(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Per image size, the deployable configuration with the highest validation AUC (chip)."""
    chosen: dict[str, str] = {}
    for size in sorted({r["image_size"] for r in rows}):
        cands = [r for r in rows if r["image_size"] == size and r["deployable"]]
        if cands:
            chosen[str(size)] = max(cands, key=lambda r: r["val_auc_mean"])["name"]
    return chosen


def write(
    rows: list[dict[str, Any]],
    teachers: dict[str, Any],
    data: dict[int, str],
    started: float,
    out: Path | None = None,
) -> None:
    prov = provenance(
        data=data[28], data_source="pneumoniamnist.npz (28 px), Kermany folders (64 and 128 px)"
    )
    prov["data_64"] = {"folder": data[64], "sha256sums": file_record(Path(data[64]) / "SHA256SUMS")}
    prov["teachers"] = teachers
    prov["wall_seconds"] = time.perf_counter() - started
    prov["protocol"] = (
        "3 seeds per configuration; threshold = Youden on validation chip scores; test evaluated once "
        "per configuration and seed; chosen = max val_auc_mean among deployable configurations"
    )
    write_json(out or OUT, {"configs": rows, "chosen": choose(rows), "provenance": prov})


def markdown_table(doc: dict[str, Any]) -> str:
    """The README's table: one row per configuration, mean +- sd over seeds."""
    lines = [
        "| config | lever | px | T | val AUC | test AUC chip | test AUC float | acc / sens / spec (chip) "
        "| Loihi 2 dyn. µJ | cores / chips | train s (all seeds) |",
        "|" + "---|" * 11,
    ]
    for r in doc["configs"]:
        lines.append(
            f"| `{r['name']}` | {r['lever']} | {r['image_size']} | {r['num_steps']} | {r['val_auc_mean']:.3f} "
            f"| {r['test_auc_chip_mean']:.3f} ± {r['test_auc_chip_sd']:.3f} | {r['test_auc_float_mean']:.3f} "
            f"| {r['test_accuracy_chip_mean']:.3f} / {r['test_sensitivity_chip_mean']:.3f} "
            f"/ {r['test_specificity_chip_mean']:.3f} "
            f"| {r['loihi2_dynamic_j'] * 1e6:.1f} | {r['cores']} / {r['chips']} | {r['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="*", help="configuration names to run (default: all, in order)")
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--list", action="store_true")
    p.add_argument(
        "--table", action="store_true", help="print the JSON's configurations as a markdown table"
    )
    p.add_argument("--redo", action="store_true", help="rerun configurations already in the JSON")
    p.add_argument(
        "--lava-samples", type=int, default=2, help="Lava parity samples for seed 0 of each config"
    )
    p.add_argument("--data28", default=DATA[28])
    p.add_argument(
        "--data64",
        default=KERMANY,
        help="the Kermany folders the 64 and 128 px rows are resized from",
    )
    p.add_argument("--out", type=Path, default=OUT, help="the JSON to write (and resume from)")
    p.add_argument(
        "--merge",
        nargs="*",
        type=Path,
        default=None,
        help="only merge these JSON files' configurations into --out (runs split over processes)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    todo = configs()
    if args.table:
        import json

        print(markdown_table(json.loads(args.out.read_text())))
        return 0
    if args.list:
        for b in todo:
            print(b.name, b.lever, b.image_size)
        return 0
    if args.only:
        unknown = set(args.only) - {b.name for b in todo}
        if unknown:
            p.error(f"unknown configuration(s) {', '.join(sorted(unknown))}; --list shows them")
        todo = [b for b in todo if b.name in args.only]
    data = {28: args.data28, 64: args.data64, 128: args.data64}
    import json

    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if args.merge is not None:
        rows = list(previous.get("configs", []))
        teachers = dict(previous.get("provenance", {}).get("teachers", {}))
        for path in args.merge:
            other = json.loads(path.read_text())
            rows = [
                r for r in rows if r["name"] not in {o["name"] for o in other["configs"]}
            ] + other["configs"]
            teachers.update(other.get("provenance", {}).get("teachers", {}))
        order = {b.name: i for i, b in enumerate(configs())}
        rows.sort(key=lambda r: order.get(r["name"], len(order)))
        write(rows, teachers, data, time.perf_counter(), args.out)
        return 0
    rows = [
        r
        for r in previous.get("configs", [])
        if args.redo is False or r["name"] not in {b.name for b in todo}
    ]
    teachers = dict(previous.get("provenance", {}).get("teachers", {}))
    done = {r["name"] for r in rows}
    started = time.perf_counter()
    for b in todo:
        if b.name in done:
            print(f"skip {b.name} (in {args.out.name})", flush=True)
            continue
        per_seed = []
        for seed in args.seeds:
            t0 = time.perf_counter()
            try:
                row = run_seed(
                    b, seed, data, teachers, args.lava_samples if seed == args.seeds[0] else 0
                )
            except Exception as exc:  # noqa: BLE001 - recorded, the benchmark goes on
                print(f"{b.name} seed {seed} FAILED: {type(exc).__name__}: {exc}", flush=True)
                break
            per_seed.append(row)
            print(
                f"{b.name} seed {seed}: val {row['val_auc']:.4f} test chip {row['test_auc_chip']:.4f} "
                f"float {row['test_auc_float']:.4f} {row['loihi2_dynamic_j'] * 1e6:.1f} uJ cores {row['cores']} "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
        if len(per_seed) == len(args.seeds):
            rows.append(summarise(b, per_seed))
            write(rows, teachers, data, started, args.out)
    write(rows, teachers, data, started, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
