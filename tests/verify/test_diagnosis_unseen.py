"""Stage 4 on pairs modelled on issue 18's unseen real pairs (tests/unseen_models.py): the blame goes where the
numbers are, a layer is judged against the error it inherits, and "Also found" holds only confirmed causes."""

import json

from pt2ms.running import compare
from tests import unseen_models
from tests.conftest import run_script, write_config
from tests.tiny_models import randomized_state_dict
from tests.verify.test_diagnosis import assert_differs, cause_of, row, setting_named
from tests.verify.test_verify import run_verify

MODELS = "tests.unseen_models:"


def project(directory, torch_model, ms_model, ms_kwargs="", verify="inputs = [[2, 3, 8, 8]]"):
    """A project taken through stages 1-3; `ms_kwargs` is a TOML inline table's body. Returns the config path."""
    import torch

    torch.save(randomized_state_dict(getattr(unseen_models, torch_model)()), directory / "weights.pth")
    config = write_config(directory, torch_model=MODELS + torch_model, ms_model=MODELS + ms_model)
    text = config.read_text().replace("inputs = [[2, 3, 8, 8]]", verify)
    if ms_kwargs:
        line = f'model = "{MODELS}{ms_model}"'
        text = text.replace(line, f"{line}\nkwargs = {{ {ms_kwargs} }}")
    config.write_text(text)
    for script in ("1_show.py", "2_build_map.py", "3_pth2ckpt.py"):
        code, _, stderr = run_script(script, "--config", str(config))
        assert code == 0, f"{script}: {stderr}"
    return config


def test_a_squeeze_excite_activation_is_blamed_not_the_norm_that_carries_its_activation(tmp_path):
    """timm's BatchNormAct2d against BatchNorm2d + SiLU (a boundary, never a cause), with the SE block's
    activation ReLU in PyTorch and SiLU in the port: the SE activation is named."""
    config = project(tmp_path, "torch_se_net", "ms_se_net")
    run = run_verify(config)
    assert run.code == 0 and run.report["agree"] is True, run.report["cause"]
    config.write_text(config.read_text().replace(f'model = "{MODELS}ms_se_net"',
                                                 f'model = "{MODELS}ms_se_net"\nkwargs = {{ se_act = "silu" }}'))
    run = run_verify(config)
    assert_differs(run)
    kind, torch_name, ms_name = cause_of(run)
    assert (kind, torch_name, ms_name) == ("in layer", "se.act1", "se.act"), run.report["cause"]
    for norm in ("bn1", "bn2"):
        assert row(run.report, norm)["verdict"] == "boundary differs", row(run.report, norm)
        assert f"`{norm}`" not in run.report["cause"]
    assert not any("`bn" in also for also in run.report["first_divergence_detail"].get("also", []))


def test_an_activation_built_of_a_sigmoid_cell_pairs_as_one_activation(tmp_path):
    """MindCV's EfficientNet runs SiLU as its Swish cell, x times a Sigmoid cell: PyTorch's SiLU pairs with the
    Swish, not with the Sigmoid inside it (the real EfficientNet-B0 pair, its outputs agreeing at 5.0e-05, was
    called "differ": "PyTorch applies SiLU here, MindSpore Sigmoid")."""
    run = run_verify(project(tmp_path, "torch_se_net_plain", "ms_se_net", ms_kwargs='act = "swish"'))
    assert run.code == 0 and run.report["agree"] is True, run.report["cause"]
    act = next(r for r in run.report["layers"] if r["torch"] == "bn1.act")
    assert (act["mindspore"], act["mindspore_type"]) == ("act1", "Swish")
    assert act["isolated"]["verdict"] in compare.AGREEMENT
    assert not [r for r in run.report["layers"] if r["mindspore"].endswith(".sigmoid") and r["mindspore"] != "se.sigmoid"]


def test_attention_normalised_inline_is_named_as_the_blocks_inline_code_not_the_map(tmp_path):
    """Cosine attention (F.normalize of q and k, written in forward) on PyTorch's side only, in every block,
    behind a fused qkv the map splits rightly: the first block's inline code is named, with the call."""
    run = run_verify(project(tmp_path, "torch_cosine_net", "ms_cosine_net", verify="inputs = [[2, 5, 4]]"))
    assert_differs(run)
    detail = run.report["first_divergence_detail"]
    assert (detail["kind"], detail["torch"]) == ("inline", "blocks.0.attn"), run.report["cause"]
    assert "normalize(" in run.report["cause"] and "inline" in run.report["cause"]
    assert "map" not in run.report["cause"]
    # The layers around that code, with their settings on both sides: norm1 and the fused qkv feed it (qkv is
    # split in the map, so not paired one to one), proj takes its result.
    sides = {layer["torch"]: layer["side"] for layer in detail["around"]}
    assert sides == {"blocks.0.norm1": "before", "blocks.0.attn.qkv": "before", "blocks.0.attn.proj": "after"}
    assert "settings of the layers around it: before it" in run.report["cause"]
    assert "`blocks.0.norm1` (LayerNorm; MindSpore `blocks.0.norm1`, LayerNorm): the same on both sides " \
           "(epsilon (eps) 1e-05" in run.report["cause"]
    assert "after it `blocks.0.attn.proj` (Linear; MindSpore `blocks.0.attn.proj`, Dense): the same on both " \
           "sides (bias True)" in run.report["first_divergence"]
    # Stage 4 tried the swaps itself: none of the same-shaped layers swapped makes the block agree.
    swaps = row(run.report, "blocks.0.attn")["swaps"]
    assert swaps and all(swap["verdict"] == "differ" for swap in swaps)
    assert "swapping" in run.report["first_divergence"]
    for layer in ("blocks.0.norm1", "blocks.0.attn.proj"):
        assert row(run.report, layer)["isolated"]["verdict"] in compare.AGREEMENT


def test_the_right_map_agrees_with_cosine_attention_on_both_sides(tmp_path):
    """The control: PyTorch without the inline normalisation agrees with the port (the map splits qkv rightly)."""
    run = run_verify(_cosine_control(tmp_path))
    assert run.code == 0 and run.report["agree"] is True, run.report["cause"]


def _cosine_control(directory):
    import torch

    torch.save(randomized_state_dict(unseen_models.torch_cosine_net(normalise=False)), directory / "weights.pth")
    config = write_config(directory, torch_model=MODELS + "torch_cosine_net", ms_model=MODELS + "ms_cosine_net")
    config.write_text(config.read_text().replace("inputs = [[2, 3, 8, 8]]", "inputs = [[2, 5, 4]]").replace(
        f'model = "{MODELS}torch_cosine_net"', f'model = "{MODELS}torch_cosine_net"\nkwargs = {{ normalise = false }}'))
    for script in ("1_show.py", "2_build_map.py", "3_pth2ckpt.py"):
        code, _, stderr = run_script(script, "--config", str(config))
        assert code == 0, f"{script}: {stderr}"
    return config


def test_gelu_approximation_and_layernorm_epsilon_are_named_as_settings(tmp_path):
    """MindCV keeps MindSpore's defaults (nn.GELU() is tanh, LayerNorm epsilon 1e-7) where timm has exact GELU
    and eps 1e-6: the settings are named, not "operations written inline"."""
    config = project(tmp_path, "torch_mlp_net", "ms_mlp_net", "defaults = false", verify="inputs = [[2, 5, 4]]")
    assert run_verify(config).code == 0
    config.write_text(config.read_text().replace("defaults = false", "defaults = true"))
    run = run_verify(config)
    assert_differs(run)
    detail = run.report["first_divergence_detail"]
    assert detail["kind"] == "in layer", run.report["cause"]
    assert setting_named(run, "approximate") == ("tanh", "none")
    named = {item["setting"] for item in run.report["settings_differ"] if item["effect"] == "changes"}
    assert "approximate" in named
    assert "inline" not in run.report["cause"] and "Not sure" not in run.report["cause"]
    for also in detail.get("also", []):
        assert "inline" not in also and "Not sure" not in also, also


def _swap_in_map(config, first, second):
    map_path = config.parent / "maps" / "tiny.json"
    data = json.loads(map_path.read_text())
    entries = data["map"]
    for leaf in ("weight", "bias"):
        entries[f"{first}.{leaf}"], entries[f"{second}.{leaf}"] = entries[f"{second}.{leaf}"], entries[f"{first}.{leaf}"]
    map_path.write_text(json.dumps(data, indent=2))
    code, _, stderr = run_script("3_pth2ckpt.py", "--config", str(config))
    assert code == 0, stderr


def test_a_swapped_hand_edit_is_named_with_no_wrong_also_found(tmp_path):
    """Two same-shaped layers in two blocks swapped by hand: the map is named; the layer paired through a
    swapped entry sees other inputs, which is no second cause ("Also found" stays empty)."""
    config = project(tmp_path, "torch_deep_stack", "ms_deep_stack", verify="inputs = [[2, 32]]")
    _swap_in_map(config, "layers.3", "layers.5")
    run = run_verify(config)
    assert_differs(run)
    detail = run.report["first_divergence_detail"]
    assert detail["kind"] == "map" and {"layers.3.weight", "layers.5.weight"} <= set(detail["entries"]), detail
    assert detail.get("also", []) == [], detail["also"]
    assert "**Also found" not in run.markdown


def test_rounding_that_grows_over_depth_to_just_under_the_tolerance_agrees(tmp_path):
    """YOLOX against mindyolo in small: 24 layers of float32 rounding amplified by an exp box decode reach the
    outputs at some 1e-5, far above what one operation costs and just under the tolerance: the models agree."""
    run = run_verify(project(tmp_path, "torch_deep_stack", "ms_deep_stack", verify="inputs = [[2, 32]]"))
    output_error = run.report["outputs"][0]["relative"]
    assert compare.OP_TOLERANCE < output_error < run.report["tolerance"], output_error
    assert run.code == 0 and run.report["agree"] is True and run.report["cause"] is None, run.report["cause"]
    assert row(run.report, "decode")["inputs"]["relative"] > compare.OP_TOLERANCE  # it inherits, and is cleared
    assert "accumulated" not in run.markdown and "**Cause:**" not in run.markdown



def _flow(name, full, inputs, isolated, producer, through):
    metric = lambda value, tolerance: {"compared": 4, "relative": value, "cosine": 1.0,
                                       "verdict": compare.verdict({"compared": 4, "relative": value}, tolerance)}
    return {"torch": name, "mindspore": name, "kind": "layer", "torch_type": "Conv2d", "mindspore_type": "Conv2d",
            **metric(full, 1e-4), "inputs": metric(inputs, 1e-4), "isolated": metric(isolated, compare.OP_TOLERANCE),
            "from": [producer] if producer else [], "through": through}


def test_rounding_that_the_code_between_two_layers_passes_on_is_inherited_not_a_cause():
    """The rows of two real reports (benchmarks/real_detectors.py): YOLOX-Darknet53's `head.reg_convs.2.1.bn`
    agrees at 9.9e-5, a LeakyReLU then leaves `head.reg_preds.2` inputs at 1.15e-4; YOLOv8n's box branch agrees
    at 6.8e-5 and the softmax before the DFL gives 1.4e-4. Each is inherited rounding (every layer agrees
    alone, outputs within tolerance), not code that computes something else; from a producer at float noise,
    the same inputs error is still named between the layers."""
    from pt2ms.verify.diagnosis import causes

    for producer_error, inputs_error, through in ((9.87e-5, 1.15e-4, ["act (LeakyReLU)"]),
                                                  (6.82e-5, 1.41e-4, ["softmax(1)"])):
        rows = [_flow("bn", producer_error, 7.6e-5, 1.4e-7, None, []),
                _flow("pred", 6.9e-5, inputs_error, 3.2e-7, "bn", through)]
        assert causes(rows, [], [], [], [], [], 1e-4) == [], through
        rows[0] = _flow("bn", 2e-7, 1e-7, 1.4e-7, None, [])
        assert [cause["kind"] for cause in causes(rows, [], [], [], [], [], 1e-4)] == ["between layers"], through
