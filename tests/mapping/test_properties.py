"""Property-based tests: random small models built in both frameworks, renamed the ways real ports differ.

A model spec is a list of top-level children (torch name, MindSpore name, tree); a tree is a layer
["linear", in, out, bias] / ["bn", width] / ["ln", width], or {"seq": [trees], "relu_after": [bools]}
(a Sequential on the torch side, which may count parameter-free ReLUs; a SequentialCell of only the
parameterised cells on the MindSpore side). Specs travel as JSON, so the round trip's config can name
the factories below with the spec as a keyword argument.
"""

import json
import tempfile
import textwrap
from pathlib import Path

import mindspore as ms
import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mindspore import nn as msnn
from torch import nn

from pt2ms.mapping.matching import match
from pt2ms.running.model_rows import from_ms_model, torch_model_rows
from pt2ms.stages.build_map import split_ignored, to_value
from tests.conftest import run_script

TORCH_NAMES = ["features", "blocks", "encoder", "head", "fc", "norm"]
MS_RENAMES = ["layers", "stages", "backbone", "classifier", "dense", "ln"]
# Torch leaf -> MindSpore leaf, per layer kind.
LEAVES = {
    "linear": [("weight", "weight"), ("bias", "bias")],
    "bn": [("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"), ("running_var", "moving_variance")],
    "ln": [("weight", "gamma"), ("bias", "beta")],
}

widths = st.integers(2, 6)
layers = st.one_of(
    st.tuples(st.just("linear"), widths, widths, st.booleans()),
    st.tuples(st.just("bn"), widths),
    st.tuples(st.just("ln"), widths),
).map(list)


@st.composite
def containers(draw, children):
    """A Sequential of 1 to 3 children; the torch side may put a ReLU (no parameters) after any of them."""
    seq = draw(st.lists(children, min_size=1, max_size=3))
    return {"seq": seq, "relu_after": draw(st.lists(st.booleans(), min_size=len(seq), max_size=len(seq)))}


trees = st.recursive(layers, containers, max_leaves=6)


def _without_relus(node):
    if not isinstance(node, dict):
        return node
    return {"seq": [_without_relus(child) for child in node["seq"]], "relu_after": [False] * len(node["seq"])}


@st.composite
def model_specs(draw):
    """A spec with some containers renamed on the MindSpore side and an optional wrapper on one side."""
    count = draw(st.integers(1, 3))
    torch_names = draw(st.lists(st.sampled_from(TORCH_NAMES), min_size=count, max_size=count, unique=True))
    children = []
    for name in torch_names:
        renamed = draw(st.booleans())
        tree = draw(trees)
        # Under an unchanged name, ReLU gaps make equal raw indices point at different layers: see
        # test_renumbered_container_under_the_same_name below.
        children.append([name, MS_RENAMES[TORCH_NAMES.index(name)], tree] if renamed else
                        [name, name, _without_relus(tree)])
    wrapper = draw(st.sampled_from(["", "torch:module", "mindspore:network"]))
    return {"children": children, "wrapper": wrapper}


def _torch_layer(node):
    if isinstance(node, dict):
        modules = []
        for child, relu in zip(node["seq"], node["relu_after"]):
            modules += [_torch_layer(child)] + ([nn.ReLU()] if relu else [])
        return nn.Sequential(*modules)
    kind, *args = node
    if kind == "linear":
        return nn.Linear(args[0], args[1], bias=args[2])
    return nn.BatchNorm1d(args[0]) if kind == "bn" else nn.LayerNorm(args[0])


def _ms_layer(node):
    if isinstance(node, dict):
        return msnn.SequentialCell([_ms_layer(child) for child in node["seq"]])
    kind, *args = node
    if kind == "linear":
        return msnn.Dense(args[0], args[1], has_bias=args[2])
    return msnn.BatchNorm1d(args[0]) if kind == "bn" else msnn.LayerNorm((args[0],))


class TorchRoot(nn.Module):
    def __init__(self, named):
        super().__init__()
        for name, module in named:
            setattr(self, name, module)


class MsRoot(msnn.Cell):
    def __init__(self, named):
        super().__init__()
        for name, cell in named:
            setattr(self, name, cell)


def torch_model(spec):
    """The torch side of a spec (a JSON string or its dict)."""
    spec = json.loads(spec) if isinstance(spec, str) else spec
    model = TorchRoot([(name, _torch_layer(tree)) for name, _, tree in spec["children"]])
    return TorchRoot([("module", model)]) if spec["wrapper"] == "torch:module" else model


def ms_model(spec):
    """The MindSpore side of a spec."""
    spec = json.loads(spec) if isinstance(spec, str) else spec
    net = MsRoot([(ms_name, _ms_layer(tree)) for _, ms_name, tree in spec["children"]])
    return MsRoot([("network", net)]) if spec["wrapper"] == "mindspore:network" else net


def _pairs(node, torch_path, ms_path):
    """(MindSpore attribute path, torch state-dict key) for every tensor under `node`."""
    if isinstance(node, dict):
        torch_index = 0
        for index, (child, relu) in enumerate(zip(node["seq"], node["relu_after"])):
            yield from _pairs(child, f"{torch_path}.{torch_index}", f"{ms_path}.{index}")
            torch_index += 2 if relu else 1
        return
    for torch_leaf, ms_leaf in LEAVES[node[0]]:
        if node[0] == "linear" and torch_leaf == "bias" and not node[3]:
            continue
        yield f"{ms_path}.{ms_leaf}", f"{torch_path}.{torch_leaf}"


def expected_map(spec, net):
    """MindSpore Parameter.name -> torch key, as a correct map says."""
    torch_prefix = "module." if spec["wrapper"] == "torch:module" else ""
    ms_prefix = "network." if spec["wrapper"] == "mindspore:network" else ""
    name_of = {row.path: row.name for row in from_ms_model(net)}
    return {name_of[ms_prefix + ms_path]: torch_prefix + torch_key
            for torch_name, ms_name, tree in spec["children"]
            for ms_path, torch_key in _pairs(tree, torch_name, ms_name)}


def suggested_and_expected(spec):
    """(stage 2's suggestion, the right map) for a spec."""
    net = ms_model(spec)
    ms_rows, torch_rows, _ = split_ignored(from_ms_model(net), torch_model_rows(torch_model(spec)))
    return {item.ms_name: to_value(item) for item in match(ms_rows, torch_rows)}, expected_map(spec, net)


@settings(max_examples=100, deadline=None)
@given(model_specs())
def test_matcher_maps_every_tensor_right(spec):
    got, expected = suggested_and_expected(spec)
    assert {name: got.get(name) for name in expected if got.get(name) != expected[name]} == {}
    assert set(got) == set(expected)


def test_renumbered_container_under_the_same_name():
    """torch: features = [BN, ReLU, Linear, Linear] (0, 2, 3); MindSpore: features = [BN, Dense, Dense] (0, 1, 2)."""
    spec = {"children": [["features", "features", {"seq": [["bn", 2], ["linear", 2, 2, False], ["linear", 2, 2, False]],
                                                   "relu_after": [True, False, False]}]], "wrapper": ""}
    got, expected = suggested_and_expected(spec)
    assert got["features.1.weight"] == expected["features.1.weight"] == "features.2.weight"
    assert got["features.2.weight"] == expected["features.2.weight"] == "features.3.weight"


# --- .pth -> .ckpt round trip -----------------------------------------------------------------------------

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def seeded_state(model, seed, dtype):
    """Random values in `dtype` for every float tensor, with a -0.0 and a subnormal that must survive."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point():
            value = torch.randn(tensor.shape, generator=generator).to(dtype)
            flat = value.view(-1)
            flat[0] = -0.0
            flat[-1] = torch.finfo(dtype).tiny / 4
            state[name] = value
        else:
            state[name] = tensor.clone()
    return state


def bits(array):
    """The raw bit patterns of a float array, so that equality is bit-exact (and -0.0 != 0.0)."""
    return array.view({2: np.uint16, 4: np.uint32}[array.itemsize])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_specs(), st.integers(0, 2**31 - 1), st.sampled_from(sorted(DTYPES)))
def test_pth_to_ckpt_round_trip_is_bit_exact(spec, seed, dtype):
    state = seeded_state(torch_model(spec), seed, DTYPES[dtype])
    net = ms_model(spec)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        torch.save(state, folder / "weights.pth")
        config = folder / "prop.toml"
        spec_text = json.dumps(spec)
        config.write_text(textwrap.dedent(f"""\
            name = "prop"
            [torch]
            checkpoint = "weights.pth"
            model = "tests.mapping.test_properties:torch_model"
            kwargs = {{ spec = '{spec_text}' }}
            [mindspore]
            model = "tests.mapping.test_properties:ms_model"
            kwargs = {{ spec = '{spec_text}' }}
            [paths]
            maps = "maps"
            outputs = "outputs"
            """))
        code, _, stderr = run_script("1_show.py", "--config", str(config))
        assert code == 0, stderr
        expected = expected_map(spec, net)
        (folder / "maps").mkdir()
        (folder / "maps" / "prop.json").write_text(json.dumps({"map": expected}, indent=2))
        code, _, stderr = run_script("3_pth2ckpt.py", "--config", str(config))
        assert code == 0, stderr
        loaded = ms.load_checkpoint(str(folder / "outputs" / "prop" / "prop.ckpt"))
    assert set(loaded) == set(expected)
    for ms_name, torch_key in expected.items():
        source = state[torch_key]
        assert str(loaded[ms_name].dtype).lower() == dtype, ms_name
        if dtype == "bfloat16":  # NumPy has no bfloat16; widening to float32 is exact on both sides
            got, want = loaded[ms_name].float().asnumpy(), source.float().numpy()
        else:
            got, want = loaded[ms_name].asnumpy(), source.numpy()
        assert got.shape == want.shape and np.array_equal(bits(got), bits(want)), ms_name
