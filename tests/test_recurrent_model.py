"""snn_recurrent (strided conv front end + recurrent CubaLIF layer, snnTorch) trains, exports to NIR and Loihi.

Its model.nir reads back in our own reader with the same spikes and readout (snnTorch 1.0.0 and Norse 1.1.0
read the same recurrent layer with the same readout: tests/test_nir_foreign.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import SMALL, _patches

from neurocxr.data.datasets import DataSplits
from neurocxr.exporters.loihi import to_program
from neurocxr.exporters.nir import from_nir, read_nir, to_nir, write_nir
from neurocxr.exporters.program import RecurrentDenseLayer
from neurocxr.models import MODEL_REGISTRY, ModelConfig, build_model
from neurocxr.models.loaded import LoadedModel, encoded_inputs
from neurocxr.models.neurons import RecurrentNeuron
from neurocxr.training.train import TrainConfig, evaluate, train


@pytest.fixture(scope="module")
def trained() -> tuple:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    splits = DataSplits(_patches(128, 0, "train"), _patches(64, 1, "val"), _patches(64, 2, "test"))
    config = ModelConfig(name="snn_recurrent", **SMALL)
    result = train(config, splits, TrainConfig(epochs=4, batch_size=32, lr=5e-3), progress=False)
    return config, result, splits


def test_registered_and_deployable() -> None:
    info = MODEL_REGISTRY["snn_recurrent"]
    assert info.kind == "snn" and info.loihi_deployable
    model = build_model(ModelConfig(name="snn_recurrent", **SMALL))
    rec = [m for m in model.layers if isinstance(m, RecurrentNeuron)]
    assert len(rec) == 1 and rec[0].recurrent.weight.shape == (32, 32)


def test_trains_and_its_recurrent_weights_learn(trained) -> None:
    config, result, splits = trained
    test = evaluate(result.model, config, splits.test, result.threshold)
    assert test.accuracy >= 0.85, test
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    untrained = build_model(config)
    rec_now = next(
        m for m in result.model.layers if isinstance(m, RecurrentNeuron)
    ).recurrent.weight
    rec_then = next(m for m in untrained.layers if isinstance(m, RecurrentNeuron)).recurrent.weight
    assert not torch.equal(rec_now, rec_then)  # gradients reach the recurrent synapse


def test_exports_to_nir_and_loihi_with_the_same_readout(trained, tmp_path: Path) -> None:
    config, result, splits = trained
    model = result.model.eval()
    graph = read_nir(write_nir(to_nir(model, input_shape=(1, 28, 28)), tmp_path / "model.nir"))
    import nir

    subgraphs = [node for node in graph.nodes.values() if isinstance(node, nir.NIRGraph)]
    assert len(subgraphs) == 1  # the recurrent layer: Input -> neuron <-> Linear, neuron -> Output
    assert {(str(a), str(b)) for a, b in subgraphs[0].edges} == {
        ("input", "lif"),
        ("lif", "w_rec"),
        ("w_rec", "lif"),
        ("lif", "output"),
    }
    back = from_nir(graph)
    x = encoded_inputs(config, splits.test.images[:8])
    with torch.no_grad():
        ours, theirs = model(x, record=True), back(x, record=True)
    for a, b in zip(ours.spikes, theirs.spikes):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(ours.readout_steps, theirs.readout_steps, rtol=1e-5, atol=1e-5)
    # Loihi: a dense_rec layer, and the chip's decisions follow the float model's
    _, program = to_program(LoadedModel(model=model, config=config))
    assert any(isinstance(layer, RecurrentDenseLayer) for layer in program.layers)
    from neurocxr.hardware_sims.emulator import emulate

    images = splits.test.images[:16].numpy()
    run = emulate(program, images)
    rec_k = next(
        k for k, layer in enumerate(program.layers) if isinstance(layer, RecurrentDenseLayer)
    )
    assert run.counts[rec_k].recurrent_synaptic_ops.sum() > 0
    with torch.no_grad():
        float_pred = model(encoded_inputs(config, splits.test.images[:16])).logits.argmax(1).numpy()
    assert np.mean(run.predictions() == float_pred) >= 0.75


@pytest.mark.lava
def test_exported_recurrent_model_emulator_equals_lava(trained, tmp_path: Path) -> None:
    from test_lava_parity import assert_identical

    from neurocxr.exporters.netx import write_netx
    from neurocxr.hardware_sims.emulator import emulate
    from neurocxr.hardware_sims.lava import run_lava

    config, result, splits = trained
    _, program = to_program(LoadedModel(model=result.model.eval(), config=config))
    path = write_netx(program, tmp_path / "model.net")
    images = splits.test.images[:3].numpy()
    emu = emulate(program, images, record=True)
    assert_identical(
        emu, run_lava(path, images, num_steps=program.num_steps, program=program, record=True)
    )
