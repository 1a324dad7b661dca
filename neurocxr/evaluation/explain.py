"""Explanations of single chest X-rays, for any model:

- CNNs: Grad-CAM (captum ``LayerGradCam``) on the last feature ``nn.Conv2d`` (see
  `neurocxr.evaluation.common.last_conv2d`; ``layer=`` picks another), for the class the model calls
  at its validation threshold; for models with dropout also BayesGrad-CAM: Grad-CAM over
  ``mc_passes`` (default 20) Monte Carlo dropout passes, the mean map as the explanation and the
  per-pixel variance as its uncertainty.
- SNNs: spike-activity maps of every spatial layer (spikes per neuron per step, summed over
  channels) — from the bit-exact Loihi emulator for deployable SNNs (what the chip does), from the
  float model's recorded spikes otherwise — beside Integrated Gradients (captum) of the float model
  through its surrogate gradients, over the encoded input and summed over time steps (for direct
  coding this equals Integrated Gradients over the image).

Maps show positive evidence for the called class (Grad-CAM with ReLU, the positive part of
Integrated Gradients) and are scaled to their own maximum for display; the JSON keeps raw maxima.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from neurocxr.data.datasets import wide_mode_to_unit
from neurocxr.errors import DataError, NeurocxrError
from neurocxr.evaluation.common import (
    chip_program,
    dropout_modules,
    float_logits_of,
    is_snn_model,
    last_conv2d,
    run_chip,
    softmax_positive,
)
from neurocxr.fileio import staged_output, write_json, write_text
from neurocxr.models.loaded import encoded_inputs, forward_model, load
from neurocxr.provenance import file_record
from neurocxr.validation import missing_file_message

DEFAULT_MC_PASSES = 20
IG_STEPS = 16
# Mean per-pixel channel spread (max - min over R, G, B, as a fraction of full scale) above which an
# RGB file is a colour picture rather than an X-ray saved in RGB (those have spread ~0).
MAX_COLOUR_SPREAD = 0.06
CLASS_NAMES = ("normal", "pneumonia")


# ----------------------------------------------------------------------------------------------
# Reading images


def load_xray_image(path: str | Path, image_size: int, in_channels: int = 1) -> torch.Tensor:
    """Read an X-ray-like image file as [C, S, S] floats in [0, 1]: gray (or RGB with equal
    channels), centre-cropped to a square and resized like the Kermany folder loader.

    Raises DataError naming the file when it is missing, not an image, a colour picture, blank,
    binary, a mode we cannot read as gray, or smaller than 8 px."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(missing_file_message(path, "image"))
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("1",):
                raise DataError(
                    f"{path} is a 1-bit black-and-white image, not an X-ray-like grayscale image"
                )
            if mode not in ("L", "LA", "P", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L", "F"):
                raise DataError(
                    f"{path} has colour mode {mode}; give a grayscale or RGB X-ray (PNG/JPEG)"
                )
            w, h = img.size
            if min(w, h) < 8:
                raise DataError(f"{path} is {w}x{h} pixels; an X-ray needs at least 8x8")
            if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                gray = wide_mode_to_unit(
                    img, path
                )  # the one pixel rule: 16-bit / 65535, as the data loaders
            else:
                rgb = np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
                spread = float((rgb.max(-1) - rgb.min(-1)).mean())
                if spread > MAX_COLOUR_SPREAD:
                    raise DataError(
                        f"{path} is a colour image (mean channel spread {spread:.2f} of full scale), not an "
                        "X-ray; give a grayscale chest X-ray (RGB files are accepted when their channels are equal)"
                    )
                gray = np.asarray(img.convert("L"), dtype=np.float64) / 255.0
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(
            f"{path} is not an image file that can be read ({type(exc).__name__}: {exc})"
        ) from exc
    if float(gray.std()) < 1.0 / 255.0:
        raise DataError(f"{path} is blank (a single grey level); nothing in it can be explained")
    s = min(gray.shape)
    top, left = (gray.shape[0] - s) // 2, (gray.shape[1] - s) // 2
    x = torch.from_numpy(gray[top : top + s, left : left + s].astype(np.float32))[None, None]
    if s != image_size:
        x = F.interpolate(
            x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False
        )
    x = x.clamp(0.0, 1.0)[0]
    return x.repeat(in_channels, 1, 1) if in_channels > 1 else x


# ----------------------------------------------------------------------------------------------
# Maps


@dataclass
class MapStats:
    """Summary of one explanation map: its raw maximum and mean and where the maximum is."""

    name: str
    method: str
    note: str
    max: float
    mean: float
    peak_row_col: list[int]  # [row, col] of the maximum

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "method": self.method,
            "note": self.note,
            "max": self.max,
            "mean": self.mean,
            "peak_row_col": self.peak_row_col,
        }


@dataclass
class ExplanationMap:
    """One map at the image's resolution; ``values`` >= 0 (raw scale), ``cmap`` for display."""

    name: str
    method: str
    values: np.ndarray  # [H, W]
    note: str = ""
    cmap: str = "jet"

    def stats(self) -> MapStats:
        v = self.values
        peak = np.unravel_index(int(np.argmax(v)), v.shape) if v.size else (0, 0)
        return MapStats(
            name=self.name,
            method=self.method,
            note=self.note,
            max=float(v.max()) if v.size else 0.0,
            mean=float(v.mean()) if v.size else 0.0,
            peak_row_col=[int(peak[0]), int(peak[1])],
        )


@dataclass
class Explanation:
    """The maps of one image with the model's call on it."""

    label: str  # file name or caption
    image: np.ndarray  # [H, W] gray in [0, 1]
    p_pneumonia: float
    called: int
    threshold: float
    maps: list[ExplanationMap] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.label,
            "p_pneumonia": self.p_pneumonia,
            "called": CLASS_NAMES[self.called],
            "threshold": self.threshold,
            "maps": [m.stats().to_dict() for m in self.maps],
            "notes": list(self.notes),
        }


def _upsample(maps: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """[B, h, w] -> [B, H, W] (bilinear), as numpy float64."""
    m = maps.detach().float().unsqueeze(1)
    if tuple(m.shape[-2:]) != tuple(size):
        m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
    return m[:, 0].double().numpy()


def _grad_cam(
    loaded: Any, images: torch.Tensor, targets: torch.Tensor, layer: str | None = None
) -> torch.Tensor:
    """Grad-CAM maps [B, h, w] (ReLU) on Grad-CAM's Conv2d (see `last_conv2d`), for ``targets``."""
    from captum.attr import LayerGradCam

    _, conv = require_conv(loaded, layer)
    cam = LayerGradCam(lambda x: forward_model(loaded.model, x, loaded.config), conv)
    with torch.enable_grad():
        attr = cam.attribute(
            images.clone().requires_grad_(True), target=targets, relu_attributions=True
        )
    return attr.sum(1).detach()


def require_conv(loaded: Any, layer: str | None = None) -> tuple[str, torch.nn.Conv2d]:
    """(name, layer) of Grad-CAM's Conv2d (see `last_conv2d`); NeurocxrError when the model has none."""
    found = last_conv2d(loaded.model, layer)
    if found is None:
        raise NeurocxrError(
            f"{loaded.name} has no convolutional layer (nn.Conv2d), so Grad-CAM has no feature map to explain; "
            "explanations need a convolutional model"
        )
    return found


def cnn_maps(
    loaded: Any,
    images: torch.Tensor,
    called: np.ndarray,
    *,
    mc_passes: int = DEFAULT_MC_PASSES,
    seed: int = 0,
    layer: str | None = None,
) -> list[list[ExplanationMap]]:
    """Grad-CAM, plus BayesGrad-CAM mean and variance for models with dropout; one list per image."""
    layer_name, _ = require_conv(loaded, layer)
    size = tuple(images.shape[-2:])
    targets = torch.as_tensor(called, dtype=torch.long)
    model = loaded.model.eval()
    out: list[list[ExplanationMap]] = [[] for _ in range(len(images))]
    cam = _upsample(_grad_cam(loaded, images, targets, layer_name), size)
    for i in range(len(images)):
        out[i].append(
            ExplanationMap(
                "Grad-CAM",
                "captum LayerGradCam",
                cam[i],
                f"layer {layer_name}, class {CLASS_NAMES[int(called[i])]}",
            )
        )
    mods = dropout_modules(model)
    if mods and mc_passes > 0:
        if mc_passes < 2:
            raise NeurocxrError(
                f"BayesGrad-CAM needs at least 2 MC-dropout passes, got {mc_passes}"
            )
        maps = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            for m in mods:
                m.train()
            try:
                for _ in range(int(mc_passes)):
                    maps.append(_upsample(_grad_cam(loaded, images, targets, layer_name), size))
            finally:
                model.eval()
        stack = np.stack(maps)  # [P, B, H, W]
        mean, var = stack.mean(0), stack.var(0)
        for i in range(len(images)):
            out[i].append(
                ExplanationMap(
                    "BayesGrad-CAM mean",
                    f"Grad-CAM over {mc_passes} MC-dropout passes",
                    mean[i],
                    f"layer {layer_name}; {len(mods)} dropout module(s) active",
                )
            )
            out[i].append(
                ExplanationMap(
                    "BayesGrad-CAM variance",
                    f"per-pixel variance over {mc_passes} passes",
                    var[i],
                    "high = the explanation is uncertain there",
                    cmap="magma",
                )
            )
    return out


def _integrated_gradients(
    loaded: Any, images: torch.Tensor, targets: torch.Tensor, seed: int
) -> torch.Tensor:
    """Integrated Gradients of the float SNN over its encoded input, summed over time and channels: [B, H, W]."""
    from captum.attr import IntegratedGradients

    model = loaded.model.eval()
    z = (
        encoded_inputs(loaded.config, images, seed=seed).transpose(0, 1).contiguous()
    )  # [B, T, C, H, W]

    def forward(zb: torch.Tensor) -> torch.Tensor:
        return model(zb.transpose(0, 1)).logits

    ig = IntegratedGradients(forward)
    maps = []
    with torch.enable_grad():
        for i in range(len(images)):  # one image at a time: IG batches its n_steps path points
            a = ig.attribute(
                z[i : i + 1],
                baselines=torch.zeros_like(z[i : i + 1]),
                target=int(targets[i]),
                n_steps=IG_STEPS,
            )
            maps.append(a.sum(dim=(1, 2))[0].detach())
    return torch.stack(maps)


def snn_maps(
    loaded: Any, images: torch.Tensor, called: np.ndarray, *, chip: bool = True, seed: int = 0
) -> tuple[list[list[ExplanationMap]], list[str]]:
    """Spike-activity maps (chip or float) and Integrated Gradients; one list per image, plus notes."""
    size = tuple(images.shape[-2:])
    out: list[list[ExplanationMap]] = [[] for _ in range(len(images))]
    notes: list[str] = []
    program, reason = chip_program(loaded) if chip else (None, "chip not requested")
    if program is not None:
        run = run_chip(loaded, program, images, seed=seed, record=True)
        steps = int(run.metadata.get("num_steps", program.num_steps))
        for layer, spikes in zip(program.layers, run.layer_spikes or []):
            if len(layer.shape) != 3:
                continue
            rate = spikes.astype(np.float64).sum(axis=(0, 2)) / (
                steps * layer.shape[0]
            )  # [B, h, w]
            up = _upsample(torch.from_numpy(rate), size)
            for i in range(len(images)):
                out[i].append(
                    ExplanationMap(
                        f"chip spikes: {layer.name}",
                        "Loihi emulator (bit-exact), record=True",
                        up[i],
                        f"{layer.shape[0]}x{layer.shape[1]}x{layer.shape[2]} neurons; "
                        f"spikes per neuron per step, mean over channels",
                        cmap="inferno",
                    )
                )
    else:
        notes.append(f"no chip run: {reason}; spike maps from the float model")

        with torch.no_grad():
            rec = (
                loaded.model(encoded_inputs(loaded.config, images, seed=seed), record=True).spikes
                or []
            )
        for k, s in enumerate(rec):
            if s.dim() != 5:
                continue
            rate = s.double().mean(dim=(0, 2))  # [B, h, w]
            up = _upsample(rate, size)
            for i in range(len(images)):
                out[i].append(
                    ExplanationMap(
                        f"float spikes: neuron layer {k}",
                        "float model, record=True",
                        up[i],
                        f"{s.shape[2]}x{s.shape[3]}x{s.shape[4]} neurons",
                        cmap="inferno",
                    )
                )
        if not any(m for m in out):
            notes.append("the model has no spatial spiking layer to map")
    ig = _upsample(
        _integrated_gradients(loaded, images, torch.as_tensor(called), seed).clamp_min(0.0), size
    )
    for i in range(len(images)):
        out[i].append(
            ExplanationMap(
                "Integrated Gradients",
                f"captum, {IG_STEPS} steps, zero baseline, float model",
                ig[i],
                f"positive evidence for {CLASS_NAMES[int(called[i])]}, summed over time",
            )
        )
    return out, notes


def explain_images(
    loaded: Any,
    images: torch.Tensor,
    labels: Sequence[str] | None = None,
    *,
    mc_passes: int = DEFAULT_MC_PASSES,
    chip: bool = True,
    seed: int = 0,
    layer: str | None = None,
) -> list[Explanation]:
    """Explanations of ``images`` [B, C, H, W] in [0, 1] by ``loaded`` (see the module docstring)."""
    if images.dim() != 4 or len(images) == 0:
        raise NeurocxrError(
            f"images must be a non-empty [B, C, H, W] batch, got shape {tuple(images.shape)}"
        )
    labels = list(labels) if labels is not None else [f"image {i}" for i in range(len(images))]
    p = softmax_positive(float_logits_of(loaded, images, seed=seed))
    called = (p >= loaded.threshold).astype(np.int64)
    notes: list[str] = []
    if is_snn_model(loaded):
        maps, notes = snn_maps(loaded, images, called, chip=chip, seed=seed)
    else:
        maps = cnn_maps(loaded, images, called, mc_passes=mc_passes, seed=seed, layer=layer)
        if not dropout_modules(loaded.model):
            notes.append("no dropout layer: BayesGrad-CAM not computed (Grad-CAM only)")
    return [
        Explanation(
            labels[i],
            images[i].mean(0).numpy().astype(np.float64),
            float(p[i]),
            int(called[i]),
            loaded.threshold,
            maps[i],
            list(notes),
        )
        for i in range(len(images))
    ]


# ----------------------------------------------------------------------------------------------
# Rendering


def render_png(expl: Explanation, model_name: str) -> bytes:
    """The X-ray and each map overlaid on it, side by side, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = 1 + len(expl.maps)
    fig, axes = plt.subplots(1, n, figsize=(2.4 * n, 2.9), squeeze=False)
    ax0 = axes[0][0]
    ax0.imshow(expl.image, cmap="gray", vmin=0, vmax=1)
    ax0.set_title("X-ray", fontsize=8)
    for ax, m in zip(axes[0][1:], expl.maps):
        top = float(m.values.max())
        shown = m.values / top if top > 0 else m.values
        ax.imshow(expl.image, cmap="gray", vmin=0, vmax=1)
        ax.imshow(shown, cmap=m.cmap, alpha=0.5, vmin=0, vmax=1)
        ax.set_title(m.name, fontsize=7)
    for ax in axes[0]:
        ax.axis("off")
    fig.suptitle(
        f"{model_name}: {expl.label} — called {CLASS_NAMES[expl.called]} "
        f"(P(pneumonia) {expl.p_pneumonia:.3f}, threshold {expl.threshold:.3f})",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=100)
    finally:
        plt.close(fig)
    return buf.getvalue()


@dataclass
class ExplanationFigure:
    """A rendered explanation for a report: caption and PNG bytes."""

    caption: str
    png: bytes

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def explanation_figures(
    checkpoint: Any,
    images: torch.Tensor,
    captions: Sequence[str] | None = None,
    *,
    max_images: int = 3,
    mc_passes: int = DEFAULT_MC_PASSES,
    chip: bool = True,
    seed: int = 0,
) -> list[ExplanationFigure]:
    """For the energy report: explanations of the first ``max_images`` of ``images`` [B, C, H, W]
    (e.g. test images) by a checkpoint path or LoadedModel, rendered as PNG figures."""

    loaded = load(checkpoint)
    k = min(int(max_images), len(images))
    caps = list(captions)[:k] if captions is not None else [f"test image {i}" for i in range(k)]
    expls = explain_images(loaded, images[:k], caps, mc_passes=mc_passes, chip=chip, seed=seed)
    return [
        ExplanationFigure(
            f"{e.label}: called {CLASS_NAMES[e.called]} (P(pneumonia) {e.p_pneumonia:.3f}); "
            + "; ".join(f"{m.name} ({m.method})" for m in e.maps),
            render_png(e, loaded.name),
        )
        for e in expls
    ]


def _png_name(index: int, path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem)[:60] or "image"
    return f"{index:02d}_{stem}.png"


def _html_page(
    model_name: str, rows: list[tuple[str, Explanation]], method_notes: list[str]
) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>neurocxr explanations: {esc(model_name)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em;max-width:1400px}img{max-width:100%;border:1px solid #ccc}"
        "table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ddd;padding:3px 6px}</style>",
        "</head><body>",
        f"<h1>Explanations: {esc(model_name)}</h1>",
        "<p>" + " ".join(esc(n) for n in method_notes) + "</p>",
    ]
    for png, e in rows:
        parts.append(f"<h2>{esc(e.label)}</h2>")
        parts.append(
            f"<p>called <b>{esc(CLASS_NAMES[e.called])}</b>; P(pneumonia) {e.p_pneumonia:.4f}; "
            f"threshold {e.threshold:.4f} (chosen on validation)</p>"
        )
        parts.append(f"<img src='{esc(png)}' alt='{esc(e.label)}'>")
        parts.append("<table><tr><th>map</th><th>method</th><th>note</th><th>raw max</th></tr>")
        for m in e.maps:
            s = m.stats()
            parts.append(
                f"<tr><td>{esc(m.name)}</td><td>{esc(m.method)}</td><td>{esc(m.note)}</td><td>{s.max:.4g}</td></tr>"
            )
        parts.append("</table>")
        for n in e.notes:
            parts.append(f"<p><i>{esc(n)}</i></p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


@dataclass
class ExplainResult:
    """What `write_explanations` returns: the model, the files written (PNGs, index.html,
    explanations.json) and one explanation per image."""

    model: str
    files: list[Path]
    explanations: list[Explanation]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "files": self.files, "explanations": self.explanations}


def write_explanations(
    checkpoint: Any,
    image_paths: Sequence[str | Path],
    out: str | Path,
    *,
    mc_passes: int = DEFAULT_MC_PASSES,
    chip: bool = True,
    force: bool = False,
    seed: int = 0,
    layer: str | None = None,
) -> ExplainResult:
    """`neurocxr explain`: read the images (all checked before anything is written), explain them,
    and write one PNG per image, ``index.html`` and ``explanations.json`` into ``out`` atomically."""

    if not image_paths:
        raise NeurocxrError("give at least one image file to explain")
    if mc_passes < 0:
        raise NeurocxrError(f"mc_passes / --mc-passes must be >= 0, got {mc_passes}")
    loaded = load(checkpoint)
    if not is_snn_model(loaded):
        require_conv(loaded, layer)  # refuse before reading images or writing anything
    paths = [Path(p) for p in image_paths]
    images = torch.stack(
        [load_xray_image(p, loaded.config.image_size, loaded.config.in_channels) for p in paths]
    )
    names = [_png_name(i, p) for i, p in enumerate(paths)]
    expls = explain_images(
        loaded,
        images,
        [p.name for p in paths],
        mc_passes=mc_passes,
        chip=chip,
        seed=seed,
        layer=layer,
    )
    method_notes = [__doc__.split("\n\n")[0].replace("\n", " ") if __doc__ else ""]
    files = list(names) + ["index.html", "explanations.json"]
    with staged_output(out, files, force) as stage:
        for name, e in zip(names, expls):
            png = render_png(e, loaded.name)
            (stage / name).write_bytes(png)
        write_text(
            stage / "index.html", _html_page(loaded.name, list(zip(names, expls)), method_notes)
        )

        write_json(
            stage / "explanations.json",
            {
                "model": loaded.name,
                "checkpoint": file_record(checkpoint)
                if isinstance(checkpoint, (str, Path))
                else None,
                "model_config": loaded.config.to_dict(),
                "threshold": loaded.threshold,
                "images": [
                    {**e.to_dict(), "path": str(p), "png": n}
                    for e, p, n in zip(expls, paths, names)
                ],
            },
        )
    out_dir = Path(out)
    return ExplainResult(model=loaded.name, files=[out_dir / f for f in files], explanations=expls)
