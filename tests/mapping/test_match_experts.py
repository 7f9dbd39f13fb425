"""Mixture-of-Experts stacking (pt2ms/mapping/match_experts.py): per-expert and fused PyTorch experts into
mindformers' grouped experts, the router, the counters with no source, and the probe's layout choices."""

import numpy as np
import pytest

from pt2ms.formats.inventory import TensorInfo
from pt2ms.mapping import transforms
from pt2ms.mapping.match_experts import NO_SOURCE_METHOD, candidates, stack_ops
from pt2ms.mapping.matching import match
from tests.zoo_moe_pairs import EXPERT_FFN, EXPERTS, HIDDEN, expert_entries

E, F, H = EXPERTS, EXPERT_FFN, HIDDEN
RNG = np.random.default_rng(0)


def _rows(shapes):
    return [TensorInfo(name, tuple(shape), "float32") for name, shape in shapes.items()]


def _ms_rows():
    return _rows({"decoder.layers.0.mlp.router.weight": (E, H), "decoder.layers.0.mlp.router.fi_accu": (E,),
                  "decoder.layers.0.mlp.experts.weight1": (E * H, 2 * F),
                  "decoder.layers.0.mlp.experts.weight2": (E * F, H)})


def _per_expert_rows():
    shapes = {"model.layers.0.mlp.gate.weight": (E, H)}
    for i in range(E):
        shapes.update({f"model.layers.0.mlp.experts.{i}.gate_proj.weight": (F, H),
                       f"model.layers.0.mlp.experts.{i}.up_proj.weight": (F, H),
                       f"model.layers.0.mlp.experts.{i}.down_proj.weight": (H, F)})
    return _rows(shapes)


def _fused_rows():
    return _rows({"model.layers.0.mlp.gate.weight": (E, H), "model.layers.0.mlp.experts.gate_up_proj": (E, 2 * F, H),
                  "model.layers.0.mlp.experts.down_proj": (E, H, F)})


def _value(item):
    return None if item.torch is None else {"torch": item.torch, "transform": item.transform}


@pytest.mark.parametrize("fused", [False, True], ids=["per-expert", "fused"])
def test_experts_stack_router_maps_and_the_counter_has_no_source(fused):
    found = {item.ms_name: item for item in match(_ms_rows(), _fused_rows() if fused else _per_expert_rows())}
    weight1, weight2 = expert_entries("model.layers.0.mlp", fused)
    assert _value(found["decoder.layers.0.mlp.experts.weight1"]) == weight1
    assert _value(found["decoder.layers.0.mlp.experts.weight2"]) == weight2
    assert found["decoder.layers.0.mlp.router.weight"].torch == "model.layers.0.mlp.gate.weight"
    counter = found["decoder.layers.0.mlp.router.fi_accu"]
    assert counter.torch is None and counter.method == NO_SOURCE_METHOD and "no source" in counter.note
    assert {found[name].method for name in found if "experts" in name} == {"experts"}


def test_both_sources_give_the_same_stacked_tensor_each_expert_transposed():
    gate, up, down = RNG.normal(size=(E, F, H)), RNG.normal(size=(E, F, H)), RNG.normal(size=(E, H, F))
    per_expert = [piece for i in range(E) for piece in (gate[i], up[i])]
    stacked = transforms.apply(stack_ops(True, E, 2 * F, H, (E * H, 2 * F), 2, "concatenated"), per_expert)
    fused = transforms.apply(stack_ops(False, E, 2 * F, H, (E * H, 2 * F), 2, "concatenated"),
                             [np.concatenate([gate, up], axis=1)])
    assert np.array_equal(stacked, fused)
    for i in range(E):  # expert i's rows: x @ block gives [gate(x), up(x)] concatenated
        assert np.array_equal(stacked[i * H:(i + 1) * H], np.concatenate([gate[i], up[i]]).T)
    weight2 = transforms.apply(stack_ops(True, E, H, F, (E * F, H), 1, "concatenated"), list(down))
    assert np.array_equal(weight2[F:2 * F], down[1].T)


def test_interleaved_gate_and_up_alternate_column_by_column_per_expert():
    gate, up = RNG.normal(size=(E, F, H)), RNG.normal(size=(E, F, H))
    ops = stack_ops(True, E, 2 * F, H, (E * H, 2 * F), 2, "interleaved")
    stacked = transforms.apply(ops, [piece for i in range(E) for piece in (gate[i], up[i])])
    block = stacked[2 * H:3 * H]  # expert 2
    assert np.array_equal(block[:, 0::2], gate[2].T) and np.array_equal(block[:, 1::2], up[2].T)


def test_shapes_that_cannot_hold_the_experts_give_no_ops():
    assert stack_ops(True, E, 2 * F, H, (E * H, 2 * F + 1), 2, "concatenated") is None
    assert stack_ops(True, E, 2 * F, H, (E * H + 1, 2 * F), 2, "concatenated") is None
    assert stack_ops(False, E, 2 * F + 1, H, (E * H, 2 * F + 1), 2, "interleaved") is None


def test_the_probe_chooses_gate_up_layouts_only():
    rows = _per_expert_rows()
    found = {item.ms_name: item for item in match(_ms_rows(), rows)}
    shapes = {row.name: row.shape for row in rows}
    choices = candidates(found["decoder.layers.0.mlp.experts.weight1"], (E * H, 2 * F), shapes)
    assert [label for label, _ in choices] == ["concatenated", "interleaved"]
    assert choices[0][1] == (found["decoder.layers.0.mlp.experts.weight1"].torch,
                             found["decoder.layers.0.mlp.experts.weight1"].transform)
    assert candidates(found["decoder.layers.0.mlp.experts.weight2"], (E * F, H), shapes) == []
