"""Energy: op-count definitions on hand-built networks, profiles, estimates, KerasSpiking mode."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neurocxr.energy.estimate import (
    KSLayer,
    count_cnn_macs,
    estimate_ann_energy,
    estimate_energy,
    estimate_snn_ac_energy,
    keras_layers_from_program,
    keras_spiking_energy,
    keras_spiking_estimate,
)
from neurocxr.energy.neurobench import neurobench_counts, static_metrics, to_layer_counts
from neurocxr.energy.profiles import (
    BUILTIN_PROFILES,
    DeviceProfile,
    get_profile,
    load_profiles,
    register_profile,
    unregister_profile,
)
from neurocxr.energy.timing import truenorth_mapping
from neurocxr.errors import NeurocxrError, ProfileError
from neurocxr.exporters.program import (
    ConvLayer,
    DenseLayer,
    InputLayer,
    LoihiNeuron,
    LoihiProgram,
    ReadoutLayer,
)
from neurocxr.hardware_sims.results import LayerCounts
from neurocxr.models.base import SpikingSequential
from neurocxr.models.neurons import LIF


def conv_net(weight: torch.Tensor, threshold: float = 0.5) -> SpikingSequential:
    """Conv2d(1, C, 3, padding=1, no bias) with given weights, then a LIF (IF: beta 1)."""
    conv = nn.Conv2d(1, weight.shape[0], 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(weight)
    return SpikingSequential([conv, LIF(beta=1.0, threshold=threshold)])


def layer_counts(
    name: str, synops: list[float], updates: list[float], dense: list[float] | None = None
) -> LayerCounts:
    n = len(synops)
    return LayerCounts(
        name=name,
        kind="conv",
        num_neurons=10,
        fan_in=9,
        num_synapses=90,
        time_steps=4,
        input_spikes=np.zeros(n),
        output_spikes=np.zeros(n),
        synaptic_ops=np.asarray(synops, dtype=float),
        dense_synaptic_ops=np.asarray(dense if dense is not None else synops, dtype=float),
        neuron_updates=np.asarray(updates, dtype=float),
    )


# ----------------------------------------------------------------------------------- counting


def test_corner_spike_conv_counts_real_fanout_to_nonzero_weights() -> None:
    # 3 output channels: all weights non-zero; one zero tap the corner never reaches (2,2);
    # one zero tap the corner does reach (0,0) -> 4, 4, 3 effective synops.
    w = torch.ones(3, 1, 3, 3)
    w[1, 0, 2, 2] = 0.0
    w[2, 0, 0, 0] = 0.0
    x = torch.zeros(2, 1, 1, 3, 3)  # T=2, B=1
    x[0, 0, 0, 0, 0] = 1.0  # single spike at the top-left corner, step 0
    entries = neurobench_counts(conv_net(w), x)
    assert len(entries) == 1
    e = entries[0]
    assert e["kind"] == "conv"
    assert e["synaptic_ops"].tolist() == [4 + 4 + 3]
    assert e["input_spikes"].tolist() == [1]
    # Dense: per channel and step the valid taps of a padded 3x3 conv on 3x3: (2+3+2)^2 = 49.
    assert e["dense_synaptic_ops"].tolist() == [49 * 3 * 2]
    assert e["neuron_updates"].tolist() == [3 * 9 * 2]
    assert e["op_type"] == "AC"
    # Each of the 11 non-zero contributions is a 1.0 input above threshold 0.5 -> 11 spikes.
    assert e["output_spikes"].tolist() == [11]
    assert e["activation_sparsity"] == pytest.approx(1 - 11 / 54)


def test_counts_are_per_sample_and_summed_over_steps() -> None:
    w = torch.ones(1, 1, 3, 3)
    x = torch.zeros(3, 2, 1, 3, 3)  # T=3, B=2
    x[:, 0, 0, 1, 1] = 1.0  # sample 0: centre pixel every step -> 9 synops per step
    x[1, 1, 0, 0, 2] = 1.0  # sample 1: one corner spike -> 4 synops
    e = neurobench_counts(conv_net(w), x)[0]
    assert e["synaptic_ops"].tolist() == [27, 4]
    assert e["input_spikes"].tolist() == [3, 1]


def test_dense_layer_counts_and_mac_detection() -> None:
    lin = nn.Linear(4, 3, bias=True)
    with torch.no_grad():
        lin.weight.copy_(
            torch.tensor([[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
        )
        lin.bias.fill_(5.0)  # bias is not a synaptic op
    model = SpikingSequential([lin, LIF(beta=1.0, threshold=100.0)])
    x = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])  # T=1, B=1: inputs 0 and 1 active
    e = neurobench_counts(model, x)[0]
    # input 0 reaches rows 0 and 2; input 1 reaches row 2 only -> 3
    assert e["synaptic_ops"].tolist() == [3]
    assert e["dense_synaptic_ops"].tolist() == [12]
    assert e["num_synapses"] == 6 and e["fan_in"] == 4
    assert e["op_type"] == "AC"
    e_mac = neurobench_counts(model, torch.tensor([[[0.5, 1.0, 0.0, 0.0]]]))[0]
    assert e_mac["op_type"] == "MAC"
    assert e_mac["synaptic_ops"].tolist() == [3]


def test_input_neurons_and_readout_entries() -> None:
    lin = nn.Linear(2, 1, bias=False)
    readout = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        lin.weight.fill_(1.0)
        readout.weight.copy_(torch.tensor([[1.0], [0.0]]))
    model = SpikingSequential(
        [LIF(beta=1.0, threshold=0.5), lin, LIF(beta=1.0, threshold=0.5)], readout=readout
    )
    x = (
        torch.tensor([[1.0, 0.2]]).expand(4, 1, 2).clone()
    )  # T=4: pixel 0 fires every step; pixel 1 at step 2
    entries = neurobench_counts(model, x)
    assert [e["kind"] for e in entries] == ["input", "dense", "dense"]
    inp, hidden, out = entries
    # input neurons: pixel 0 fires at steps 0..3; pixel 1 integrates 0.2/step -> fires at step 2 (0.6 > 0.5)
    assert inp["output_spikes"].tolist() == [5]
    assert inp["synaptic_ops"].tolist() == [0] and inp["neuron_updates"].tolist() == [8]
    assert hidden["synaptic_ops"].tolist() == [5]
    assert hidden["output_spikes"].tolist() == [4]
    # readout: one hidden spike per step reaches one non-zero weight; no neurons
    assert out["synaptic_ops"].tolist() == [4]
    assert out["has_neuron"] is False and out["neuron_updates"].tolist() == [0]
    counts = to_layer_counts(entries)
    assert [c.name for c in counts] == ["layers.0", "layers.1", "readout"]
    assert counts[1].activation_sparsity == pytest.approx(0.0)


def test_static_metrics() -> None:
    lin = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0]]))
    m = static_metrics(SpikingSequential([lin, LIF(0.9, 1.0)]))
    assert m["connection_sparsity"] == pytest.approx(6 / 8)
    assert m["footprint_bytes"] == 8 * 4 + 2 * 4  # 8 fp32 weights + beta, threshold buffers


def test_neurobench_rejects_non_snn() -> None:
    with pytest.raises(NeurocxrError, match="SpikingSequential"):
        neurobench_counts(nn.Linear(2, 2), torch.zeros(1, 1, 2))  # type: ignore[arg-type]


def test_count_cnn_macs_border_correct() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3), nn.Flatten(), nn.Linear(18, 3)
    )
    macs = count_cnn_macs(model, (2, 1, 5, 5))
    # padded conv on 5x5: valid taps per output summed = (2+3+3+3+2)^2 = 169 per channel
    assert macs["0 (Conv2d)"] == 169 * 4
    # unpadded conv 4->2 on 5x5 -> 3x3 outputs x 9 taps x 4 input channels x 2 output channels
    assert macs["2 (Conv2d)"] == 3 * 3 * 9 * 4 * 2
    assert macs["4 (Linear)"] == 18 * 3
    with pytest.raises(NeurocxrError, match="shape"):
        count_cnn_macs(model, (1, 1, 7, 7))


# ----------------------------------------------------------------------------------- cross-check


def _tiny_program_and_model() -> tuple[LoihiProgram, SpikingSequential]:
    """An integer conv (IF neurons) + dense readout, as a LoihiProgram and as a float SNN.

    Loihi with iDecay 4096 / vDecay 0: u = a_in * 64, v += u, spike when v > vTh * 64: the float
    IF neuron with the same integer weights and threshold vTh spikes identically.
    """
    rng = np.random.default_rng(3)
    w_conv = rng.integers(-3, 6, size=(2, 1, 3, 3)).astype(np.int64)
    w_conv[0, 0, 1, 1] = 0
    w_out = rng.integers(-4, 5, size=(3, 2 * 5 * 5)).astype(np.int64)
    v_th = 4
    program = LoihiProgram(
        input_shape=(1, 5, 5),
        input_kind="spikes",
        num_steps=8,
        layers=[
            InputLayer(name="input", shape=(1, 5, 5)),
            ConvLayer(
                name="conv",
                shape=(2, 5, 5),
                neuron=LoihiNeuron(v_th, 4096, 0),
                weight=w_conv,
                padding=(1, 1),
            ),
            ReadoutLayer(name="readout", shape=(3,), weight=w_out, flatten_input=True),
        ],
    )
    program.validate()
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    readout = nn.Linear(50, 3, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w_conv).float())
        readout.weight.copy_(torch.from_numpy(w_out).float())
    model = SpikingSequential(
        [conv, LIF(beta=1.0, threshold=float(v_th)), nn.Flatten()], readout=readout
    )
    return program, model


def _deeper_program_and_model() -> tuple[LoihiProgram, SpikingSequential]:
    """Strided padded conv (IF) -> dense (IF) -> readout, integer weights, as program and float SNN."""
    rng = np.random.default_rng(7)
    w_conv = rng.integers(-2, 5, size=(2, 1, 3, 3)).astype(np.int64)
    w_conv[1, 0, 0, :] = 0
    w_fc = rng.integers(-3, 6, size=(5, 18)).astype(np.int64)
    w_fc[0, :] = 0
    w_out = rng.integers(-4, 5, size=(3, 5)).astype(np.int64)
    program = LoihiProgram(
        input_shape=(1, 6, 6),
        input_kind="spikes",
        num_steps=10,
        layers=[
            InputLayer(name="input", shape=(1, 6, 6)),
            ConvLayer(
                name="conv",
                shape=(2, 3, 3),
                neuron=LoihiNeuron(2, 4096, 0),
                weight=w_conv,
                stride=(2, 2),
                padding=(1, 1),
            ),
            DenseLayer(
                name="fc",
                shape=(5,),
                neuron=LoihiNeuron(3, 4096, 0),
                weight=w_fc,
                flatten_input=True,
            ),
            ReadoutLayer(name="readout", shape=(3,), weight=w_out),
        ],
    )
    program.validate()
    conv = nn.Conv2d(1, 2, 3, stride=2, padding=1, bias=False)
    fc = nn.Linear(18, 5, bias=False)
    readout = nn.Linear(5, 3, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w_conv).float())
        fc.weight.copy_(torch.from_numpy(w_fc).float())
        readout.weight.copy_(torch.from_numpy(w_out).float())
    model = SpikingSequential(
        [conv, LIF(1.0, 2.0), nn.Flatten(), fc, LIF(1.0, 3.0)], readout=readout
    )
    return program, model


@pytest.mark.parametrize("build", [_tiny_program_and_model, _deeper_program_and_model])
def test_pytorch_counts_equal_emulator_counts(build) -> None:
    emulator = importlib.import_module("neurocxr.hardware_sims.emulator")
    program, model = build()
    rng = np.random.default_rng(0)
    steps = program.num_steps
    spikes = (rng.random((steps, 4, *program.input_shape)) < 0.3).astype(np.int8)
    spikes[steps - 3 :] = (
        0  # trailing silent steps: Loihi's one-step-per-layer lag cannot cut spikes off
    )
    run = emulator.emulate(program, spikes)
    ours = neurobench_counts(model, torch.from_numpy(spikes).float())
    theirs = run.counts[1:]  # the emulator also reports the input layer
    assert len(ours) == len(theirs)
    assert sum(int(e["output_spikes"].sum()) for e in ours[:-1]) > 0  # the check is not vacuous
    for mine, emu in zip(ours, theirs):
        for key in ("synaptic_ops", "input_spikes", "output_spikes"):
            assert mine[key].tolist() == np.asarray(getattr(emu, key)).tolist(), (emu.name, key)
        if mine["has_neuron"]:
            assert mine["neuron_updates"].tolist() == np.asarray(emu.neuron_updates).tolist(), (
                emu.name
            )
        assert mine["dense_synaptic_ops"].tolist() == np.asarray(emu.dense_synaptic_ops).tolist(), (
            emu.name
        )


def test_tiny_network_hand_counts() -> None:
    """The cross-check network, counted by hand (independent of the emulator)."""
    program, model = _tiny_program_and_model()
    spikes = torch.zeros(3, 1, 1, 5, 5)
    spikes[0, 0, 0, 0, 0] = 1  # corner: 4 taps per channel
    spikes[1, 0, 0, 2, 2] = 1  # centre: 9 taps per channel
    w = program.layers[1].weight
    expected = sum(
        int(np.count_nonzero(w[c, 0, 1:, 1:])) for c in range(2)
    )  # taps reaching the corner
    expected += int(np.count_nonzero(w))
    entries = neurobench_counts(model, spikes)
    assert entries[0]["synaptic_ops"].tolist() == [expected]
    out_spikes = int(entries[0]["output_spikes"][0])
    # readout: each conv spike reaches its column's non-zero readout weights
    assert 0 <= int(entries[1]["synaptic_ops"][0]) <= 3 * out_spikes


# ----------------------------------------------------------------------------------- profiles


def test_builtin_profiles_carry_sources_and_loihi2_is_marked() -> None:
    for p in BUILTIN_PROFILES.values():
        assert p.source
    loihi = get_profile("loihi")
    assert loihi.energy_per_synop_j == pytest.approx(23.6e-12)
    assert loihi.energy_per_neuron_update_j == pytest.approx(81e-12)
    assert loihi.static_power_w == pytest.approx(0.104)
    assert get_profile("keras-spiking:loihi").energy_per_synop_j == pytest.approx(27.1e-12)
    assert loihi.energy_per_neuron_update_inactive_j == pytest.approx(52e-12)  # Davies 2018 Table 2
    assert "Loihi 1 per-op constants applied to Loihi 2" in get_profile("loihi2").notes
    l2 = get_profile("loihi2")
    assert l2.static_power_w == pytest.approx(
        0.23
    )  # Intel's Loihi 2 board measurement (lava-dl benchmarks)
    assert "0.23 W" in l2.source and "lava-dl" in l2.source
    # Intel's stated Loihi 2 speed-ups over Loihi 1 scale Davies' neuron and spike times; the synaptic op
    # time is Intel's Hala Point peak rate per core (380e12 synapses/s over 140,544 cores)
    assert l2.time_per_neuron_update_s == pytest.approx(
        8.4e-9 / 2
    ) and l2.time_per_spike_s == pytest.approx(2.1e-10)
    assert l2.time_per_synop_s == pytest.approx(140_544 / 380e12) and "Hala Point" in l2.source
    sanafe = get_profile("loihi-sanafe")
    assert (
        sanafe.energy_per_synop_j,
        sanafe.energy_per_neuron_update_j,
        sanafe.energy_per_neuron_update_inactive_j,
    ) == pytest.approx((35.5e-12, 72.8e-12, 51.2e-12))
    assert sanafe.barrier_s == pytest.approx(299e-9)
    assert get_profile("truenorth").energy_per_synop_j == pytest.approx(26e-12)  # Merolla 2014
    assert "3.5 ns" in get_profile("keras-spiking:loihi").notes  # the +3.5 quirk is labelled
    assert all("2015" not in p.source for p in BUILTIN_PROFILES.values())  # Degnan et al. is 2016
    fp32 = get_profile("horowitz45-fp32")
    assert fp32.energy_per_mac_j == pytest.approx(
        4.6e-12
    ) and fp32.energy_per_ac_j == pytest.approx(0.9e-12)


def test_only_loihi2_has_a_synaptic_time_bracket_and_a_bad_one_is_refused() -> None:
    # Loihi 2's slow bound is Loihi 1's synaptic op time (Davies 2018), the same constant as the loihi profile's
    l2 = get_profile("loihi2")
    assert l2.time_per_synop_slow_s == 3.5e-9 == get_profile("loihi").time_per_synop_s
    assert l2.time_per_synop_slow_s > l2.time_per_synop_s
    assert "slow bound" in l2.source and "slow bound" in l2.notes
    assert l2.constants()["time_per_synop_slow_s"] == 3.5e-9
    others = [p for p in BUILTIN_PROFILES.values() if p.name != "loihi2"]
    assert others and all(p.time_per_synop_slow_s is None for p in others)
    assert all("time_per_synop_slow_s" not in p.constants() for p in others)
    # a "slow bound" faster than the point estimate, or without one, is bad input
    with pytest.raises(ProfileError, match="time_per_synop_slow_s >= time_per_synop_s"):
        DeviceProfile(
            "bad",
            "neuromorphic",
            1e-12,
            0.0,
            True,
            "x",
            time_per_synop_s=2e-9,
            time_per_synop_slow_s=1e-9,
        )
    with pytest.raises(ProfileError, match="time_per_synop_slow_s.*give both"):
        DeviceProfile("bad", "neuromorphic", 1e-12, 0.0, True, "x", time_per_synop_slow_s=1e-9)


def test_unknown_profile_name() -> None:
    with pytest.raises(ProfileError, match="unknown device profile 'loihi3'.*loihi2"):
        get_profile("loihi3")


def test_register_profile_and_reject_bad_values() -> None:
    p = DeviceProfile(
        "my-chip", "neuromorphic", 1e-12, 2e-12, True, "my lab notebook", static_power_w=0.01
    )
    register_profile(p)
    try:
        assert get_profile("my-chip") is p
    finally:
        unregister_profile("my-chip")
    with pytest.raises(ProfileError, match="energy_per_synop_j"):
        DeviceProfile("bad", "neuromorphic", -1e-12, 0.0, True, "x")
    with pytest.raises(ProfileError, match="kind"):
        DeviceProfile("bad", "quantum", 1e-12, 0.0, True, "x")  # type: ignore[arg-type]


TOML_OK = """
[[profile]]
name = "lab-loihi2"
kind = "neuromorphic"
energy_per_synop_j = 2e-12
energy_per_neuron_update_j = 5e-12
spiking = true
static_power_w = 0.5
time_per_synop_s = 1e-9
time_per_neuron_update_s = 2e-9
source = "our measurement, 2026"

[[profile]]
name = "lab-gpu"
kind = "conventional"
energy_per_synop_j = 1e-10
energy_per_neuron_update_j = 1e-10
spiking = false
source = "our measurement"
"""


def test_load_profiles_toml_and_json(tmp_path: Path) -> None:
    toml_path = tmp_path / "p.toml"
    toml_path.write_text(TOML_OK)
    profiles = load_profiles(toml_path)
    assert [p.name for p in profiles] == ["lab-loihi2", "lab-gpu"]
    assert profiles[0].static_power_w == 0.5 and profiles[0].spiking is True
    assert profiles[1].static_power_w is None
    data = [
        {
            "name": "j1",
            "kind": "neuromorphic",
            "energy_per_synop_j": 3e-12,
            "energy_per_neuron_update_j": 0,
            "spiking": True,
            "source": "s",
            "notes": "integer 0 is a valid energy",
        },
    ]
    json_path = tmp_path / "p.json"
    json_path.write_text(json.dumps(data))
    (j1,) = load_profiles(json_path, register=True)
    try:
        assert get_profile("j1") == j1 and j1.energy_per_neuron_update_j == 0.0
    finally:
        unregister_profile("j1")
    json_path.write_text(json.dumps({"profile": data}))
    assert load_profiles(json_path)[0].name == "j1"


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda d: d.pop("energy_per_synop_j"),
            r"'lab'.*missing required field\(s\) energy_per_synop_j",
        ),
        (
            lambda d: d.update(energy_per_neuron_update_j=-1e-12),
            r"'lab'.*'energy_per_neuron_update_j'.*>= 0",
        ),
        (
            lambda d: d.update(energy_per_synop_j="23.6 pJ"),
            r"'lab'.*'energy_per_synop_j' must be a number",
        ),
        (lambda d: d.update(static_power_w=True), r"'static_power_w' must be a number"),
        (
            lambda d: d.update(energy_per_synapse=1e-12),
            r"'lab'.*unknown field\(s\) energy_per_synapse",
        ),
        (lambda d: d.update(kind="analog"), r"'lab'.*'kind'"),
        (lambda d: d.update(spiking="yes"), r"'lab'.*'spiking'"),
    ],
)
def test_bad_profiles_name_file_profile_and_field(tmp_path: Path, edit, message: str) -> None:
    d = {
        "name": "lab",
        "kind": "neuromorphic",
        "energy_per_synop_j": 1e-12,
        "energy_per_neuron_update_j": 1e-12,
        "spiking": True,
        "source": "s",
    }
    edit(d)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([d]))
    with pytest.raises(ProfileError, match=message) as info:
        load_profiles(path)
    assert str(path) in str(info.value)


def test_bad_profile_files(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="does not exist"):
        load_profiles(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[[profile]\nname=")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profiles(broken)
    yaml = tmp_path / "p.yaml"
    yaml.write_text("x")
    with pytest.raises(ProfileError, match=r"\.toml or \.json"):
        load_profiles(yaml)
    dup = tmp_path / "dup.toml"
    dup.write_text(TOML_OK + TOML_OK)
    with pytest.raises(ProfileError, match="duplicate profile name"):
        load_profiles(dup)
    other = tmp_path / "other.toml"
    other.write_text("devices = 1\n")
    with pytest.raises(ProfileError, match="unknown top-level key"):
        load_profiles(other)


# ----------------------------------------------------------------------------------- estimates


def test_estimate_energy_hand_computed_loihi() -> None:
    counts = [
        layer_counts("conv", [1000, 3000], [200, 200], dense=[9000, 9000]),
        layer_counts("fc", [10, 30], [20, 20], dense=[500, 500]),
    ]
    est = estimate_energy(counts, "loihi", model="tiny", accuracy=0.9)
    synops, updates = 2000 + 20, 200 + 20  # per-sample means; no spikes in these counts
    dynamic = synops * 23.6e-12 + updates * 81e-12  # split unknown: every update charged as active
    assert est.dynamic_j == pytest.approx(dynamic, rel=1e-12)
    # Parallel timing: one core per layer (10 neurons, 90 synapses); T = 4 steps, L = 2 layers.
    # Busiest core = conv: (2000 x 3.5 ns + 200 x 8.4 ns) / 4 steps; 2 cores = 1 tile -> barrier 113 ns.
    step = (2000 * 3.5e-9 + 200 * 8.4e-9) / 4 + 113e-9
    assert (
        est.timing["busiest_layer"] == "conv"
        and est.timing["cores"] == 2
        and est.timing["chips"] == 1
    )
    assert est.latency_s == pytest.approx((4 + 2) * step, rel=1e-12)
    assert est.throughput_fps == pytest.approx(1 / (4 * step), rel=1e-12)
    assert est.static_j == pytest.approx(0.104 * 4 * step, rel=1e-12)
    assert est.total_j == pytest.approx(dynamic + est.static_j, rel=1e-12)
    assert est.per_layer_j["conv"] == pytest.approx(2000 * 23.6e-12 + 200 * 81e-12)
    assert sum(est.per_layer_j.values()) == pytest.approx(est.dynamic_j)
    assert est.kind == "estimated" and est.accuracy == 0.9 and "Davies" in est.source
    assert est.basis == "chip" and est.scope == "device"
    assert any("upper bound" in f for f in est.footnotes)  # active/inactive split not known here
    # a given latency replaces the model; two chips double the static part only
    two = estimate_energy(counts, "loihi", chips=2, latency_s=1e-3)
    assert two.total_j == pytest.approx(dynamic + 2 * 0.104 * 1e-3)
    # Loihi 2: 0.23 W static per chip -> a total; neuron updates twice as fast as Loihi 1's, synaptic ops
    # at Intel's Hala Point rate per core
    l2 = estimate_energy(counts, "loihi2")
    step2 = (2000 * (140_544 / 380e12) + 200 * 4.2e-9) / 4 + 113e-9
    assert l2.latency_s == pytest.approx((4 + 2) * step2, rel=1e-12)
    assert l2.static_j == pytest.approx(0.23 * 4 * step2, rel=1e-12)
    assert l2.total_j == pytest.approx(dynamic + l2.static_j, rel=1e-12)


def test_active_inactive_split_and_spikes_are_charged_separately() -> None:
    c = layer_counts("conv", [1000], [200])
    c.output_spikes = np.array([50.0])
    c.active_neuron_updates = np.array([120.0])  # type: ignore[attr-defined]
    est = estimate_energy([c], "loihi")
    expect = 1000 * 23.6e-12 + 120 * 81e-12 + 80 * 52e-12 + 50 * 1.7e-12  # Davies 2018 Table 2
    assert est.dynamic_j == pytest.approx(expect, rel=1e-12)
    step = (1000 * 3.5e-9 + 120 * 8.4e-9 + 80 * 5.3e-9 + 50 * 2.1e-9) / 4 + 113e-9
    assert est.timing["step_s"] == pytest.approx(step, rel=1e-12)
    assert not any("upper bound" in f for f in est.footnotes)
    sana = estimate_energy([c], "loihi-sanafe")
    expect = 1000 * 35.5e-12 + 120 * 72.8e-12 + 80 * 51.2e-12 + 50 * (69.3 + 76.8) * 1e-12
    assert sana.dynamic_j == pytest.approx(expect, rel=1e-12)
    assert sana.timing["barrier_s"] == pytest.approx(299e-9)


def test_timing_uses_the_resource_mapping_and_parallel_cores() -> None:
    """A layer spread over more cores runs faster per step; the busiest core sets the pace."""
    from neurocxr.energy.timing import barrier_time, loihi_timing

    program, _ = _deeper_program_and_model()
    n = 1
    counts = [
        LayerCounts(
            "input",
            "input",
            36,
            0,
            0,
            10,
            np.zeros(n),
            np.full(n, 30.0),
            np.zeros(n),
            np.zeros(n),
            np.zeros(n),
        ),
        LayerCounts(
            "conv",
            "conv",
            18,
            9,
            12,
            10,
            np.full(n, 30.0),
            np.full(n, 20.0),
            np.full(n, 5000.0),
            np.full(n, 5000.0),
            np.full(n, 180.0),
        ),
        LayerCounts(
            "fc",
            "dense",
            5,
            18,
            72,
            10,
            np.full(n, 20.0),
            np.full(n, 7.0),
            np.full(n, 100.0),
            np.full(n, 900.0),
            np.full(n, 50.0),
        ),
        LayerCounts(
            "readout",
            "dense_readout",
            3,
            5,
            15,
            10,
            np.full(n, 7.0),
            np.zeros(n),
            np.full(n, 10.0),
            np.full(n, 150.0),
            np.full(n, 30.0),
        ),
    ]
    prof = get_profile("loihi")
    t = loihi_timing(counts, prof, program=program)
    assert "estimate_resources" in t.mapping
    assert [x.layer for x in t.per_layer] == ["conv", "fc", "readout"]  # spike input has no cores
    assert t.busiest_layer == "conv" and t.pipeline_depth == 3 and t.steps_per_sample == 10
    conv = (5000 * 3.5e-9 + 180 * 8.4e-9 + 20 * 2.1e-9) / 10
    assert t.busiest_core_s == pytest.approx(conv, rel=1e-12)
    assert t.latency_s == pytest.approx(13 * (conv + 113e-9), rel=1e-12)
    # barrier grows with tiles from Davies' 113 ns (1 tile) to 465 ns (32 tiles)
    assert barrier_time(prof, 1) == pytest.approx(113e-9) and barrier_time(
        prof, 32
    ) == pytest.approx(465e-9)
    assert 113e-9 < barrier_time(prof, 16) < 465e-9


def test_truenorth_mapping_note() -> None:
    wide = layer_counts("fc", [100], [10])
    wide.fan_in = 784
    est = estimate_energy([wide], "truenorth")
    assert est.dynamic_j == pytest.approx(100 * 26e-12)
    assert est.detail["truenorth_mapping"]["fits"] is False
    assert any("256 inputs per neuron" in f for f in est.footnotes)
    assert estimate_energy([layer_counts("c", [100], [10])], "truenorth").detail[
        "truenorth_mapping"
    ]["fits"]
    mapping = truenorth_mapping([wide])
    assert mapping.fits is False and mapping.too_wide_layers[0].fan_in == 784
    assert mapping.to_dict() == est.detail["truenorth_mapping"]
    assert list(mapping.to_dict()) == ["fits", "too_wide_layers", "min_cores", "note"]
    assert mapping.to_dict()["too_wide_layers"] == [{"layer": "fc", "fan_in": 784}]


def test_estimate_energy_non_spiking_uses_dense_ops_and_no_total() -> None:
    counts = [layer_counts("conv", [1000], [200], dense=[9000])]
    est = estimate_energy(counts, "keras-spiking:gpu")
    assert est.dynamic_j == pytest.approx((9000 + 200) * 0.3e-9)
    assert est.total_j is None and est.latency_s is None
    assert "dense" in est.method


def test_estimates_scale_linearly_with_counts() -> None:
    base = [layer_counts("a", [100, 300], [50, 70]), layer_counts("b", [7], [3])]
    scaled = [layer_counts("a", [300, 900], [150, 210]), layer_counts("b", [21], [9])]
    for name in ("loihi", "spinnaker2", "truenorth", "keras-spiking:cpu"):
        e1, e3 = estimate_energy(base, name), estimate_energy(scaled, name)
        assert e3.dynamic_j == pytest.approx(3 * e1.dynamic_j, rel=1e-12)
        for layer in e1.per_layer_j:
            assert e3.per_layer_j[layer] == pytest.approx(3 * e1.per_layer_j[layer], rel=1e-12)
    # with a fixed latency the static term is unchanged, so total - dynamic stays constant
    t1 = estimate_energy(base, "loihi", latency_s=0.01)
    t3 = estimate_energy(scaled, "loihi", latency_s=0.01)
    assert t3.total_j - t3.dynamic_j == pytest.approx(t1.total_j - t1.dynamic_j)


def test_estimate_energy_errors() -> None:
    with pytest.raises(NeurocxrError, match="no layer counts"):
        estimate_energy([], "loihi")
    with pytest.raises(ProfileError, match="unknown device profile"):
        estimate_energy([layer_counts("a", [1], [1])], "loihi9")
    with pytest.raises(NeurocxrError, match="no samples"):
        estimate_energy([layer_counts("a", [], [])], "loihi")


def test_ann_and_ac_conventions() -> None:
    macs = {"conv1": 676, "fc": 300}
    ann = estimate_ann_energy(macs, "horowitz45-fp32", model="cnn")
    assert ann.dynamic_j == pytest.approx(976 * 4.6e-12)
    assert ann.per_layer_j["fc"] == pytest.approx(300 * 4.6e-12)
    assert "memory traffic" in ann.notes
    assert estimate_ann_energy(macs, "horowitz45-int8").dynamic_j == pytest.approx(976 * 0.23e-12)
    # KerasSpiking's CPU row: one synop is one MAC
    assert estimate_ann_energy(macs, "keras-spiking:cpu").dynamic_j == pytest.approx(976 * 8.6e-9)
    with pytest.raises(ProfileError, match="spiking device"):
        estimate_ann_energy(macs, "loihi")
    counts = [
        layer_counts("conv1", [100], [50], dense=[1000]),
        layer_counts("fc", [40], [5], dense=[400]),
    ]
    # NeuroBench's rule: chip counts are spike-fed in every layer (conv1 included) -> all ACs
    ac = estimate_snn_ac_energy(counts, "horowitz45-fp32")
    assert ac.dynamic_j == pytest.approx(140 * 0.9e-12)
    assert ac.scope == "arithmetic" and ac.detail["per_layer"]["conv1"]["op_type"] == "AC"
    # an analog-fed first layer (op types from NeuroBench counts) is charged as MACs on its effective ops
    mixed = estimate_snn_ac_energy(
        counts, "horowitz45-fp32", op_types=["MAC", "AC"], basis="neurobench"
    )
    assert (
        mixed.dynamic_j == pytest.approx(100 * 4.6e-12 + 40 * 0.9e-12)
        and mixed.basis == "neurobench"
    )
    # the Spikformer convention stays available, labelled
    spikformer = estimate_snn_ac_energy(counts, "horowitz45-fp32", first_layer_mac=True)
    assert spikformer.dynamic_j == pytest.approx(1000 * 4.6e-12 + 40 * 0.9e-12)
    assert "Spikformer" in spikformer.method
    with pytest.raises(NeurocxrError, match="op_types"):
        estimate_snn_ac_energy(counts, op_types=["AC"])


def test_pytorch_counts_feed_the_estimator() -> None:
    w = torch.ones(1, 1, 3, 3)
    x = torch.zeros(1, 1, 1, 3, 3)
    x[0, 0, 0, 1, 1] = 1.0
    counts = to_layer_counts(neurobench_counts(conv_net(w), x))
    est = estimate_energy(counts, "spinnaker2")
    assert est.dynamic_j == pytest.approx(9 * 450e-12 + 9 * 2.19e-9)


# ----------------------------------------------------------------------------------- KerasSpiking


def test_keras_spiking_docstring_example() -> None:
    # keras-spiking's own docstring: Dense(128, relu) on a 784 input -> 8.64e-04 J/inf on cpu
    rows = [KSLayer("input", 0, 0, 0.0), KSLayer("dense", 784 * 128, 128, 0.0)]
    assert keras_spiking_energy(rows, "cpu").total_j == pytest.approx(8.64e-4, rel=1e-3)


def test_keras_spiking_two_layer_network_by_hand() -> None:
    rows = [KSLayer("fc1", 784 * 128, 128, 20.0), KSLayer("fc2", 128 * 10, 10, 50.0)]
    dt, steps = 0.001, 16
    loihi = keras_spiking_energy(rows, "loihi", dt=dt, timesteps=steps)
    e_syn, e_neu = 27.1e-12, 81e-12  # KerasSpiking's loihi row: (23.6 + 3.5) pJ, 81 pJ
    fc1 = e_syn * 100352 * 20.0 * dt * steps + e_neu * 128 * steps
    fc2 = e_syn * 1280 * 50.0 * dt * steps + e_neu * 10 * steps
    assert loihi.layers[0].energy_j == pytest.approx(fc1, rel=1e-12)
    assert loihi.total_j == pytest.approx(fc1 + fc2, rel=1e-12)
    assert loihi.spiking is True
    # non-spiking: one ANN pass, independent of rates and time steps
    gpu = keras_spiking_energy(rows, "gpu", dt=dt, timesteps=steps)
    assert gpu.total_j == pytest.approx(0.3e-9 * (100352 + 128 + 1280 + 10), rel=1e-12)
    faster = [KSLayer(r.name, r.connections, r.neurons, 10 * r.rate_hz) for r in rows]
    assert keras_spiking_energy(faster, "gpu").total_j == pytest.approx(gpu.total_j)
    # doubling dt doubles synop energy on a spiking device (rate in Hz x dt = spikes per step)
    loihi2dt = keras_spiking_energy(rows, "loihi", dt=2 * dt, timesteps=steps)
    assert loihi2dt.synop_j == pytest.approx(2 * loihi.synop_j)
    est = keras_spiking_estimate(loihi, model="m")
    assert list(loihi.to_dict()) == [
        "device",
        "spiking",
        "dt",
        "timesteps",
        "layers",
        "synop_j",
        "neuron_j",
        "total_j",
        "source",
        "method",
    ]
    assert loihi.to_dict()["layers"][1]["connections"] == 1280
    assert est.detail["layers"] == [r.to_dict() for r in loihi.layers]
    assert (
        est.dynamic_j == pytest.approx(loihi.total_j)
        and est.device == "keras-spiking:loihi (KerasSpiking)"
    )
    with pytest.raises(ProfileError, match="unknown device profile"):
        keras_spiking_energy(rows, "tpu")


def test_keras_layers_from_program_and_counts() -> None:
    program, _ = _tiny_program_and_model()
    n = 2
    zeros = np.zeros(n)
    counts = [
        LayerCounts(
            "input", "input", 25, 0, 0, 8, zeros, np.array([10.0, 30.0]), zeros, zeros, zeros
        ),
        LayerCounts(
            "conv",
            "conv",
            50,
            9,
            17,
            8,
            np.array([10.0, 30.0]),
            np.array([40.0, 40.0]),
            zeros,
            zeros,
            np.full(n, 400.0),
        ),
        LayerCounts(
            "readout", "dense", 3, 50, 150, 8, np.array([40.0, 40.0]), zeros, zeros, zeros, zeros
        ),
    ]
    rows = keras_layers_from_program(program, counts, dt=0.001)
    assert [r.connections for r in rows] == [0, 50 * 9, 3 * 50]
    assert [r.neurons for r in rows] == [0, 50, 0]
    # conv: mean 20 spikes over 25 inputs x 8 steps = 0.1 per element-step = 100 Hz at dt 1 ms
    assert rows[1].rate_hz == pytest.approx(100.0)
    assert rows[2].rate_hz == pytest.approx(40 / (50 * 8) / 0.001)
    with pytest.raises(NeurocxrError, match="3 layers"):
        keras_layers_from_program(program, counts[:2])


# ----------------------------------------------------------------------------------- memory-inclusive


def test_access_energy_follows_horowitz_buffer_sizes() -> None:
    from neurocxr.energy.memory import access_energy_64bit

    assert access_energy_64bit(8 * 1024)[0] == pytest.approx(10e-12)
    assert access_energy_64bit(8 * 1024 + 1)[0] == pytest.approx(20e-12)
    assert access_energy_64bit(1024 * 1024)[0] == pytest.approx(100e-12)
    low, high, where = access_energy_64bit(2 * 1024 * 1024)
    assert (low, high) == pytest.approx((1.3e-9, 2.6e-9)) and "DRAM" in where


def test_memory_inclusive_cnn_by_hand() -> None:
    from neurocxr.energy.memory import memory_inclusive_cnn

    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 3 * 3, 2, bias=False)
    )
    est = memory_inclusive_cnn(model, (1, 1, 5, 5), precision="fp32", name="tiny")
    # conv: 3x3 outputs x 9 taps x 2 channels = 162 MACs, 18 weights, 25 in, 18 out
    # fc: 18 x 2 = 36 MACs, 36 weights, 18 in, 2 out. Weights 54 x 4 B < 8 KB, activations < 8 KB: 10 pJ / 64 bit
    arith = (162 + 36) * 4.6e-12
    words = ((18 + 36) * 32 + (25 + 18 + 18 + 2) * 32) / 64
    assert est.dynamic_j == pytest.approx(arith + words * 10e-12, rel=1e-12)
    assert est.detail["arithmetic_j"] == pytest.approx(arith) and est.scope == "memory-inclusive"
    assert est.basis == "cnn" and any("Weight-stationary" in f for f in est.footnotes)
    # the memory term is what the arithmetic-only row leaves out
    ann = estimate_ann_energy(count_cnn_macs(model, (1, 1, 5, 5)), "horowitz45-fp32")
    assert ann.dynamic_j == pytest.approx(arith) and est.dynamic_j > ann.dynamic_j
    # batching shares weight reads; int8 moves a quarter of the bits
    assert memory_inclusive_cnn(model, (1, 1, 5, 5), batch=8).dynamic_j < est.dynamic_j
    assert memory_inclusive_cnn(model, (1, 1, 5, 5), precision="int8").dynamic_j < est.dynamic_j
    with pytest.raises(NeurocxrError, match="precision"):
        memory_inclusive_cnn(model, (1, 1, 5, 5), precision="fp8")


def test_memory_inclusive_cnn_spills_big_weights_to_dram() -> None:
    from neurocxr.energy.memory import memory_inclusive_cnn

    big = nn.Sequential(nn.Flatten(), nn.Linear(1024, 512, bias=False))  # 2 MB of fp32 weights
    est = memory_inclusive_cnn(big, (1, 1, 32, 32))
    assert est.detail["weight_buffer"].startswith("DRAM")
    assert est.detail["memory_j"] >= 1024 * 512 * 32 / 64 * 1.3e-9
    assert est.detail["memory_j_dram_high"] > est.detail["memory_j"]


def test_memory_inclusive_snn_by_hand() -> None:
    from neurocxr.energy.memory import memory_inclusive_snn

    n = 1
    counts = [
        LayerCounts(
            "input",
            "input",
            25,
            0,
            0,
            4,
            np.zeros(n),
            np.full(n, 10.0),
            np.zeros(n),
            np.zeros(n),
            np.zeros(n),
        ),
        LayerCounts(
            "conv",
            "conv",
            18,
            9,
            12,
            4,
            np.full(n, 10.0),
            np.full(n, 6.0),
            np.full(n, 50.0),
            np.full(n, 600.0),
            np.full(n, 72.0),
        ),
        LayerCounts(
            "readout",
            "dense_readout",
            2,
            18,
            30,
            4,
            np.full(n, 6.0),
            np.zeros(n),
            np.full(n, 8.0),
            np.full(n, 144.0),
            np.full(n, 8.0),
        ),
    ]
    est = memory_inclusive_snn(counts, precision="fp32", name="snn")
    arith = (50 + 8) * 0.9e-12  # every chip layer is spike-fed: ACs
    # weights once per inference: (12 + 30) x 32 b. Per step: conv reads 25 input spikes x 1 b, writes 18 spikes,
    # r/w 18 x 32 b membranes; readout reads 18 spikes, r/w 2 x 32 b. 4 steps, all buffers < 8 KB (10 pJ).
    bits = (12 + 30) * 32 + 4 * ((25 + 18 + 2 * 18 * 32) + (18 + 0 + 2 * 2 * 32))
    assert est.dynamic_j == pytest.approx(arith + bits / 64 * 10e-12, rel=1e-12)
    # an analog-fed layer reads full-precision inputs; explicit input sizes (a pooled map) are honoured
    mac = memory_inclusive_snn(counts, op_types=[None, "MAC", "AC"], input_sizes=[None, 25, 9])
    bits_mac = (12 + 30) * 32 + 4 * ((25 * 32 + 18 + 2 * 18 * 32) + (9 + 0 + 2 * 2 * 32))
    assert mac.dynamic_j == pytest.approx(
        50 * 4.6e-12 + 8 * 0.9e-12 + bits_mac / 64 * 10e-12, rel=1e-12
    )
    assert est.detail["arithmetic_j"] == pytest.approx(arith) and est.basis == "chip"
    with pytest.raises(NeurocxrError, match="input_elements"):
        memory_inclusive_snn(counts[1:])
    assert memory_inclusive_snn(counts[1:], input_elements=25).dynamic_j == pytest.approx(
        est.dynamic_j
    )


# ----------------------------------------------------------------------------------- counting bases


def _pooled_program_and_model() -> tuple[LoihiProgram, SpikingSequential]:
    """conv (IF) -> AvgPool 2x2 -> conv (IF) -> readout: float SNN, and the chip program with the pool
    fused into the second conv (4x the kernel area, stride 2), built with exporters.loihi's own fusion."""
    from neurocxr.exporters.loihi import fuse_pool_into_conv

    rng = np.random.default_rng(11)
    w1 = rng.integers(0, 4, size=(2, 1, 3, 3)).astype(np.int64)
    w2 = rng.integers(-1, 4, size=(3, 2, 3, 3)).astype(np.int64)
    w_out = rng.integers(-3, 4, size=(2, 3 * 4 * 4)).astype(np.int64)
    # pooled input = mean of 4 spikes; fused kernel = w2 / 4 per tap -> x4 weights and threshold on the chip
    fused, stride, pad = fuse_pool_into_conv(w2, (2, 2), 1.0, (1, 1), (1, 1))
    program = LoihiProgram(
        input_shape=(1, 8, 8),
        input_kind="spikes",
        num_steps=6,
        layers=[
            InputLayer(name="input", shape=(1, 8, 8)),
            ConvLayer(
                name="conv1",
                shape=(2, 8, 8),
                neuron=LoihiNeuron(2, 4096, 0),
                weight=w1,
                padding=(1, 1),
            ),
            ConvLayer(
                name="conv2",
                shape=(3, 4, 4),
                neuron=LoihiNeuron(4 * 3, 4096, 0),
                weight=np.rint(fused).astype(np.int64),
                stride=stride,
                padding=pad,
            ),
            ReadoutLayer(name="readout", shape=(2,), weight=w_out, flatten_input=True),
        ],
    )
    program.validate()
    conv1 = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    conv2 = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    readout = nn.Linear(48, 2, bias=False)
    with torch.no_grad():
        conv1.weight.copy_(torch.from_numpy(w1).float())
        conv2.weight.copy_(torch.from_numpy(w2).float())
        readout.weight.copy_(torch.from_numpy(w_out).float())
    model = SpikingSequential(
        [conv1, LIF(1.0, 2.0), nn.AvgPool2d(2), conv2, LIF(1.0, 3.0), nn.Flatten()], readout=readout
    )
    return program, model


def test_chip_and_neurobench_bases_differ_by_the_fused_pool_fanout() -> None:
    from neurocxr.energy.bases import compare_bases
    from neurocxr.hardware_sims import emulator

    program, model = _pooled_program_and_model()
    spikes = (torch.rand(6, 3, 1, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    spikes[-3:] = 0  # as in the emulator cross-check: trailing silent steps
    chip = emulator.emulate(program, spikes.numpy().astype(np.int8)).counts
    nb = neurobench_counts(model, spikes)
    cmp = compare_bases(chip, nb)
    conv1, conv2, readout = (row.to_dict() for row in cmp.layers)
    # conv1 is the same layer on both bases, and the fused chip network spikes like the float one
    assert conv1["synaptic_ops_ratio"] == pytest.approx(1.0) and not conv1["pool_fused"]
    assert readout["chip_synaptic_ops"] == pytest.approx(readout["neurobench_synaptic_ops"])
    # conv2: fan-in 2*3*3 = 18 on the pooled map vs 2*6*6 = 72 on the chip -> more ops on the chip
    assert (conv2["neurobench_fan_in"], conv2["chip_fan_in"]) == (18, 72) and conv2["pool_fused"]
    assert conv2["chip_synaptic_ops"] > conv2["neurobench_synaptic_ops"] > 0
    assert cmp.total.synaptic_ops_ratio > 1 and "fused" in cmp.explanations[0]
    assert cmp.layers[1].explanation and cmp.layers[0].explanation is None
    assert "explanation" not in conv1 and conv2["explanation"] == cmp.layers[1].explanation
    assert list(cmp.to_dict()) == ["layers", "total", "explanations"]
    assert cmp.to_dict()["total"]["chip_synaptic_ops"] == cmp.total.chip_synaptic_ops
    # NeuroBench's rule: conv2 reads averaged spikes (multiples of 1/4) -> MACs on the float basis
    assert conv2["neurobench_op_type"] == "MAC" and conv1["neurobench_op_type"] == "AC"
    with pytest.raises(NeurocxrError, match="synaptic layers"):
        compare_bases(chip[:2], nb)


def test_neurobench_basis_matches_the_neurobench_package() -> None:
    """Our NeuroBench-basis counts against neurobench 2.3 itself (installed with --no-deps)."""
    # scripts/setup_env.sh installs neurobench 2.3.0: its absence or another layout is a failure
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.utils.layers import single_layer_MACs
    from neurobench.metrics.workload import SynapticOperations
    from neurobench.models import TorchModel

    _, model = _pooled_program_and_model()
    spikes = (torch.rand(6, 4, 1, 8, 8, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    ours = neurobench_counts(model, spikes)
    # 1) the whole package: Benchmark + SynapticOperations on the same model and inputs
    net = _Wrapped(model)
    batch = spikes.transpose(0, 1).contiguous()  # [B, T, ...]
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(batch, torch.zeros(4)), batch_size=2
    )
    bench = Benchmark(TorchModel(net), loader, [], [], [[], [SynapticOperations]])
    result = bench.run(quiet=True)["SynapticOperations"]
    eff = sum(float(np.mean(e["synaptic_ops"])) for e in ours)
    dense = sum(float(np.mean(e["dense_synaptic_ops"])) for e in ours)
    assert result["Effective_ACs"] + result["Effective_MACs"] == pytest.approx(eff, rel=1e-9)
    assert result["Dense"] == pytest.approx(dense, rel=1e-9)
    assert result["Effective_MACs"] > 0 and result["Effective_ACs"] > 0  # conv2 reads pooled values
    # 2) layer by layer with the package's own per-layer counter
    layers = [model.layers[0], model.layers[3], model.readout]
    inputs: dict[int, list[torch.Tensor]] = {i: [] for i in range(3)}
    hooks = [
        m.register_forward_pre_hook(lambda _m, a, i=i: inputs[i].append(a[0].detach().clone()))
        for i, m in enumerate(layers)
    ]
    try:
        with torch.no_grad():
            model(spikes)
    finally:
        for h in hooks:
            h.remove()
    for i, (layer, entry) in enumerate(zip(layers, ours)):
        ops = sum(single_layer_MACs(x, layer)[0] for x in inputs[i]) / spikes.shape[1]
        total = sum(single_layer_MACs(x, layer, total=True)[0] for x in inputs[i]) / spikes.shape[1]
        spiking = all(single_layer_MACs(x, layer)[1] for x in inputs[i])
        assert ops == pytest.approx(float(np.mean(entry["synaptic_ops"]))), entry["name"]
        assert total == pytest.approx(float(np.mean(entry["dense_synaptic_ops"]))), entry["name"]
        assert (entry["op_type"] == "AC") == spiking, entry["name"]


class _Wrapped(nn.Module):
    """NeuroBench feeds [B, T, ...] and expects logits; neurocxr's SNNs take [T, B, ...]."""

    def __init__(self, net: SpikingSequential) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x.transpose(0, 1))
        return out[0] if isinstance(out, tuple) else out.logits


def test_suite_rows_are_labelled_and_consistent() -> None:
    """The standard row set on a real (tiny, fused-pool) program: every row says its basis and scope."""
    from neurocxr.energy.suite import cnn_estimates, counting_bases, snn_estimates
    from neurocxr.hardware_sims import emulator

    program, model = _pooled_program_and_model()
    spikes = (torch.rand(6, 2, 1, 8, 8, generator=torch.Generator().manual_seed(2)) < 0.4).float()
    chip = emulator.emulate(program, spikes.numpy().astype(np.int8)).counts
    nb = neurobench_counts(model, spikes)
    rows = snn_estimates(
        program, chip, model="pooled", accuracy=0.5, neurobench_entries=nb, float_accuracy=0.6
    )
    assert {r.basis for r in rows} == {"chip", "neurobench", "keras-spiking"}
    assert {r.scope for r in rows} == {"device", "arithmetic", "memory-inclusive"}
    assert all(r.footnotes and r.kind == "estimated" for r in rows)
    loihi = next(r for r in rows if r.device == "loihi" and r.basis == "chip")
    assert (
        loihi.latency_s
        and loihi.throughput_fps
        and loihi.static_j
        and loihi.total_j == pytest.approx(loihi.dynamic_j + loihi.static_j)
    )
    assert loihi.timing["mapping"].startswith("estimate_resources")
    nb_loihi = next(r for r in rows if r.device == "loihi" and r.basis == "neurobench")
    assert (
        nb_loihi.accuracy == 0.6 and nb_loihi.dynamic_j < loihi.dynamic_j
    )  # fused pool: more chip ops
    arith = [r for r in rows if r.scope == "arithmetic" and r.device == "horowitz45-fp32"]
    memory = [r for r in rows if r.scope == "memory-inclusive" and "fp32" in r.device]
    assert memory[0].dynamic_j > arith[0].dynamic_j
    json.dumps([r.to_dict() for r in rows])  # plain data
    bases = counting_bases(chip, nb)
    assert bases.total.synaptic_ops_ratio > 1
    cnn = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 2)
    )
    crow = cnn_estimates(cnn, (1, 1, 8, 8), name="cnn", accuracy=0.7)
    assert [(r.basis, r.scope) for r in crow] == [
        ("cnn", "arithmetic"),
        ("cnn", "memory-inclusive"),
    ] * 2


def test_active_neuron_updates_follow_input_and_state() -> None:
    """Active = a non-zero input current or a non-zero state carried in (Davies 2018: active vs inactive)."""
    lin = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0], [0.0]]))  # neuron 1 never receives anything
    x = torch.tensor([[[1.0]], [[0.0]], [[0.0]]])  # T=3, B=1: one input at step 0
    keep = neurobench_counts(SpikingSequential([lin, LIF(beta=1.0, threshold=100.0)]), x)[0]
    assert keep["neuron_updates"].tolist() == [6]
    assert keep["active_neuron_updates"].tolist() == [
        3
    ]  # neuron 0 keeps v = 1 for the rest of the window
    forget = neurobench_counts(SpikingSequential([lin, LIF(beta=0.0, threshold=100.0)]), x)[0]
    assert forget["active_neuron_updates"].tolist() == [2]  # v = 1 carried into step 1, then 0
    counts = to_layer_counts([keep])
    est = estimate_energy(counts, "loihi", basis="neurobench")
    assert est.dynamic_j == pytest.approx(1 * 23.6e-12 + 3 * 81e-12 + 3 * 52e-12)
    assert est.basis == "neurobench" and not any("upper bound" in f for f in est.footnotes)


def test_keras_rows_from_the_float_model_follow_keras_spiking() -> None:
    """KerasSpiking on the unfused float model: connections = outputs x fan-in (padding ignored), neurons of the
    activation after each synapse, rate = mean |input| per element and step / dt (the pool costs nothing)."""
    from neurocxr.energy.estimate import keras_layers_from_neurobench

    _, model = _pooled_program_and_model()
    spikes = (torch.rand(6, 2, 1, 8, 8, generator=torch.Generator().manual_seed(4)) < 0.25).float()
    entries = neurobench_counts(model, spikes)
    rows = keras_layers_from_neurobench(entries, dt=0.001)
    assert [r.connections for r in rows] == [2 * 8 * 8 * 9, 3 * 4 * 4 * 18, 2 * 48]
    assert [r.neurons for r in rows] == [2 * 8 * 8, 3 * 4 * 4, 0]
    assert rows[0].rate_hz == pytest.approx(float(spikes.mean(dim=(0, 2, 3, 4)).mean()) / 0.001)
    ks = keras_spiking_energy(rows, "loihi", timesteps=6)
    by_hand = sum(
        27.1e-12 * r.connections * r.rate_hz * 0.001 * 6 + 81e-12 * r.neurons * 6 for r in rows
    )
    assert ks.total_j == pytest.approx(by_hand, rel=1e-12)
    est = keras_spiking_estimate(ks, model="pooled")
    assert est.basis == "keras-spiking" and any("3.5 ns" in f for f in est.footnotes)


def test_chip_rows_borrow_the_float_models_active_fraction() -> None:
    from neurocxr.energy.suite import FLOAT_ACTIVITY_SOURCE, with_float_activity
    from neurocxr.hardware_sims import emulator

    program, model = _pooled_program_and_model()
    spikes = (torch.rand(6, 2, 1, 8, 8, generator=torch.Generator().manual_seed(5)) < 0.3).float()
    chip = emulator.emulate(program, spikes.numpy().astype(np.int8)).counts
    nb = neurobench_counts(model, spikes)
    mixed = with_float_activity(chip, nb)
    assert all(
        getattr(c, "active_neuron_updates", None) is None for c in chip
    )  # the originals are untouched
    conv1 = mixed[1]
    frac = nb[0]["active_neuron_updates"] / nb[0]["neuron_updates"]
    assert np.asarray(conv1.active_neuron_updates) == pytest.approx(
        np.asarray(conv1.neuron_updates) * frac
    )
    assert 0 < float(np.mean(frac)) < 1  # some neurons sit idle: the split matters
    plain = estimate_energy(chip, "loihi", program=program)
    split = estimate_energy(mixed, "loihi", program=program)
    assert split.dynamic_j < plain.dynamic_j  # inactive updates cost 52 instead of 81 pJ
    assert any(FLOAT_ACTIVITY_SOURCE in f for f in split.footnotes)
    assert any("upper bound" in f for f in plain.footnotes)


def test_user_profile_with_timing_and_static_power(tmp_path: Path) -> None:
    """A measured Loihi 2 profile from a file gets the timing model and a total; a bad chip name is refused."""
    path = tmp_path / "l2.toml"
    path.write_text(
        '[[profile]]\nname = "my-loihi2"\nkind = "neuromorphic"\nenergy_per_synop_j = 2e-12\n'
        "energy_per_neuron_update_j = 5e-12\nenergy_per_neuron_update_inactive_j = 1e-12\nspiking = true\n"
        "static_power_w = 0.5\ntime_per_synop_s = 1e-9\ntime_per_neuron_update_s = 2e-9\nbarrier_s = 1e-7\n"
        'chip = "loihi2"\nsource = "our board, 2026"\n'
    )
    (prof,) = load_profiles(path)
    est = estimate_energy([layer_counts("conv", [1000], [200])], prof)
    step = (1000 * 1e-9 + 200 * 2e-9) / 4 + 1e-7
    assert est.timing["step_s"] == pytest.approx(step) and est.static_j == pytest.approx(
        0.5 * 4 * step
    )
    path.write_text(path.read_text().replace('chip = "loihi2"', 'chip = "loihi3"'))
    with pytest.raises(ProfileError, match="'chip'"):
        load_profiles(path)
