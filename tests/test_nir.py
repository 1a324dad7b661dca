"""NIR export/import: exact round trips, hand-made graphs, refusals, the numbers written."""

from __future__ import annotations

import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

from neurocxr.errors import ExportError, UnsupportedLayerError
from neurocxr.exporters.nir import (
    DEFAULT_DT,
    FALLBACK_DT,
    IF_TAU_STEPS,
    from_nir,
    graph_summary,
    pool_of_conv,
    read_nir,
    to_nir,
    write_nir,
)
from neurocxr.models import MODEL_REGISTRY, ModelConfig, SpikingSequential, build_model
from neurocxr.models import neurons as nrn

torch.set_num_threads(1)


def leaky(beta: float = 0.9, threshold: float = 1.0) -> snn.Leaky:
    return snn.Leaky(beta=beta, threshold=threshold, reset_mechanism="zero", reset_delay=False)


def round_trip(
    model: nn.Module, input_shape: tuple[int, ...], tmp_path: Path, **kw
) -> SpikingSequential:
    """PyTorch -> NIR -> file -> NIR -> PyTorch."""
    path = write_nir(to_nir(model, input_shape=input_shape, **kw), tmp_path / "model.nir")
    return from_nir(read_nir(path))


def run(model: nn.Module, x: torch.Tensor):
    with torch.no_grad():
        return model(x, record=True)


def assert_same_spikes(a, b, min_active_layers: int | None = None) -> None:
    assert len(a.spikes) == len(b.spikes)
    active = 0
    for k, (sa, sb) in enumerate(zip(a.spikes, b.spikes)):
        assert sa.shape == sb.shape
        assert torch.equal(sa, sb), f"neuron layer {k}: {(sa != sb).sum().item()} spikes differ"
        active += int(sa.sum().item() > 0)
    if min_active_layers is not None:  # a round trip of silent layers would prove nothing
        assert active >= min_active_layers, f"only {active} neuron layers spiked"


def lively_snn_conv(encoding: str) -> SpikingSequential:
    torch.manual_seed(0)
    model = build_model(ModelConfig(encoding=encoding)).eval()
    with (
        torch.no_grad()
    ):  # random init is too quiet for the deeper layers to spike: scale weights up
        for m in model.layers:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(4.0)
    return model


@pytest.mark.parametrize("encoding", ["direct", "rate"])
def test_snn_conv_round_trip_is_spike_exact(tmp_path: Path, encoding: str) -> None:
    model = lively_snn_conv(encoding)
    torch.manual_seed(1)
    x = torch.rand(12, 3, 1, 28, 28)
    if encoding == "rate":
        x = torch.bernoulli(x)
    back = round_trip(model, (1, 28, 28), tmp_path)
    assert all(
        type(m) in (nrn.LIF, nn.Conv2d, nn.AvgPool2d, nn.Flatten, nn.Linear) for m in back.layers
    )
    a, b = run(model, x), run(back, x)
    n_neuron_layers = 4 if encoding == "direct" else 3
    assert_same_spikes(a, b, min_active_layers=n_neuron_layers)
    assert torch.equal(a.logits, b.logits)
    meta = back.nir_metadata
    assert meta["dt"] == DEFAULT_DT and meta["producer"] == "neurocxr"
    assert meta["neurocxr"] == {
        "encoding": encoding,
        "num_steps": 16,
        "model": "snn_conv",
        "input_neurons": encoding == "direct",
    }
    assert back.config.encoding == encoding and back.config.num_classes == 2


def test_node_names_and_chain(tmp_path: Path) -> None:
    g = to_nir(lively_snn_conv("direct"), input_shape=(1, 28, 28))
    names = [
        "input",
        "lif0",
        "conv1",
        "lif1",
        "pool1",
        "conv2",
        "lif2",
        "pool2",
        "flatten",
        "fc1",
        "lif3",
        "readout",
        "output",
    ]
    assert list(g.nodes) == names
    assert g.edges == list(zip(names[:-1], names[1:]))
    # Portable forms (module docstring): the beta == 1 input neurons as LIF with tau = 2**40 dt, the pool as Conv2d.
    assert isinstance(g.nodes["lif0"], nir.LIF) and np.all(
        g.nodes["lif0"].tau == DEFAULT_DT * IF_TAU_STEPS
    )
    assert isinstance(g.nodes["pool1"], nir.Conv2d) and pool_of_conv(g.nodes["pool1"]) == (
        (2, 2),
        (2, 2),
        (0, 0),
    )
    assert pool_of_conv(g.nodes["conv1"]) is None
    assert isinstance(g.nodes["readout"], nir.Linear) and isinstance(g.nodes["fc1"], nir.Affine)
    rows = graph_summary(g)
    assert [r["name"] for r in rows] == names
    assert rows[names.index("flatten")]["output_shape"] == [32 * 7 * 7]
    assert rows[names.index("lif2")]["input_shape"] == [32, 14, 14]


def test_tau_and_r_written_are_dt_over_one_minus_beta(tmp_path: Path) -> None:
    dt = 2.5e-4
    betas = [0.9, 0.5, 0.0, 0.97]
    model = SpikingSequential(
        [nn.Linear(3, 4), leaky(betas[0], 0.7), nn.Linear(4, 4), nrn.LIF(torch.tensor(betas), 1.25)]
    )
    g = read_nir(write_nir(to_nir(model, input_shape=(3,), dt=dt), tmp_path / "t.nir"))
    lif1, lif2 = g.nodes["lif1"], g.nodes["lif2"]
    beta32 = np.float32(0.9).astype(np.float64)
    np.testing.assert_array_equal(lif1.tau, np.full(4, dt / (1 - beta32)))
    np.testing.assert_array_equal(
        lif1.r, 1.0
    )  # Norse reads r as 1; the threshold carries the gain dt/tau
    np.testing.assert_allclose(lif1.v_threshold, np.float32(0.7) * (1 - beta32), rtol=1e-12)
    np.testing.assert_array_equal(lif1.v_leak, 0.0)
    np.testing.assert_array_equal(lif1.v_reset, 0.0)
    expected = dt / (1 - np.array(betas, dtype=np.float32).astype(np.float64))
    np.testing.assert_array_equal(lif2.tau, expected)
    assert lif2.tau[2] == dt and lif2.r[2] == 1.0  # beta 0: no memory, tau = dt
    assert float(g.metadata["dt"]) == dt
    back = from_nir(g)
    assert torch.equal(back.layers[3].beta, torch.tensor(betas, dtype=torch.float32))
    assert torch.equal(back.layers[1].threshold, torch.full((4,), 0.7))


def test_many_betas_round_trip_bit_exactly() -> None:
    rng = np.random.default_rng(0)
    betas = np.concatenate(
        [rng.random(2000, dtype=np.float32), np.float32([1e-30, 0.5, 0.999999, 1 - 2**-24])]
    )
    model = SpikingSequential([nrn.LIF(torch.from_numpy(betas), 1.0)])
    back = from_nir(to_nir(model, input_shape=(betas.size,)))
    assert torch.equal(back.layers[0].beta, torch.from_numpy(betas))


def test_synaptic_round_trip_is_spike_exact(tmp_path: Path) -> None:
    torch.manual_seed(2)
    syn = dict(reset_mechanism="zero", reset_delay=False)
    model = SpikingSequential(
        [
            nn.Linear(20, 30),
            snn.Synaptic(alpha=0.8, beta=0.9, threshold=1.0, **syn),
            nn.Linear(30, 10),
            snn.Synaptic(alpha=torch.linspace(0.1, 0.95, 10), beta=0.6, threshold=0.5, **syn),
        ],
        readout=nn.Linear(10, 2),
    ).eval()
    g = to_nir(model, input_shape=(20,))
    assert isinstance(g.nodes["cuba1"], nir.CubaLIF)
    np.testing.assert_allclose(
        g.nodes["cuba1"].tau_syn, DEFAULT_DT / (1 - np.float32(0.8)), rtol=1e-15
    )
    back = round_trip(model, (20,), tmp_path)
    assert isinstance(back.layers[1], nrn.CubaLIF)
    x = torch.rand(20, 5, 20)
    a, b = run(model, x), run(back, x)
    assert_same_spikes(a, b, min_active_layers=2)
    assert torch.equal(a.logits, b.logits)


def test_batchnorm_is_folded(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = SpikingSequential(
        [
            nn.Conv2d(1, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            leaky(),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(6 * 4 * 4, 12),
            nn.BatchNorm1d(12),
            leaky(),
            nn.Dropout(0.3),
        ],
        readout=nn.Linear(12, 2, bias=False),
    )
    for bn in (model.layers[1], model.layers[6]):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 3.0)
        bn.bias.data.uniform_(-0.2, 0.5)
    with pytest.raises(ExportError, match="model.eval"):
        to_nir(model, input_shape=(1, 8, 8))
    model.eval()
    back = round_trip(model, (1, 8, 8), tmp_path)
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout)) for m in back.layers)
    x = torch.rand(10, 4, 1, 8, 8)
    with torch.no_grad():  # the folded conv gives the conv+BN currents up to float rounding
        torch.testing.assert_close(
            back.layers[0](x[0]), model.layers[1](model.layers[0](x[0])), rtol=1e-5, atol=1e-5
        )
        # first neuron layer's membranes: same up to rounding; spikes equal wherever v is not at threshold
        cur_a = model.layers[1](model.layers[0](x.flatten(0, 1))).unflatten(0, (10, 4))
        cur_b = back.layers[0](x.flatten(0, 1)).unflatten(0, (10, 4))
        va = vb = None
        beta = 0.9
        for t in range(10):
            va = cur_a[t] if va is None else beta * va + cur_a[t]
            vb = cur_b[t] if vb is None else beta * vb + cur_b[t]
            torch.testing.assert_close(vb, va, rtol=1e-5, atol=1e-5)
            sa, sb = va > 1.0, vb > 1.0
            differ = sa != sb
            assert torch.all((va[differ] - 1.0).abs() < 1e-4)
            va, vb = va * ~sa, vb * ~sb
    a, b = run(model, x), run(back, x)
    assert_same_spikes(a, b, min_active_layers=2)


def norse_box_model() -> SpikingSequential:
    from norse.torch import LIFBoxCell, LIFBoxParameters

    if "snn_norse" in MODEL_REGISTRY:
        torch.manual_seed(4)
        return build_model(ModelConfig(name="snn_norse")).eval()
    p = LIFBoxParameters(tau_mem_inv=torch.tensor(50.0), v_th=torch.tensor(0.3))
    torch.manual_seed(4)
    return SpikingSequential(
        [
            nn.Conv2d(1, 8, 3, padding=1),
            LIFBoxCell(p),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(8 * 14 * 14, 32),
            LIFBoxCell(p),
        ],
        readout=nn.Linear(32, 2),
    ).eval()


def test_norse_lifbox_round_trip(tmp_path: Path) -> None:
    model = norse_box_model()
    g = to_nir(model, input_shape=(1, 28, 28))
    lif = next(n for n in g.nodes.values() if isinstance(n, nir.LIF))
    if (
        "snn_norse" not in MODEL_REGISTRY
    ):  # norse#411: tau must be the real 1/tau_mem_inv, not off by dt
        np.testing.assert_allclose(lif.tau, 1 / 50.0, rtol=1e-6)
        np.testing.assert_array_equal(lif.r, 1.0)
    back = round_trip(model, (1, 28, 28), tmp_path)
    torch.manual_seed(5)
    x = torch.bernoulli(torch.full((16, 3, 1, 28, 28), 0.3))
    a, b = run(model, x), run(back, x)
    # Norse computes v + c(I - v), we compute beta v + c I: equal up to rounding, spikes equal here.
    assert_same_spikes(a, b, min_active_layers=2)
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-5, atol=1e-6)


def test_norse_lifcell_maps_to_cubalif(tmp_path: Path) -> None:
    from norse.torch import LIFCell, LIFParameters

    torch.manual_seed(6)
    p = LIFParameters(
        tau_syn_inv=torch.tensor(200.0), tau_mem_inv=torch.tensor(100.0), v_th=torch.tensor(0.2)
    )
    model = SpikingSequential([nn.Linear(16, 24), LIFCell(p), nn.Linear(24, 8), LIFCell(p)]).eval()
    g = to_nir(model, input_shape=(16,), dt=1e-3)  # the cells' own dt: tau is then the real tau
    node = g.nodes["cuba1"]
    np.testing.assert_allclose(node.tau_syn, 1 / 200.0, rtol=1e-6)
    np.testing.assert_allclose(node.tau_mem, 1 / 100.0, rtol=1e-6)
    back = round_trip(model, (16,), tmp_path)
    x = torch.bernoulli(torch.full((20, 4, 16), 0.4))
    assert_same_spikes(run(model, x), run(back, x), min_active_layers=2)


def reference_nir_run(
    x: np.ndarray, w_conv, b_conv, w_fc, b_fc, w_out, dt
) -> tuple[np.ndarray, np.ndarray]:
    """Forward-Euler NIR semantics in float64 for the hand-made graph below (batch of 1)."""
    T = x.shape[0]
    v_if = np.zeros((2, 4, 4))
    i_syn = np.zeros(5)
    v_lif = np.zeros(5)
    s_if_all, s_lif_all = [], []
    for t in range(T):
        img = np.pad(x[t], ((0, 0), (1, 1), (1, 1)))
        cur = np.zeros((2, 4, 4))
        for o in range(2):
            for r in range(4):
                for c in range(4):
                    cur[o, r, c] = (w_conv[o] * img[:, r : r + 3, c : c + 3]).sum() + b_conv[o]
        v_if = v_if + dt * 1.0 * cur  # IF with r = 1 (a foreign tool's convention)
        s_if = (v_if > 0.05).astype(float)
        v_if[s_if > 0] = 0.0
        pooled = s_if.reshape(2, 2, 2, 2, 2).sum(axis=(2, 4)) * 0.25  # SumPool2d(2) + Scale(1/4)
        h = w_fc @ pooled.reshape(-1) + b_fc
        tau_syn, tau_mem, w_in, r = 2e-3, 4e-3, 3.0, 2.0
        i_syn = i_syn + dt / tau_syn * (-i_syn + w_in * h)
        v_lif = v_lif + dt / tau_mem * (-v_lif + r * i_syn)
        s_lif = (v_lif > 0.4).astype(float)
        v_lif[s_lif > 0] = 0.0
        s_if_all.append(s_if)
        s_lif_all.append(s_lif)
    return np.array(s_if_all), np.array(s_lif_all)


def test_hand_made_graph_imports_and_runs(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    w_conv = rng.normal(6, 6, (2, 1, 3, 3)).astype(np.float32)
    b_conv = rng.normal(0, 1, 2).astype(np.float32)
    w_fc = rng.normal(0.5, 1, (5, 8)).astype(np.float32)
    b_fc = rng.normal(0.3, 0.3, 5).astype(np.float32)
    w_out = rng.normal(0, 1, (2, 5)).astype(np.float32)
    nodes = {
        "in": nir.Input(input_type=np.array([1, 4, 4])),
        "c": nir.Conv2d(
            input_shape=(4, 4),
            weight=w_conv,
            stride=1,
            padding=1,
            dilation=1,
            groups=1,
            bias=b_conv,
        ),
        "if": nir.IF(r=np.ones((2, 4, 4)), v_threshold=np.full((2, 4, 4), 0.05)),
        "sum": nir.SumPool2d(
            kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
        ),
        "scale": nir.Scale(scale=np.full((2, 2, 2), 0.25)),
        "flat": nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=0, end_dim=-1),
        "aff": nir.Affine(weight=w_fc, bias=b_fc),
        "cuba": nir.CubaLIF(
            tau_syn=np.full(5, 2e-3),
            tau_mem=np.full(5, 4e-3),
            r=np.full(5, 2.0),
            v_leak=np.zeros(5),
            v_threshold=np.full(5, 0.4),
            w_in=np.full(5, 3.0),
        ),
        "lin": nir.Linear(weight=w_out),
        "li": nir.LI(tau=np.full(2, np.inf), r=np.ones(2), v_leak=np.zeros(2)),
        "out": nir.Output(output_type=np.array([2])),
    }
    order = list(nodes)
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])), metadata={})
    path = tmp_path / "foreign.nir"
    nir.write(path, graph)  # as another tool would: no dt in the metadata
    with pytest.warns(UserWarning, match="time step"):
        model = from_nir(path)
    assert [type(m) for m in model.layers] == [
        nn.Conv2d,
        nrn.LIF,
        nn.AvgPool2d,
        nn.Flatten,
        nn.Linear,
        nrn.CubaLIF,
    ]
    assert model.readout is not None and model.readout.bias is None
    x = (rng.random((12, 1, 1, 4, 4)) < 0.6).astype(np.float32)
    out = run(model, torch.from_numpy(x))
    ref_if, ref_lif = reference_nir_run(
        x[:, 0].astype(np.float64), w_conv, b_conv, w_fc, b_fc, w_out, FALLBACK_DT
    )
    assert ref_if.sum() > 0 and ref_lif.sum() > 0
    np.testing.assert_array_equal(out.spikes[0][:, 0].numpy(), ref_if)
    np.testing.assert_array_equal(out.spikes[1][:, 0].numpy(), ref_lif)
    expected_logits = (w_out @ ref_lif.T).T.mean(0)
    np.testing.assert_allclose(out.logits[0].numpy(), expected_logits, rtol=1e-5, atol=1e-6)


def test_foreign_graph_nonzero_v_leak_is_refused() -> None:
    g = nir.NIRGraph.from_list(
        nir.Affine(weight=np.ones((3, 2), np.float32), bias=np.zeros(3, np.float32)),
        nir.LIF(tau=np.full(3, 0.01), r=np.ones(3), v_leak=np.full(3, 0.1), v_threshold=np.ones(3)),
    )
    with pytest.raises(UnsupportedLayerError, match="v_leak"):
        from_nir(g, dt=1e-3)


@pytest.mark.parametrize(
    "bad, index, kind, why",
    [
        (nn.MaxPool2d(2), 1, "MaxPool2d", "not linear"),
        (nn.ReLU(), 1, "ReLU", "spik"),
        (snn.Leaky(beta=0.9, reset_mechanism="subtract", reset_delay=False), 1, "Leaky", "reset"),
        (snn.Leaky(beta=0.9, reset_mechanism="zero"), 1, "Leaky", "reset_delay"),
    ],
)
def test_unsupported_layers_are_named(bad: nn.Module, index: int, kind: str, why: str) -> None:
    model = SpikingSequential([nn.Conv2d(1, 2, 3), bad, nn.Flatten()]).eval()
    with pytest.raises(UnsupportedLayerError) as err:
        to_nir(model, input_shape=(1, 8, 8))
    msg = str(err.value)
    assert f"layer {index} ({kind})" in msg and why in msg


def test_gru_sequential_is_refused() -> None:
    model = nn.Sequential(nn.Linear(4, 8), leaky(), nn.GRU(8, 8)).eval()
    with pytest.raises(UnsupportedLayerError, match=r"layer 2 \(GRU\).*Loihi"):
        to_nir(model, input_shape=(4,))


def test_registered_non_deployable_model_is_refused() -> None:
    assert not MODEL_REGISTRY["slimi2025"].loihi_deployable  # its GRU has no Loihi form
    model = build_model(ModelConfig(name="slimi2025")).eval()
    with pytest.raises(UnsupportedLayerError):
        to_nir(model, input_shape=(1, 28, 28))


def test_files_are_written_atomically_and_bad_files_refused(tmp_path: Path) -> None:
    g = to_nir(SpikingSequential([nn.Linear(3, 2), leaky()]), input_shape=(3,))
    path = write_nir(g, tmp_path / "a.nir")
    assert path.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["a.nir"]
    with pytest.raises(ExportError, match="exists"):
        write_nir(g, path, overwrite=False)
    (tmp_path / "junk.nir").write_bytes(b"not hdf5")
    with pytest.raises(ExportError, match="junk.nir"):
        read_nir(tmp_path / "junk.nir")
    with pytest.raises(ExportError, match="does not exist"):
        read_nir(tmp_path / "missing.nir")


def test_dt_argument_used_without_metadata_and_metadata_wins() -> None:
    g = to_nir(SpikingSequential([nn.Linear(3, 2), leaky(0.8)]), input_shape=(3,), dt=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(from_nir(g).layers[1].beta, torch.full((2,), 0.8))
    with pytest.warns(UserWarning, match="dt=0.0001"):
        assert torch.equal(from_nir(g, dt=1e-3).layers[1].beta, torch.full((2,), 0.8))
    g.metadata = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(from_nir(g, dt=1e-4).layers[1].beta, torch.full((2,), 0.8))


def test_foreign_graph_with_scalar_params_follows_euler_semantics() -> None:
    """tau = 10 ms, r = 1, dt = 1 ms, constant input 1: v_t = 1 - 0.9^t first exceeds 0.5 at t = 7."""
    nodes = {
        "i": nir.Input(input_type=np.array([3])),
        "a": nir.Affine(weight=np.eye(3, dtype=np.float32), bias=np.zeros(3, np.float32)),
        "l": nir.LIF(
            tau=np.array(0.01), r=np.array(1.0), v_leak=np.array(0.0), v_threshold=np.array(0.5)
        ),
        "o": nir.Output(output_type=np.array([3])),
    }
    g = nir.NIRGraph(
        nodes=nodes,
        edges=[("i", "a"), ("a", "l"), ("l", "o")],
        metadata={"dt": 1e-3},
        type_check=False,
    )
    model = from_nir(g)
    spikes = run(model, torch.ones(10, 1, 3)).spikes[0][:, 0, 0]
    assert spikes.tolist() == [
        0,
        0,
        0,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
    ]  # reset to zero after the spike at t = 7
