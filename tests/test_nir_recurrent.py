"""Recurrent NIR graphs (a LIF/CubaLIF feeding back into itself through its own Linear/Affine) -> netx dense_rec.

Graphs come from snnTorch 1.0's own ``export_to_nir`` (RLeaky, RSynaptic: it writes the recurrence flat,
``lif -> w_rec -> lif``) and by hand in the NIR paper's Braille shape. Lava comparisons carry the ``lava``
marker.
"""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from torch import nn

from neurocxr.errors import UnsupportedLayerError
from neurocxr.exporters.loihi import nir_to_program
from neurocxr.exporters.netx import write_netx
from neurocxr.exporters.nir import from_nir
from neurocxr.exporters.program import DenseLayer, RecurrentDenseLayer, netx_weight_bits
from neurocxr.hardware_sims.emulator import emulate
from neurocxr.models import neurons as nrn

snn = pytest.importorskip("snntorch")
from snntorch.export_nir import export_to_nir  # noqa: E402

DT = 1e-4  # snnTorch's export_to_nir writes with dt = 1e-4


class _Net(nn.Module):
    """Linear 6 -> RLeaky/RSynaptic 5 (all-to-all recurrent Linear) -> Linear 2 -> Leaky 2, reset to zero."""

    def __init__(self, synaptic: bool, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc1 = nn.Linear(6, 5, bias=not synaptic)
        kw = dict(
            threshold=torch.ones(5), linear_features=5, init_hidden=True, reset_mechanism="zero"
        )
        if synaptic:
            # snnTorch 1.0's RSynaptic fails with reset_delay=False and init_hidden (it divides a None spike),
            # so it keeps its one-step-late reset: the graph it writes is the same
            self.lif1 = snn.RSynaptic(alpha=torch.full((5,), 0.5), beta=torch.full((5,), 0.9), **kw)
            with torch.no_grad():
                self.lif1.recurrent.bias.zero_()  # a bias into a CubaLIF current has no Loihi form
        else:
            self.lif1 = snn.RLeaky(
                beta=torch.full((5,), 0.9), reset_delay=False, **kw
            )  # reset at once, as Loihi
        self.fc2 = nn.Linear(5, 2, bias=False)
        self.lif2 = snn.Leaky(
            beta=torch.full((2,), 0.8),
            threshold=torch.ones(2),
            init_hidden=True,
            output=True,
            reset_mechanism="zero",
        )
        with torch.no_grad():
            self.fc1.weight.mul_(3)
            self.fc2.weight.mul_(3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lif2(self.fc2(self.lif1(self.fc1(x))))


def _snntorch_graph(synaptic: bool) -> nir.NIRGraph:
    graph = export_to_nir(_Net(synaptic), torch.zeros(1, 6), ignore_dims=[0])
    assert any(
        isinstance(n, nir.Affine) and name.endswith("w_rec") for name, n in graph.nodes.items()
    )
    return graph


def _spikes(steps: int = 12, batch: int = 6, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((steps, batch, 6)) < 0.4).astype(np.float32)


@pytest.mark.parametrize("synaptic", [False, True], ids=["RLeaky", "RSynaptic"])
def test_snntorch_recurrent_export_becomes_a_recurrent_dense_layer(synaptic: bool) -> None:
    graph = _snntorch_graph(synaptic)
    program = nir_to_program(graph, num_steps=12, dt=DT)
    assert [type(layer) for layer in program.layers[1:]] == [RecurrentDenseLayer, DenseLayer]
    rec = program.layers[1]
    assert rec.weight_rec.shape == (5, 5) and np.any(rec.weight_rec)
    assert netx_weight_bits(rec.joint_weight)[0] <= 8  # one 8-bit grid for both, as netx packs them
    assert rec.quant["recurrent_source"] == "lif1.w_rec"
    # integer weights on one scale: the recurrent matrix keeps its ratio to the input matrix
    w_f = graph.nodes["fc1"].weight
    r_f = graph.nodes["lif1.w_rec"].weight
    ratio = np.abs(rec.weight_rec).max() / np.abs(rec.weight).max()
    assert ratio == pytest.approx(np.abs(r_f).max() / np.abs(w_f).max(), rel=0.05)


@pytest.mark.parametrize("synaptic", [False], ids=["RLeaky"])
def test_float_model_of_the_graph_equals_snntorch(synaptic: bool) -> None:
    """Our reading of the recurrent graph (x[t] + R s[t-1] into the neuron) gives snnTorch's own RLeaky spikes
    (RLeaky with reset_delay=False: the reset to zero at once that NIR's v_reset and Loihi mean)."""
    net = _Net(synaptic)
    graph = export_to_nir(net, torch.zeros(1, 6), ignore_dims=[0])
    graph.metadata["dt"] = DT
    model = from_nir(graph)
    layer = model.layers[1]
    assert isinstance(layer, nrn.RecurrentNeuron)
    x = torch.from_numpy(_spikes())
    fresh = _Net(
        synaptic
    )  # same seed, same weights; its hidden state untouched by the export's trace
    with torch.no_grad():
        theirs = torch.stack([fresh.lif1(fresh.fc1(x[t])) for t in range(x.shape[0])])
    state = None
    mine = []
    with torch.no_grad():
        for t in range(x.shape[0]):
            s, state = nrn.step(layer, model.layers[0](x[t]), state)
            mine.append(s)
    assert theirs.sum() > 0
    torch.testing.assert_close(torch.stack(mine), theirs, rtol=0, atol=0)
    # the whole float model runs it too: spikes recorded per neuron layer
    with torch.no_grad():
        out = model(x, record=True)
    torch.testing.assert_close(out.spikes[0], theirs, rtol=0, atol=0)


def test_braille_shaped_graph_and_emulator_agree_with_the_float_model() -> None:
    """The NIR paper's shape: Affine -> CubaLIF <-> Affine (recurrent) -> Affine -> CubaLIF, dt stated in metadata."""
    rng = np.random.default_rng(1)
    n_in, n_h, n_out, dt = 8, 10, 3, 1e-4

    def cuba(n: int) -> nir.CubaLIF:
        return nir.CubaLIF(
            tau_syn=np.full(n, 2 * dt),
            tau_mem=np.full(n, 10 * dt),
            r=np.full(n, 10.0),
            v_leak=np.zeros(n),
            v_threshold=np.ones(n),
            v_reset=np.zeros(n),
            w_in=np.full(n, 2.0),
        )

    nodes = {
        "input": nir.Input(np.array([n_in])),
        "fc_in": nir.Affine(rng.normal(0.6, 0.5, (n_h, n_in)), np.zeros(n_h)),
        "lif_h": cuba(n_h),
        "fc_rec": nir.Linear(rng.normal(0.0, 0.4, (n_h, n_h))),
        "fc_out": nir.Affine(rng.normal(0.5, 0.5, (n_out, n_h)), np.zeros(n_out)),
        "lif_o": cuba(n_out),
        "output": nir.Output(np.array([n_out])),
    }
    edges = [
        ("input", "fc_in"),
        ("fc_in", "lif_h"),
        ("lif_h", "fc_rec"),
        ("fc_rec", "lif_h"),
        ("lif_h", "fc_out"),
        ("fc_out", "lif_o"),
        ("lif_o", "output"),
    ]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": dt}, type_check=False)
    program = nir_to_program(graph, num_steps=16)
    assert (
        isinstance(program.layers[1], RecurrentDenseLayer) and type(program.layers[2]) is DenseLayer
    )
    x = (np.random.default_rng(3).random((16, 8, n_in)) < 0.5).astype(np.float32)
    out = from_nir(graph)(torch.from_numpy(x), record=True)
    run = emulate(program, x.astype(np.int8))
    float_hidden = float(out.spikes[0].sum())
    emu_hidden = float(run.counts[1].output_spikes.sum())
    assert emu_hidden > 0 and 0.7 < emu_hidden / float_hidden < 1.3
    assert run.counts[1].recurrent_synaptic_ops.sum() > 0


def _graph(nodes: dict, edges: list) -> nir.NIRGraph:
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0}, type_check=False)


def _lif(n: int) -> nir.LIF:
    return nir.LIF(
        tau=np.full(n, 2.0),
        r=np.full(n, 2.0),
        v_leak=np.zeros(n),
        v_threshold=np.ones(n),
        v_reset=np.zeros(n),
    )


def test_skips_branches_and_foreign_cycles_are_refused_naming_what_netx_cannot_hold() -> None:
    rng = np.random.default_rng(0)
    lin = lambda o, i: nir.Linear(rng.normal(0.5, 0.3, (o, i)))  # noqa: E731
    base = {
        "input": nir.Input(np.array([4])),
        "fc1": lin(4, 4),
        "lif1": _lif(4),
        "fc2": lin(4, 4),
        "lif2": _lif(4),
        "fc3": lin(2, 4),
        "lif3": _lif(2),
        "output": nir.Output(np.array([2])),
    }
    chain = [
        ("input", "fc1"),
        ("fc1", "lif1"),
        ("lif1", "fc2"),
        ("fc2", "lif2"),
        ("lif2", "fc3"),
        ("fc3", "lif3"),
        ("lif3", "output"),
    ]
    head = "netx holds a chain of layers where a layer may also feed back into itself (dense_rec); "
    with pytest.raises(UnsupportedLayerError) as info:  # skip: lif1 also feeds fc3
        nir_to_program(
            _graph(
                dict(base, skip=nir.Linear(np.eye(4))), chain + [("lif1", "skip"), ("skip", "fc3")]
            ),
            num_steps=4,
        )
    assert str(info.value).startswith(head + "this graph has a skip from 'lif1' to 'fc3'")
    with pytest.raises(
        UnsupportedLayerError, match=r"this graph branches at 'lif3' into \['extra', 'output'\]"
    ):
        nir_to_program(
            _graph(dict(base, extra=nir.Output(np.array([2]))), chain + [("lif3", "extra")]),
            num_steps=4,
        )
    with pytest.raises(
        UnsupportedLayerError,
        match=r"this graph loops back from 'back' to 'fc2' through several layers",
    ):
        nir_to_program(
            _graph(dict(base, back=lin(4, 4)), chain + [("lif2", "back"), ("back", "fc2")]),
            num_steps=4,
        )


def test_recurrence_around_a_conv_or_input_neurons_is_refused() -> None:
    rng = np.random.default_rng(0)
    conv = nir.Conv2d(
        input_shape=None,
        weight=rng.normal(0.5, 0.2, (2, 1, 3, 3)),
        stride=1,
        padding=1,
        dilation=1,
        groups=1,
        bias=np.zeros(2),
    )
    lif = nir.LIF(
        tau=np.full((2, 4, 4), 2.0),
        r=np.full((2, 4, 4), 2.0),
        v_leak=np.zeros((2, 4, 4)),
        v_threshold=np.ones((2, 4, 4)),
        v_reset=np.zeros((2, 4, 4)),
    )
    nodes = {
        "input": nir.Input(np.array([1, 4, 4])),
        "conv": conv,
        "lif": lif,
        "rec": nir.Linear(np.eye(32)),
        "flat": nir.Flatten(input_type=None, start_dim=0),
        "fc": nir.Linear(rng.normal(0.5, 0.2, (2, 32))),
        "output": nir.Output(np.array([2])),
    }
    edges = [
        ("input", "conv"),
        ("conv", "lif"),
        ("lif", "rec"),
        ("rec", "lif"),
        ("lif", "flat"),
        ("flat", "fc"),
        ("fc", "output"),
    ]
    with pytest.raises(
        UnsupportedLayerError, match="'conv' is a convolution.*only a dense layer can be one"
    ):
        nir_to_program(_graph(nodes, edges), num_steps=4)
    nodes = {
        "input": nir.Input(np.array([3])),
        "lif0": _lif(3),
        "rec": nir.Linear(np.eye(3)),
        "fc": nir.Linear(np.ones((2, 3))),
        "output": nir.Output(np.array([2])),
    }
    edges = [("input", "lif0"), ("lif0", "rec"), ("rec", "lif0"), ("lif0", "fc"), ("fc", "output")]
    with pytest.raises(
        UnsupportedLayerError, match="input neurons 'lif0' feed back into themselves"
    ):
        nir_to_program(_graph(nodes, edges), num_steps=4, encoding="direct")


@pytest.mark.lava
@pytest.mark.parametrize("synaptic", [False, True], ids=["RLeaky", "RSynaptic"])
def test_snntorch_recurrent_graph_emulator_equals_lava(tmp_path: Path, synaptic: bool) -> None:
    from test_lava_parity import assert_identical

    from neurocxr.hardware_sims.lava import run_lava

    program = nir_to_program(_snntorch_graph(synaptic), num_steps=10, dt=DT)
    path = write_netx(program, tmp_path / "r.net")
    x = _spikes(10, 4, seed=5).astype(np.int8)
    emu = emulate(program, x, record=True)
    assert_identical(emu, run_lava(path, x, num_steps=10, program=program, record=True))
    assert emu.counts[1].output_spikes.sum() > 0
