"""Which models the Loihi path takes, checked before any work: an SNN the chip can hold
(not a CNN, not a hybrid), image sizes the exporter can build, options with no effect.
"""

from __future__ import annotations

import os
from typing import Any

from neurocxr.errors import ConfigError, ModelKindError, UnsupportedLayerError
from neurocxr.exporters.loihi import to_program
from neurocxr.models import build_model, model_info
from neurocxr.models.loaded import LoadedModel

_EXPORT_REFUSALS: dict[str, str | None] = {}


def check_model_options(
    config: Any, *, size_option: str = "--image-size", encoding_option: str = "--encoding"
) -> None:
    """Refuse, before training, options with no effect on ``config``'s model (an SNN input encoding
    on a CNN) and image sizes a Loihi-deployable SNN could not be exported at (found by building
    the untrained model and exporting it in memory: only structural refusals count)."""

    info = model_info(config.name)
    if info.kind != "snn" and config.encoding != "direct":
        raise ConfigError(
            f"{encoding_option} {config.encoding} has no effect on {config.name!r}, a CNN (it sees the image once); "
            f"leave {encoding_option} at direct, or train an SNN (see `neurocxr models`)"
        )
    if not info.loihi_deployable:
        return

    def refusal(size: int) -> str | None:
        # num_steps = 1: layer structure (what export can refuse) does not depend on the time steps
        cfg = type(config).from_dict({**config.to_dict(), "image_size": size, "num_steps": 1})
        key = repr(sorted(cfg.to_dict().items()))
        if key not in _EXPORT_REFUSALS:  # cached: a sweep grid checks one structure for many seeds
            try:
                to_program(LoadedModel(build_model(cfg).eval(), cfg, {}))
                _EXPORT_REFUSALS[key] = None
            except UnsupportedLayerError as exc:
                _EXPORT_REFUSALS[key] = str(exc)
            except Exception:  # noqa: BLE001  weight-dependent refusals (clipping...) are judged after training
                _EXPORT_REFUSALS[key] = None
        return _EXPORT_REFUSALS[key]

    why = refusal(config.image_size)
    if why is None:
        return
    near = [
        s for d in range(1, 9) for s in (config.image_size - d, config.image_size + d) if s >= 8
    ]
    fits = next((s for s in near if refusal(s) is None), None)
    hint = f" (e.g. {size_option} {fits})" if fits is not None else ""
    raise ConfigError(
        f"{size_option} {config.image_size}: {config.name!r} could not be exported to Loihi after training ({why}); "
        f"choose a size it can export{hint}"
    )


def _source_name(source: Any, model: Any) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else f"model {model.name!r}"


def check_snn_for_chip(loaded: Any, source: Any, role: str) -> None:
    """Refuse a CNN where a Loihi SNN is needed, naming the command that takes it instead."""

    info = model_info(loaded.config.name)
    what = _source_name(source, loaded)
    if info.kind != "snn":
        where = (
            "export it with --target onnx, or give it to `neurocxr energy SNN.pt` as --baseline"
            if role == "export"
            else f"give it as --baseline next to an SNN checkpoint "
            f"(`neurocxr energy SNN.pt --baseline {what}`)"
        )
        raise ModelKindError(
            f"{what} is a CNN ({loaded.config.name}); Loihi runs spiking networks only: {where}"
        )
    if not info.loihi_deployable:
        raise ModelKindError(
            f"{what} is a {loaded.config.name!r} SNN, which cannot be deployed to Loihi "
            "(see the Loihi column of `neurocxr models`); train a deployable SNN for this"
        )


def check_report_models(snn: Any, snn_source: Any, baselines: list, sources: list) -> list:
    """The energy report's models: ``snn`` a deployable SNN, no baseline a deployable SNN; baselines sharing
    a name get distinct labels (their file names, then #k), so each has its own row and its own
    provenance entry. Returns the baselines, relabelled where needed."""

    check_snn_for_chip(snn, snn_source, "energy")
    for b, src in zip(baselines, sources):
        info = model_info(b.config.name)
        # A spiking model the chip cannot hold (a hybrid) is a fair conventional-hardware baseline;
        # a deployable SNN is not: it would be costed as dense MACs instead of on the chip.
        if info.kind == "snn" and info.loihi_deployable:
            what = _source_name(src, b)
            raise ModelKindError(
                f"--baseline {what} is an SNN ({b.config.name}) that runs on Loihi; baselines run on conventional "
                "hardware (CNNs, or spiking models the chip cannot hold) — report it on its "
                f"own (`neurocxr energy {what}`)"
            )
    taken = {snn.name}
    out = []
    names = [b.name for b in baselines]
    for i, (b, src) in enumerate(zip(baselines, sources)):
        label = b.name
        if names.count(label) > 1 or label in taken:
            from pathlib import Path

            if isinstance(src, (str, os.PathLike)):
                file_names = [Path(x).name for x in sources if isinstance(x, (str, os.PathLike))]
                shown = Path(src).name if file_names.count(Path(src).name) == 1 else str(src)
                label = f"{b.name} ({shown})"
            else:
                label = f"{b.name} #{i + 1}"
        k = 2
        base_label = label
        while label in taken:
            label, k = f"{base_label} #{k}", k + 1
        taken.add(label)
        out.append(
            b if label == b.name else type(b)(b.model, b.config, {**b.metadata, "label": label})
        )
    return out
