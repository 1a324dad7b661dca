"""neurocxr: train spiking chest X-ray classifiers, deploy them to Loihi 2, and compare energy honestly.

The public API (imported lazily so `import neurocxr` stays light):

- ``neurocxr.load(path)`` -> LoadedModel (model, config, metadata) from a checkpoint
- ``neurocxr.Deployment.from_checkpoint(path)`` (or ``.from_nir`` / ``.from_netx``) -> the deployment
  object: program, graph, resources, ``run(images, backend=...)``, operating point, counts, energy
- ``neurocxr.train(...)`` / ``neurocxr.evaluate(...)``
- ``neurocxr.export_loihi(model, out_dir)`` -> LoihiExport (NIR graph, LoihiProgram, netx file, parity report)
- ``neurocxr.emulate(program, inputs)`` -> RunResult (spikes, readout, per-layer counts; bit-exact with Lava)
- ``neurocxr.estimate_energy(counts, profile)`` -> EnergyEstimate
- ``neurocxr.energy_report(checkpoint, baselines=[...])`` -> Report (report.html + report.json)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("load", "train", "evaluate", "export_loihi", "emulate", "estimate_energy", "energy_report", "demo")

__all__ = list(_API) + ["Deployment", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        from neurocxr import api

        return getattr(api, name)
    if name == "Deployment":
        from neurocxr.deployment import Deployment

        return Deployment
    raise AttributeError(f"module 'neurocxr' has no attribute {name!r}")
