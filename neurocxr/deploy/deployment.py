"""The deployment object: one SNN on Loihi 2, built once, used by every stage after training.

    dep = Deployment.from_checkpoint("runs/demo/snn.pt")   # or .from_nir("m.nir", dt=1e-4) / .from_netx("m.net")
    x = dep.encode(images)                                 # one encoding per image set, shared below
    run = dep.run(x)                                       # backend="emulator" (default) or "lava"
    op = dep.operating_point(val_images, val_labels)       # the chip's threshold, chosen on validation
    energy = dep.energy(run, ["loihi", "loihi2"])          # counts x device profiles

A `Deployment` holds the `LoihiProgram` (what runs), the NIR graph it came from, the resources it
occupies and typed per-layer quantisation records (`LayerQuant`). Backends are chosen by name as
Lava picks a ProcessModel by tag: the program says what, the backends (`BACKENDS`) say how.
Export (`neurocxr.deploy.export.export_loihi`), NIR-file export (`neurocxr.deploy.nir_file`), the energy
report (`neurocxr.report.stage`), a sweep trial (`neurocxr.sweep`) and the clinical evaluation
(`neurocxr.evaluation.common`) all go through it; their results crossing module boundaries are the
dataclasses below (`OperatingPoint`, `ParityReport`, `GraphParityReport`, `LavaParity`,
`ExportReport`), turned into JSON by `neurocxr.fileio`.

The chip's decision rule is defined once, in `OperatingPoint`: the readout difference
``d = score[pneumonia] - score[normal]`` (integer readout membrane, or output spike counts) is
compared with a threshold chosen on validation by the model's own threshold rule. The same
threshold is also given on the chip-score scale (`chip_scores`, comparable with the float model's
softmax probability).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from neurocxr.energy.estimate import estimate_energy
from neurocxr.errors import NeurocxrError, SimulationError
from neurocxr.exporters.layer_quant import LayerQuant, layer_quants
from neurocxr.exporters.loihi import QuantisationOptions, nir_to_program, to_program
from neurocxr.exporters.netx import read_netx, write_netx
from neurocxr.exporters.nir import read_nir, write_nir
from neurocxr.exporters.program import LoihiProgram
from neurocxr.exporters.resources import ResourceEstimate, check_fits, estimate_resources
from neurocxr.hardware_sims.emulator import emulate
from neurocxr.hardware_sims.lava import run_lava
from neurocxr.hardware_sims.results import LayerCounts, RunResult
from neurocxr.metrics import choose_threshold, clinical_metrics
from neurocxr.models.loaded import LoadedModel, encoded_inputs, float_logits, load
from neurocxr.provenance import environment
from neurocxr.validation import check_finite_inputs, images_to_unit_range, show_progress

if TYPE_CHECKING:  # pragma: no cover - typing only
    import nir

    from neurocxr.energy.profiles import DeviceProfile
    from neurocxr.energy.types import EnergyEstimate

THRESHOLD_METHODS = ("youden", "f1", "fixed")
DECISION_RULE_READOUT = "argmax of readout (float: mean over T; chip: integer accumulator)"
LAVA_SIMULATOR = "Lava Loihi2SimCfg(select_tag='fixed_pt')"


# ----------------------------------------------------------------------------------------------
# Scores and the one operating point


def chip_logit_scale(program: LoihiProgram | None) -> float | None:
    """Integer readout units per unit of float logit: 64 (Loihi's weight exponent) x readout
    scale x time steps, because the readout membrane sums round(W * s) x spikes over T steps while
    the float model averages its logits over T. None when the program has no readout."""
    if program is None or not program.has_readout:
        return None
    s = program.layers[-1].quant.get("scale")
    return 64.0 * float(s) * program.num_steps if s else None


def readout_difference(run: RunResult) -> np.ndarray:
    """score[pneumonia] - score[normal] per sample from a RunResult (integers for the readout)."""
    s = np.asarray(run.scores(), dtype=np.float64)
    return s[:, 1] - s[:, 0]


def _score_scale(run: RunResult, program: LoihiProgram | None) -> float:
    # Spike-count outputs (no readout): difference of counts over T steps, as a rate difference.
    return chip_logit_scale(program) or float(max(1, getattr(run, "time_steps", 1) or 1)) / 4.0


def _scores_of_difference(d: np.ndarray, scale: float) -> np.ndarray:
    d = np.asarray(d, dtype=np.float64) - 0.5  # integers: d > 0 <=> class 1 wins strictly
    return 1.0 / (1.0 + np.exp(-np.clip(d / scale, -50, 50)))


def chip_scores(run: RunResult, program: LoihiProgram | None = None) -> np.ndarray:
    """P(pneumonia)-like scores in (0, 1) from a RunResult's integer readout (or spike counts).

    Monotone in (score_pneumonia - score_normal), so ROC-AUC is exact; 0.5 is crossed exactly where
    argmax changes (a tie counts as "normal", as argmax does). The mapping is fixed per program
    (``chip_logit_scale``: sigmoid of the chip's logit difference, on the float model's softmax
    scale), never fitted to the batch, so a threshold chosen on validation scores means the same
    on test scores. Scores saturate for logit differences beyond about 37 (float64), which is
    why decisions use the readout difference (`OperatingPoint.decide`).
    """
    s = run.scores()
    return _scores_of_difference(s[:, 1] - s[:, 0], _score_scale(run, program))


def threshold_method(loaded: LoadedModel | None) -> str:
    """The rule the model's own threshold was chosen by (checkpoint metadata), else Youden."""
    meta = loaded.metadata if loaded is not None else {}
    method = str(meta.get("threshold_method") or "youden").split()[0].lower()
    return method if method in THRESHOLD_METHODS else "youden"


@dataclass(frozen=True)
class OperatingPoint:
    """The chip's decision threshold, chosen on validation by the model's own rule.

    A case is called pneumonia when ``d >= readout_threshold`` (``d``: `readout_difference`);
    ``threshold`` is the same point on the chip-score scale (`chip_scores`), the scale the float
    model's ``float_threshold`` lives on. ``val_metrics`` are the validation metrics at it; the
    ``test_*`` fields are filled by the energy report (`with_test`).
    """

    threshold: float
    readout_threshold: float
    method: str
    float_threshold: float | None
    samples: int
    val_metrics: dict[str, Any]
    rule: str = "youden"
    test_prediction_changed_fraction: float | None = None
    float_test: dict[str, float] | None = None
    chip_test: dict[str, float] | None = None

    @classmethod
    def choose(
        cls,
        run: RunResult,
        program: LoihiProgram | None,
        labels: np.ndarray,
        *,
        rule: str = "youden",
        float_threshold: float | None = None,
    ) -> OperatingPoint:
        """Choose on a validation run: ``rule`` (youden / f1 / fixed) on the readout difference."""
        y = np.asarray(labels)
        d = readout_difference(run)
        readout_threshold = float(choose_threshold(y, d, rule))
        scale = _score_scale(run, program)
        threshold = float(_scores_of_difference(np.array([readout_threshold]), scale)[0])
        scores = _scores_of_difference(d, scale)
        return cls(
            threshold=threshold,
            readout_threshold=readout_threshold,
            method=f"{rule} on the validation split, on the chip's (emulator's) scores",
            float_threshold=float_threshold,
            samples=int(len(y)),
            val_metrics=clinical_metrics(y, scores, threshold).to_dict(),
            rule=rule,
        )

    def decide(self, run: RunResult) -> np.ndarray:
        """1 (pneumonia) where ``d >= readout_threshold``, else 0."""
        return (readout_difference(run) >= self.readout_threshold).astype(np.int64)

    def with_test(
        self,
        *,
        prediction_changed_fraction: float,
        float_test: dict[str, float],
        chip_test: dict[str, float],
    ) -> OperatingPoint:
        return replace(
            self,
            test_prediction_changed_fraction=prediction_changed_fraction,
            float_test=float_test,
            chip_test=chip_test,
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``operating_point`` of the energy report's JSON (the keys it has always had)."""
        out: dict[str, Any] = {
            "threshold": self.threshold,
            "method": self.method,
            "float_threshold": self.float_threshold,
            "samples": self.samples,
            "val_metrics": self.val_metrics,
        }
        if self.test_prediction_changed_fraction is not None:
            out.update(
                test_prediction_changed_fraction=self.test_prediction_changed_fraction,
                float_test=self.float_test,
                chip_test=self.chip_test,
            )
        return out


# ----------------------------------------------------------------------------------------------
# Parity records


@dataclass(frozen=True)
class LavaParity:
    """Emulator vs Lava on the first ``samples`` inputs: every layer's spikes and the readout."""

    samples: int
    identical: bool
    layers_identical: list[bool]
    readout_identical: bool
    lava_seconds: float
    simulator: str = LAVA_SIMULATOR

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "identical": self.identical,
            "layers_identical": list(self.layers_identical),
            "readout_identical": self.readout_identical,
            "lava_seconds": self.lava_seconds,
            "simulator": self.simulator,
        }


@dataclass
class ParityReport:
    """Float model vs the emulator on the same encoded samples (and optionally Lava)."""

    samples: int
    float_accuracy: float
    emulator_accuracy: float
    prediction_changed_fraction: float
    emulator_seconds: float
    decision_rule: str = DECISION_RULE_READOUT
    lava: LavaParity | None = None
    data: str | None = None
    synthetic: bool | None = None
    operating_point: OperatingPoint | None = None
    # the float model at its validation-chosen threshold (P(pneumonia) >= threshold), as `evaluate` decides
    float_threshold_accuracy: float | None = None
    float_threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "samples": self.samples,
            "float_accuracy": self.float_accuracy,
            "emulator_accuracy": self.emulator_accuracy,
            "prediction_changed_fraction": self.prediction_changed_fraction,
            "decision_rule": self.decision_rule,
            "emulator_seconds": self.emulator_seconds,
            "lava": None if self.lava is None else self.lava.to_dict(),
        }
        if self.data is not None:
            out.update(data=self.data, synthetic=bool(self.synthetic))
        if self.operating_point is not None:
            out["operating_point"] = self.operating_point.to_dict()
        if self.float_threshold_accuracy is not None:
            out.update(
                float_threshold_accuracy=self.float_threshold_accuracy,
                float_threshold=self.float_threshold,
            )
        return out


@dataclass
class GraphParityReport:
    """A foreign NIR graph: its float model (`exporters.nir.from_nir`) vs the emulator, per layer."""

    samples: int
    num_steps: int
    layers: list[dict[str, Any]]
    output_agreement: float | None
    decision_rule: str
    emulator_seconds: float
    warnings: list[str]
    float_note: str | None = None
    input: str | None = None
    lava: LavaParity | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "samples": self.samples,
            "num_steps": self.num_steps,
            "layers": self.layers,
            "output_agreement": self.output_agreement,
            "decision_rule": self.decision_rule,
            "emulator_seconds": self.emulator_seconds,
            "warnings": list(self.warnings),
        }
        if self.float_note:
            out["float_note"] = self.float_note
        if self.input is not None:
            out["input"] = self.input
        if self.lava is not None:
            out["lava"] = self.lava.to_dict()
        return out


# ----------------------------------------------------------------------------------------------
# The export report (export_report.json), one builder for checkpoints and NIR files


@dataclass(frozen=True)
class ExportInput:
    kind: str
    encoding: str
    input_scale: float
    num_steps: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "encoding": self.encoding,
            "input_scale": self.input_scale,
            "num_steps": self.num_steps,
        }


@dataclass
class ExportReport:
    """What export_report.json holds; ``config``/``provenance`` for checkpoints, ``source``/
    ``warnings`` for NIR files from other tools."""

    model: str
    export_seconds: float
    input: ExportInput
    layers: list[LayerQuant]
    resources: ResourceEstimate
    parity: ParityReport | GraphParityReport
    files: dict[str, str]
    environment: dict[str, Any]
    target: str = "loihi 2 (lava-dl netx HDF5)"
    config: dict[str, Any] | None = None
    source: dict[str, Any] | None = None
    warnings: list[str] | None = None
    provenance: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        out: dict[str, Any] = {"model": self.model}
        if self.source is not None:
            out["source"] = self.source
        if self.config is not None:
            out["config"] = self.config
        out.update(
            target=self.target,
            export_seconds=self.export_seconds,
            input=self.input.to_dict(),
            layers=[q.to_row() for q in self.layers],
            resources=asdict(self.resources),
            parity=self.parity.to_dict(),
        )
        if self.warnings is not None:
            out["warnings"] = list(self.warnings)
        out.update(files=dict(self.files), environment=self.environment)
        if self.provenance is not None:
            out["provenance"] = self.provenance
        return out


# ----------------------------------------------------------------------------------------------
# Inputs


@dataclass
class EncodedImages:
    """One image set, encoded once: what the chip receives and (lazily) what the float model sees.

    ``float_input`` is the seeded ``[T, B, C, H, W]`` encoding (`neurocxr.models.loaded.encoded_inputs`);
    the chip gets the images themselves (bias input) or that same tensor (spike input), so the float
    model and the emulator always see the same input.
    """

    images: torch.Tensor
    config: Any  # ModelConfig, or None for graphs and netx files without a float model
    seed: int
    _float_input: torch.Tensor | None = field(default=None, repr=False)

    @property
    def samples(self) -> int:
        return int(len(self.images))

    @property
    def float_input(self) -> torch.Tensor:
        if self._float_input is None:
            if self.config is None:
                raise NeurocxrError(
                    "no model config to encode images with; pass spike trains to run()"
                )
            self._float_input = encoded_inputs(self.config, self.images, seed=self.seed)
        return self._float_input

    def chip_input(self, program: LoihiProgram) -> np.ndarray:
        return self.images.numpy() if program.input_kind == "bias" else self.float_input.numpy()


# ----------------------------------------------------------------------------------------------
# Backends: the program says what, a backend says how


def _run_emulator(
    dep: Deployment, x: np.ndarray, *, record: bool, progress: bool, raw_bias: bool = False
) -> RunResult:
    return emulate(dep.program, x, record=record, progress=progress, raw_bias=raw_bias)


def _run_lava(
    dep: Deployment, x: np.ndarray, *, record: bool, progress: bool, raw_bias: bool = False
) -> RunResult:

    if dep.netx_path is not None:
        return run_lava(
            dep.netx_path,
            x,
            num_steps=dep.program.num_steps,
            program=dep.program,
            record=record,
            progress=progress,
            raw_bias=raw_bias,
        )

    with tempfile.TemporaryDirectory(prefix="neurocxr-netx-") as tmp:
        path = write_netx(dep.program, Path(tmp) / "model.net")
        return run_lava(
            path,
            x,
            num_steps=dep.program.num_steps,
            program=dep.program,
            record=record,
            progress=progress,
            raw_bias=raw_bias,
        )


Backend = Callable[..., RunResult]
BACKENDS: dict[str, Backend] = {"emulator": _run_emulator, "lava": _run_lava}


# ----------------------------------------------------------------------------------------------
# The deployment object


@dataclass
class Deployment:
    """A LoihiProgram with everything it came from and everything needed to run and judge it."""

    program: LoihiProgram
    graph: nir.NIRGraph | None = None
    loaded: LoadedModel | None = None
    resources: ResourceEstimate | None = None  # set by the constructors (None: not estimated yet)
    netx_path: Path | None = None
    name: str = ""
    export_seconds: float = 0.0

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.loaded.name if self.loaded is not None else "program"

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(
        cls,
        model: str | Path | nn.Module | LoadedModel,
        *,
        allow_clipping: bool = False,
        num_steps: int | None = None,
    ) -> Deployment:
        """Checkpoint (or model, or LoadedModel) -> NIR graph -> quantised LoihiProgram; refuses a
        program that does not fit the chip. ``num_steps`` runs the same network for fewer/more
        steps (reading out early)."""
        loaded = load(model)
        t0 = time.perf_counter()
        graph, program = to_program(loaded, allow_clipping=allow_clipping, num_steps=num_steps)
        seconds = time.perf_counter() - t0
        program.validate()
        resources = estimate_resources(program)
        check_fits(resources)
        return cls(
            program=program, graph=graph, loaded=loaded, resources=resources, export_seconds=seconds
        )

    @classmethod
    def from_nir(
        cls,
        graph: str | Path | nir.NIRGraph,
        *,
        dt: float | None = None,
        num_steps: int | None = None,
        encoding: str | None = None,
        allow_clipping: bool = False,
        check_fit: bool = True,
    ) -> Deployment:
        """A NIR graph (or .nir file, from any tool) -> LoihiProgram. ``dt``/``num_steps`` as in
        `neurocxr.exporters.loihi.nir_to_program` (the graph's metadata wins; neither -> ExportError).
        ``check_fit=False`` leaves the chip-capacity check (`check_fits`) to the caller."""

        name = "graph"
        if isinstance(graph, (str, Path)):
            name = Path(graph).name
            graph = read_nir(Path(graph))
        t0 = time.perf_counter()
        program = nir_to_program(
            graph,
            encoding=encoding,
            num_steps=None if num_steps is None else int(num_steps),
            dt=dt,
            options=QuantisationOptions(allow_clipping=allow_clipping),
        )
        seconds = time.perf_counter() - t0
        resources = estimate_resources(program)
        if check_fit:
            check_fits(resources)
        return cls(
            program=program, graph=graph, resources=resources, name=name, export_seconds=seconds
        )

    @classmethod
    def from_netx(
        cls, path: str | Path, *, num_steps: int | None = None, input_scale: float | None = None
    ) -> Deployment:
        """A netx HDF5 file (ours or lava-dl's) -> LoihiProgram; Lava runs the file itself."""

        program = read_netx(path, num_steps=num_steps, input_scale=input_scale)
        return cls(
            program=program,
            resources=estimate_resources(program),
            netx_path=Path(path),
            name=Path(path).name,
        )

    # -- what it is ----------------------------------------------------------------------------

    @property
    def layer_quant(self) -> list[LayerQuant]:
        """Typed per-layer quantisation records."""
        return layer_quants(self.program)

    def write(self, folder: str | Path) -> dict[str, Path]:
        """Write model.nir (when there is a graph) and model.net into the existing ``folder``
        (atomically, each file); ``netx_path`` then points at the netx file, which Lava runs."""

        out, files = Path(folder), {}
        if self.graph is not None:
            files["nir"] = write_nir(self.graph, out / "model.nir")
        files["netx"] = write_netx(self.program, out / "model.net")
        self.netx_path = files["netx"]
        return files

    # -- running -------------------------------------------------------------------------------

    def encode(self, images: torch.Tensor | np.ndarray, *, seed: int = 0) -> EncodedImages:
        """Encode ``images`` once for the float model and the chip (rate coding seeded by ``seed``).
        Integer images follow the one pixel rule (`neurocxr.validation.images_to_unit_range`: uint8
        / 255, uint16 / 65535); float images are taken as they are, in [0, 1]."""
        if isinstance(images, torch.Tensor):
            tensor = (
                images
                if images.dtype.is_floating_point
                else torch.from_numpy(self._unit_range(images))
            )
        else:
            arr = np.asarray(images)
            tensor = torch.from_numpy(
                np.ascontiguousarray(
                    arr if np.issubdtype(arr.dtype, np.floating) else self._unit_range(arr)
                )
            )
        return EncodedImages(tensor, self.loaded.config if self.loaded is not None else None, seed)

    @staticmethod
    def _unit_range(images: Any) -> np.ndarray:

        return images_to_unit_range(images)

    def chip_input(self, inputs: EncodedImages | np.ndarray | torch.Tensor) -> np.ndarray:
        if isinstance(inputs, EncodedImages):
            return inputs.chip_input(self.program)
        if isinstance(inputs, torch.Tensor):
            return inputs.detach().cpu().numpy()
        return np.asarray(inputs)

    def run(
        self,
        inputs: EncodedImages | np.ndarray | torch.Tensor,
        *,
        backend: str = "emulator",
        record: bool = False,
        progress: bool = False,
        raw_bias: bool = False,
    ) -> RunResult:
        """Run a batch on ``backend`` ("emulator": bit-exact, fast; "lava": Lava's fixed_pt models).

        ``inputs``: `encode`'s result, or what the program takes: images ``[B, C, H, W]`` (bias
        input) by the one pixel rule of `neurocxr.emulate` (float in [0, 1], uint8 / 255, uint16 /
        65535; integer input-bias mantissas only with ``raw_bias=True``) or 0/1 spike trains
        ``[T, B, ...]`` (spike input)."""
        try:
            runner = BACKENDS[backend]
        except KeyError:
            raise SimulationError(
                f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}"
            ) from None
        return runner(
            self, self.chip_input(inputs), record=record, progress=progress, raw_bias=raw_bias
        )

    def scores(self, run: RunResult) -> np.ndarray:
        """Chip scores in (0, 1) (`chip_scores`)."""
        return chip_scores(run, self.program)

    def float_logits(self, images: torch.Tensor, *, seed: int = 0) -> np.ndarray:
        """Logits of the float model (`neurocxr.models.loaded.float_logits`)."""

        return float_logits(self._loaded(), images, seed=seed)

    def _loaded(self) -> LoadedModel:
        if self.loaded is None:
            raise NeurocxrError(f"{self.name} has no float model (built from a graph or netx file)")
        return self.loaded

    # -- judging -------------------------------------------------------------------------------

    def operating_point(
        self,
        images: torch.Tensor | EncodedImages,
        labels: torch.Tensor | np.ndarray,
        *,
        seed: int = 0,
        progress: bool | None = None,
    ) -> OperatingPoint:
        """The chip's decision threshold, chosen on validation ``images`` exactly as the float
        model's was (same rule, on the emulator's scores instead of the float model's), so that
        float-vs-chip differences in sensitivity/specificity come from quantisation only."""

        x = images if isinstance(images, EncodedImages) else self.encode(images, seed=seed)
        run = self.run(x, progress=show_progress(progress))
        y = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        return OperatingPoint.choose(
            run,
            self.program,
            y,
            rule=threshold_method(self.loaded),
            float_threshold=self.loaded.threshold if self.loaded is not None else None,
        )

    def parity(
        self,
        images: torch.Tensor | EncodedImages,
        labels: torch.Tensor | np.ndarray,
        *,
        lava_samples: int = 0,
        seed: int = 0,
        progress: bool | None = None,
    ) -> tuple[ParityReport, RunResult]:
        """Float model vs emulator on ``images``; emulator vs Lava on the first ``lava_samples``
        (needs a netx file: `write` first, or a deployment from one). Returns (report, the
        emulator's RunResult over all images). Both models see the same encoded input."""

        progress = show_progress(progress)
        loaded = self._loaded()
        x = images if isinstance(images, EncodedImages) else self.encode(images, seed=seed)
        if x.samples == 0:
            raise NeurocxrError(
                "parity needs at least one sample; raise --max-samples or use a non-empty split"
            )
        check_finite_inputs(x.images, "images")
        y = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        with torch.no_grad():
            logits = [
                loaded.model(x.float_input[:, start : start + 128]).logits
                for start in range(0, x.samples, 128)
            ]
            all_logits = torch.cat(logits).float()
            float_pred = all_logits.argmax(1).numpy()
            p_pneumonia = torch.softmax(all_logits, 1)[:, 1].numpy()
        threshold = getattr(loaded, "threshold", None)
        at_threshold = (
            float(np.mean((p_pneumonia >= threshold).astype(np.int64) == y))
            if threshold is not None and np.isfinite(threshold)
            else None
        )
        t0 = time.perf_counter()
        emu = self.run(x, progress=progress)
        emu_seconds = time.perf_counter() - t0
        emu_pred = emu.predictions()
        lava = None
        if self.netx_path is not None and lava_samples > 0:
            lava = self.lava_parity(x, lava_samples, progress=progress)
        report = ParityReport(
            samples=int(len(y)),
            float_accuracy=float(np.mean(float_pred == y)),
            emulator_accuracy=float(np.mean(emu_pred == y)),
            prediction_changed_fraction=float(np.mean(float_pred != emu_pred)),
            emulator_seconds=emu_seconds,
            lava=lava,
            float_threshold_accuracy=at_threshold,
            float_threshold=(
                None if at_threshold is None or threshold is None else float(threshold)
            ),
        )
        return report, emu

    def lava_parity(
        self, inputs: EncodedImages | np.ndarray, n: int, *, progress: bool = False
    ) -> LavaParity:
        """Run the first ``n`` samples on Lava and on the emulator; compare every layer's spikes."""
        x_chip = self.chip_input(inputs)
        sub = x_chip[:n] if self.program.input_kind == "bias" else x_chip[:, :n]
        emu = self.run(sub, record=True)
        t0 = time.perf_counter()
        lava = self.run(sub, backend="lava", record=True, progress=progress)
        seconds = time.perf_counter() - t0
        layers_equal = [
            bool(np.array_equal(a, b))
            for a, b in zip(emu.layer_spikes or [], lava.layer_spikes or [])
        ]
        readout_equal = (emu.readout is None and lava.readout is None) or bool(
            emu.readout is not None
            and lava.readout is not None
            and np.array_equal(emu.readout, lava.readout)
        )
        return LavaParity(
            samples=int(n),
            identical=bool(all(layers_equal) and readout_equal and len(layers_equal) > 0),
            layers_identical=layers_equal,
            readout_identical=readout_equal,
            lava_seconds=seconds,
        )

    def energy(
        self,
        run: RunResult | Sequence[LayerCounts],
        profiles: Sequence[str | DeviceProfile],
        *,
        model: str | None = None,
    ) -> list[EnergyEstimate]:
        """Energy per inference of ``run``'s counts on each device profile (mean per sample)."""

        counts = list(run.counts if isinstance(run, RunResult) else run)
        return [
            estimate_energy(counts, p, model=self.name if model is None else model)
            for p in profiles
        ]

    # -- reporting -----------------------------------------------------------------------------

    def export_input(self, encoding: str) -> ExportInput:
        return ExportInput(
            kind=self.program.input_kind,
            encoding=encoding,
            input_scale=self.program.input_scale,
            num_steps=self.program.num_steps,
        )

    def export_report(
        self,
        parity: ParityReport | GraphParityReport,
        *,
        encoding: str,
        files: dict[str, Path] | None = None,
        model: str | None = None,
        config: dict[str, Any] | None = None,
        source: dict[str, Any] | None = None,
        warnings: list[str] | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> ExportReport:
        """The one export report builder (export_report.json / .md), for checkpoints and NIR files."""
        if self.resources is None:
            self.resources = estimate_resources(self.program)
        return ExportReport(
            model=self.name if model is None else model,
            export_seconds=self.export_seconds,
            input=self.export_input(encoding),
            layers=self.layer_quant,
            resources=self.resources,
            parity=parity,
            files={k: str(v) for k, v in (files or {}).items()},
            environment=environment(),
            config=config,
            source=source,
            warnings=warnings,
            provenance=provenance,
        )
