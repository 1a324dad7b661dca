"""neurocxr: train spiking chest X-ray classifiers, deploy them to Loihi 2, and compare energy honestly.

The public API (imported lazily so `import neurocxr` stays light). Every CLI command is one call
with the same options under their Python names; each returns a dataclass and prints nothing:

- ``neurocxr.load(path)`` -> LoadedModel (model, config, metadata) from a checkpoint
- ``neurocxr.Deployment.from_checkpoint(path)`` (or ``.from_nir`` / ``.from_netx``) -> the deployment
  object: program, graph, resources, ``run(images, backend=...)``, operating point, counts, energy
- ``neurocxr.train(...)`` -> TrainSummary (`neurocxr train`)
- ``neurocxr.evaluate(checkpoint, robustness=..., uncertainty=...)`` -> EvaluationResult (`neurocxr evaluate`)
- ``neurocxr.explain(checkpoint, images, out=...)`` -> ExplainResult (`neurocxr explain`)
- ``neurocxr.export(checkpoint_or_nir_file, out=..., target=...)`` -> LoihiExport or OnnxExport (`neurocxr export`)
- ``neurocxr.export_loihi(model, out_dir)`` -> LoihiExport (NIR graph, LoihiProgram, netx file, parity report)
- ``neurocxr.inspect_netx(path)`` -> NetxInspection (`neurocxr netx`)
- ``neurocxr.emulate(program, inputs)`` -> RunResult (spikes, readout, per-layer counts; bit-exact with Lava);
  images by the one pixel rule (float in [0, 1], uint8 / 255, uint16 / 65535), raw bias only with ``raw_bias=True``
- ``neurocxr.estimate_energy(counts, profile)`` -> EnergyEstimate
- ``neurocxr.energy_report(checkpoint, baselines=[...])`` -> Report (report.html + report.json;
  `neurocxr energy`/`report`)
- ``neurocxr.api.sweep(config, out=...)`` -> SweepRun (`neurocxr sweep`; ``neurocxr.sweep`` is the package)
- ``neurocxr.data_info(path)`` -> DataInfo, ``neurocxr.fetch_data(size=...)`` -> FetchedData
  (`neurocxr data info/fetch`)
- ``neurocxr.list_models()`` -> list of ModelSummary (`neurocxr models`)
- ``neurocxr.demo(...)`` -> DemoResult (`neurocxr demo`)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# `sweep` is not among them: `neurocxr.sweep` is the sweep package; its one call is `neurocxr.api.sweep`.
_API = (
    "load",
    "train",
    "evaluate",
    "explain",
    "export",
    "export_loihi",
    "inspect_netx",
    "emulate",
    "estimate_energy",
    "energy_report",
    "data_info",
    "fetch_data",
    "list_models",
    "demo",
)

__all__ = list(_API) + ["Deployment", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        # lazy: neurocxr.api imports this module
        from neurocxr import api

        return getattr(api, name)
    if name == "Deployment":
        # lazy: neurocxr.deploy.deployment imports this module
        from neurocxr.deploy.deployment import Deployment

        return Deployment
    raise AttributeError(f"module 'neurocxr' has no attribute {name!r}")
