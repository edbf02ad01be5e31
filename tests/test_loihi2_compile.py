"""Loihi 2 target without Lava: lowering, float exactness, quantization report, check command."""
from __future__ import annotations

import json
import tomllib

import nir
import numpy as np
import pytest
import scipy.sparse as sp

from hw_targets import get_target
from hw_targets.loihi2 import examples as ex
from hw_targets.loihi2.emulator import emulate
from hw_targets.loihi2.graph import lower
from hw_targets.loihi2 import target
from hw_targets.loihi2.quantize import compile_network, dequantize
from hw_targets.loihi2.reference import run_reference
from hw_targets.loihi2.resources import check_fit
from hw_targets.loihi2.spec import SPEC_FILE, Spec
from neuroratebp.cli import main

GRAPHS = {"mlp": ex.mlp_graph, "conv": ex.conv_graph, "residual": ex.residual_graph}


@pytest.mark.parametrize("kind", sorted(GRAPHS))
def test_float_chip_reproduces_nir_reference(kind):
    """Delays realigned, the float chip gives the reference's spike counts and logits."""
    graph = GRAPHS[kind]()
    x = ex.random_images(graph, 32)
    ref = run_reference(graph, x)
    chip, _ = compile_network(lower(graph), "float")
    run = emulate(chip, chip.encode(x))
    np.testing.assert_allclose(run.logits, ref.logits, atol=1e-9)
    for name, counts in run.spike_counts.items():
        np.testing.assert_array_equal(counts, ref.spikes[name].sum(axis=1))


def test_residual_shortcut_gets_extra_delay():
    net = lower(ex.residual_graph())
    lif2 = net.population("lif2")
    assert sorted((s.source, s.delay) for s in lif2.synapses) == [("lif0", 1), ("lif1", 0)]
    assert net.window == 4 + 4


def test_fixed_point_weights_on_lava_grid_and_close():
    chip, reports = compile_network(lower(ex.mlp_graph()), "fixed")
    for pop in chip.populations:
        for syn in pop.synapses:
            w = np.asarray(syn.weights)
            assert w.min() >= -256 and w.max() <= 255
            if w.min() < 0 < w.max():
                assert np.all(w % 2 == 0)  # 8-bit mixed sign drops the LSB in Lava
    assert all(r.weight_clipped == 0 and r.weight_rel_error < 0.02 for r in reports)
    hidden = [p for p in chip.populations if not p.readout]
    assert all(p.vth == 4096 and p.du == 4095 and p.dv == round(4096 * 0.2) for p in hidden)


def test_split_input_adds_a_residual_group():
    """The input layer as two 8-bit groups (coarse + residual at exponent - 7, >= -8)."""
    net = lower(ex.conv_graph())
    _, plain = compile_network(net, "fixed", split="none")
    chip, split = compile_network(lower(ex.conv_graph()), "fixed")  # split="input" by default
    first = chip.populations[0]
    e = plain[0].weight_exp[0]
    assert [s.weight_exp for s in first.synapses] == [e, max(e - 7, -8)]
    assert all(s.source == "input" and s.delay == 0 for s in first.synapses)
    assert split[0].weight_rel_error < plain[0].weight_rel_error / 20
    assert [r.weight_exp for r in split[1:]] == [r.weight_exp for r in plain[1:]]


def test_mse_exponent_never_increases_weight_error():
    graph = ex.mlp_graph((16, 32, 32, 4), seed=3)
    _, by_max = compile_network(lower(graph), "fixed", split="none")
    _, by_mse = compile_network(lower(graph), "fixed", split="none", exponent="mse")
    for a, b in zip(by_max, by_mse):
        assert b.weight_rel_error <= a.weight_rel_error
        assert b.weight_exp[0] <= a.weight_exp[0]
    with pytest.raises(ValueError, match="exponent"):
        compile_network(lower(graph), "fixed", exponent="median")


def test_report_flags_clipping_at_low_percentile():
    _, reports = compile_network(lower(ex.mlp_graph()), "fixed", percentile=50)
    assert all(r.weight_clipped > 0 for r in reports)
    assert any("clipped" in w for r in reports for w in r.warnings)


def test_fixed_agrees_with_float_reference_mostly():
    graph = ex.mlp_graph((16, 32, 32, 4), seed=3)
    x = ex.random_images(graph, 200)
    ref = run_reference(graph, x).logits.argmax(1)
    chip, _ = compile_network(lower(graph), "fixed")
    assert np.mean(emulate(chip, chip.encode(x)).logits.argmax(1) == ref) > 0.9


def test_dequantized_parameters_match_float_within_a_step():
    """dequantize undoes every unit change (input 1/255, scale, weight_exp, bias << 6)."""
    graph = ex.conv_graph((1, 6, 6), 2)
    net = lower(graph)
    fixed, _ = compile_network(net, "fixed", split="none")
    exact, _ = compile_network(net, "float")
    for q, f in zip(fixed.populations, exact.populations):
        d = dequantize(q)
        for dsyn, fsyn, qsyn in zip(d.synapses, f.synapses, q.synapses):
            dw, fw = (np.asarray(sp.csr_matrix(m).todense()) for m in (dsyn.weights, fsyn.weights))
            step = 2.0 ** qsyn.weight_exp / q.scale * (255 if qsyn.source == "input" else 1)
            assert np.abs(dw - fw).max() <= step + 1e-12  # mixed-sign grid: steps of 2
        np.testing.assert_allclose(d.bias_mant, f.bias_mant, atol=2.0 ** q.bias_exp / (64 * q.scale))
        if not q.readout:
            assert d.vth == pytest.approx(f.vth, rel=1e-3) and d.dv == pytest.approx(f.dv, abs=1 / 4096)


def test_quantization_by_layer_attributes_the_fixed_point_error():
    graph = ex.mlp_graph((16, 32, 32, 4), seed=3)
    x = ex.random_images(graph, 100)
    rows = target.quantization_by_layer(graph, x)
    assert list(rows) == ["lif0", "lif1", "fc2", "all (float arithmetic)", "all (chip arithmetic)"]
    chip, _ = compile_network(lower(graph), "fixed")
    agreement = np.mean(emulate(chip, chip.encode(x)).logits.argmax(1)
                        == run_reference(graph, x).logits.argmax(1))
    assert rows["all (chip arithmetic)"]["agreement_with_float"] == pytest.approx(agreement)
    assert all(0 < r["mean_abs_logit_error"] < 0.5 for r in rows.values())
    # one layer's quantization costs less than all of them
    whole = rows["all (float arithmetic)"]["mean_abs_logit_error"]
    assert all(rows[n]["mean_abs_logit_error"] < whole for n in ("lif0", "lif1"))


def test_unsupported_graph_is_a_value_error():
    g = ex.mlp_graph()
    g.metadata.pop("dt")
    with pytest.raises(ValueError, match="dt"):
        lower(g)
    with pytest.raises(ValueError, match="unknown target"):
        get_target("loihi9")


@pytest.fixture
def conv_file(tmp_path):
    path = tmp_path / "conv.nir"
    nir.write(str(path), ex.conv_graph())
    return path


def test_check_command_text_and_json(conv_file, capsys):
    assert main(["check", str(conv_file), "--split", "none"]) == 0
    text = capsys.readouterr().out
    assert "fits one chip" in text and "lif0" in text and "cores exp" in text
    assert main(["check", str(conv_file), "--json", "--split", "none"]) == 0
    report = json.loads(capsys.readouterr().out)
    conv0 = report["layers"][0]
    assert conv0["neurons"] == 4 * 8 * 8 and conv0["stored_weights"] == 4 * 9
    assert conv0["synapses"] == 1936  # 3x3 windows clipped at the border of an 8x8 map
    assert report["totals"]["cores"] == 3 and report["fits"]


def test_check_reports_what_does_not_fit():
    table = tomllib.loads(SPEC_FILE.read_text())
    table["chip"]["cores_per_chip"]["value"] = 2
    chip, reports = compile_network(lower(ex.mlp_graph((4, 9000, 3))), "fixed")
    report = check_fit(chip, reports, Spec(table))
    assert report["layers"][0]["cores_by_neurons"] == 2  # 9000 neurons > 8192 per core
    assert not report["fits"] and report["problems"] == ["cores: 3 > 2 per chip"]


def test_check_command_split_and_exponent_options(conv_file, capsys):
    assert main(["check", str(conv_file), "--exponent", "mse", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["layers"][0]["weight_exp"]) == 2 and len(report["layers"][1]["weight_exp"]) == 1


@pytest.mark.parametrize("args, message", [
    (["check", "missing.nir"], "NIR file not found"),
    (["check", "{junk}"], "not a readable NIR file"),
    (["check", "{ok}", "--target", "nope"], "unknown target"),
])
def test_bad_input_one_line_error(tmp_path, capsys, args, message):
    junk = tmp_path / "junk.nir"
    junk.write_text("not hdf5")
    ok = tmp_path / "ok.nir"
    nir.write(str(ok), ex.mlp_graph())
    args = [a.format(junk=junk, ok=ok) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def _spec(**chip):
    table = tomllib.loads(SPEC_FILE.read_text())
    for key, value in chip.items():
        table["chip"][key]["value"] = value
    return Spec(table)


def test_conv_counted_weight_shared_and_expanded():
    """Shared encoding: kernel (pooling folded in) + 2 B per input axon per core; decides the fit."""
    chip, reports = compile_network(lower(ex.conv_graph()), "fixed", split="none")
    report = check_fit(chip, reports, _spec(synaptic_memory_per_core_bytes=1200, cores_per_chip=4))
    conv0, conv1, readout = report["layers"]
    assert conv0["shared_bytes_per_core"] == 4 * 9 + 2 * 64 and conv0["cores"] == 1
    assert conv0["cores_expanded"] == -(-1936 * 3 // 1200)  # 3 B per expanded connection
    assert conv1["shared_bytes_per_core"] == 4 * 4 * 9 * 4 + 2 * 256  # 2x2 pool before the conv
    assert readout["shared_bytes_per_core"] == 3 * 64  # dense, 1 B per entry
    assert report["totals"]["cores"] == 3 and report["fits"]
    assert report["totals"]["cores_expanded"] > 4 and not report["fits_expanded"]


def test_shared_encoding_that_no_split_fits_is_a_problem():
    chip, reports = compile_network(lower(ex.conv_graph()), "fixed", split="none")
    report = check_fit(chip, reports, _spec(synaptic_memory_per_core_bytes=600))
    assert report["layers"][1]["cores"] == 0 and not report["fits"]
    assert any("lif1: kernel and input axons exceed" in p for p in report["problems"])


def test_spec_marks_assumed_entries():
    spec = Spec(tomllib.loads(SPEC_FILE.read_text()))
    for key in ("synapse.shared_weight_bytes", "synapse.shared_axon_bytes"):
        assert spec.entry(key).confidence == "assumed" and "assumed" in spec.entry(key).source
