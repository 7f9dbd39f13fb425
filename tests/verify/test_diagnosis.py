"""Stage 4 names the true cause: pairs that differ in one thing each (tests/diagnosis_models.py), taken
through stages 1-3 and verified through 4_verify.py's main(); what verify.json and verify.md say."""

import json
import textwrap

import pytest

from pt2ms.running import compare
from pt2ms.verify.diagnosis import first_divergence, numbers_differ
from pt2ms.verify.report import layer_series
from tests import diagnosis_models
from tests.conftest import run_script, write_config
from tests.tiny_models import randomized_state_dict
from tests.verify.test_verify import run_verify

MODELS = "tests.diagnosis_models:"
IMAGE = "inputs = [[2, 3, 8, 8]]"


def project(directory, torch_model, ms_model, ms_kwargs="", torch_kwargs="", verify=IMAGE, stages=True):
    """A project taken through stages 1-3 (unless `stages` is False); returns the config path."""
    import torch

    model = getattr(diagnosis_models, torch_model)(**eval(f"dict({torch_kwargs})"))
    torch.save(randomized_state_dict(model), directory / "weights.pth")
    config = write_config(directory, torch_model=MODELS + torch_model, ms_model=MODELS + ms_model)
    text = config.read_text().replace(IMAGE, textwrap.dedent(verify).strip())
    for line, kwargs in ((f'model = "{MODELS}{ms_model}"', ms_kwargs), (f'model = "{MODELS}{torch_model}"', torch_kwargs)):
        if kwargs:
            table = ", ".join(f"{key.strip()} = {value.strip()}" for key, value in
                              (item.split("=") for item in kwargs.split(",")))
            text = text.replace(line, f"{line}\nkwargs = {{ {table} }}")
    config.write_text(text)
    for script in ("1_show.py", "2_build_map.py", "3_pth2ckpt.py") if stages else ():
        code, _, stderr = run_script(script, "--config", str(config))
        assert code == 0, f"{script}: {stderr}"
    return config


def row(report, torch_name):
    return next(item for item in report["layers"] if item["torch"] == torch_name)


def cause_of(run):
    detail = run.report["first_divergence_detail"]
    return detail["kind"], detail["torch"], detail["mindspore"]


def setting_named(run, setting):
    """The first divergence names `setting` with both values; returns (MindSpore value, PyTorch value)."""
    detail = run.report["first_divergence_detail"]
    found = [item for item in detail.get("settings", []) if item["setting"] == setting]
    assert found, detail
    assert any(item["setting"] == setting for item in run.report["settings_differ"])
    return found[0]["mindspore_value"], found[0]["torch_value"]


def assert_differs(run):
    assert run.code == 1 and run.report["agree"] is False and run.report["verdict"] == "differ"
    assert "**Verdict: the models DIFFER" in run.markdown


def assert_top_down(markdown):
    """verify.md: the verdict, then the cause in one sentence, then the evidence."""
    verdict, cause = markdown.index("**Verdict:"), markdown.index("**Cause:**")
    assert verdict < cause < markdown.index("## Where the models part") < markdown.index("## Outputs")
    sentence = markdown[cause:].splitlines()[0]
    assert sentence.count(". ") == 0 and sentence.endswith(".")


# --- settings that change the math, each named where it sits ------------------------------------------

def test_gelu_approximation_is_named_at_the_activation(tmp_path):
    run = run_verify(project(tmp_path, "torch_mlp", "ms_mlp", "tanh_gelu=true", verify="inputs = [[2, 5, 8]]"))
    assert_differs(run)
    assert cause_of(run) == ("in layer", "act", "act")
    assert setting_named(run, "approximate") == ("tanh", "none")
    act = row(run.report, "act")
    # Fed PyTorch's inputs, the GELU misses by far more than one float32 op costs, whatever the outputs say.
    assert act["kind"] == "parameter-free" and act["isolated"]["relative"] > 10 * compare.OP_TOLERANCE
    assert row(run.report, "fc2")["isolated"]["verdict"] in compare.AGREEMENT
    assert "GELU approximation: MindSpore 'tanh', PyTorch 'none'" in run.report["cause"]
    assert "accumulated" not in run.markdown
    assert_top_down(run.markdown)


@pytest.mark.parametrize("torch_model, ms_model, shape", [("torch_convnext", "ms_convnext", "[[1, 3, 32, 32]]"),
                                                         ("torch_vit", "ms_vit", "[[2, 3, 12, 12]]")])
def test_zoo_ports_keeping_mindsporess_gelu_default_are_blamed_on_the_gelu(tmp_path, torch_model, ms_model, shape):
    """timm ConvNeXt and ViT against their zoo ports (tests/zoo_*_pairs.py) with nn.GELU()'s default: the GELU is
    named, not float32 rounding accumulated over depth."""
    config = project(tmp_path, torch_model, ms_model, verify=f"inputs = {shape}")
    assert run_verify(config).code == 0  # exact GELU: the ports agree
    config.write_text(config.read_text().replace(f'model = "{MODELS}{ms_model}"',
                                                 f'model = "{MODELS}{ms_model}"\nkwargs = {{ tanh_gelu = true }}'))
    run = run_verify(config)
    assert_differs(run)
    detail = run.report["first_divergence_detail"]
    assert detail["kind"] == "in layer" and row(run.report, detail["torch"])["torch_type"] == "GELU"
    assert setting_named(run, "approximate") == ("tanh", "none")
    assert "accumulated" not in run.markdown


def test_exact_gelu_port_agrees(tmp_path):
    run = run_verify(project(tmp_path, "torch_mlp", "ms_mlp", verify="inputs = [[2, 5, 8]]"))
    assert run.code == 0 and run.report["agree"] is True and run.report["settings_differ"] == []
    assert run.report["parameter_free_paired"] == 2  # act and drop
    assert "**Cause:**" not in run.markdown


def test_same_padding_at_stride_two_is_named_at_the_conv(tmp_path):
    run = run_verify(project(tmp_path, "torch_stem", "ms_stem", "same_padding=true"))
    assert_differs(run)
    assert cause_of(run) == ("in layer", "conv", "conv")
    assert setting_named(run, "padding") == ("same", 1)
    assert_top_down(run.markdown)


def test_count_include_pad_is_named_at_the_pool(tmp_path):
    run = run_verify(project(tmp_path, "torch_stem", "ms_stem", "include_pad=true"))
    assert_differs(run)
    assert cause_of(run) == ("in layer", "middle", "middle")
    assert setting_named(run, "count_include_pad") == (True, False)


def test_align_corners_is_named_at_the_upsampling(tmp_path):
    run = run_verify(project(tmp_path, "torch_stem", "ms_stem", 'middle="up", align_corners=true',
                             torch_kwargs='middle="up"'))
    assert_differs(run)
    assert cause_of(run) == ("in layer", "middle", "middle")
    assert setting_named(run, "align_corners") == (True, False)


def test_correct_stem_ports_agree(tmp_path):
    for index, (ms_kwargs, torch_kwargs) in enumerate([("", ""), ('middle="up"', 'middle="up"')]):
        directory = tmp_path / str(index)
        directory.mkdir()
        run = run_verify(project(directory, "torch_stem", "ms_stem", ms_kwargs, torch_kwargs))
        assert run.code == 0 and run.report["agree"] is True and run.report["settings_differ"] == [], run.markdown


def test_batchnorm_momentum_copied_across_conventions_agrees_in_inference_and_is_named_for_training(tmp_path):
    """MindSpore's momentum weighs the old statistic: 0.1 there is PyTorch's 0.9. Inference cannot show it, so
    the verdict is the outputs' (agree), and the report lists it under "Differs in training"."""
    run = run_verify(project(tmp_path, "torch_stem", "ms_stem", "momentum=0.1"))
    assert run.code == 0 and run.report["agree"] is True and run.report["cause"] is None, run.markdown
    assert [(item["torch"], item["setting"], item["effect"]) for item in run.report["differs_in_training"]] == \
        [("bn", "momentum", "training")]
    item = run.report["differs_in_training"][0]
    assert (item["mindspore_value"], item["torch_value"]) == (0.9, 0.1)
    assert "## Differs in training" in run.markdown and "BatchNorm momentum" in run.markdown
    assert "differs in training only" in run.stdout and "momentum" in run.stdout


def test_a_dropout_rate_that_differs_does_not_make_agreeing_models_differ(tmp_path):
    """An agreeing pair whose dropout p differs (0.2 against 0.0): training-only, so the verdict is agree."""
    run = run_verify(project(tmp_path, "torch_mlp", "ms_mlp", "drop_p=0.2", verify="inputs = [[2, 5, 8]]"))
    assert run.code == 0 and run.report["agree"] is True and run.report["cause"] is None, run.markdown
    assert [(item["setting"], item["effect"]) for item in run.report["differs_in_training"]] == [("p", "training")]
    assert "dropout probability: MindSpore 0.2, PyTorch 0.0" in run.markdown


def test_epsilon_is_named_as_a_setting(tmp_path):
    from tests.verify.test_verify import make_project

    run = run_verify(make_project(tmp_path, ms_kwargs="{ bn_eps = 1e-5 }"))
    assert cause_of(run) == ("in layer", "features.1", "features.1")
    assert setting_named(run, "eps") == (1e-5, 1e-3)
    assert "epsilon" in run.report["cause"]


# --- where no module computes it: between layers, and in another order ------------------------------------

def test_functional_resize_in_one_branch_is_named_between_layers(tmp_path):
    run = run_verify(project(tmp_path, "torch_two_branch", "ms_two_branch", 'resize_mode="nearest"'))
    assert_differs(run)
    assert cause_of(run) == ("between layers", "right", "right")
    detail = run.report["first_divergence_detail"]
    assert detail["between"] == ["interpolate(size=[12, 12], mode='bilinear', align_corners=False, antialias=False)"]
    assert "interpolate(size=[12, 12], mode='bilinear'" in run.report["cause"]
    # The layer whose inputs differ is not "boundary differs" because the next one in order (the other branch) agrees.
    right = row(run.report, "right")
    assert right["verdict"] == "differ" and right["from"] == ["stem"] and right["isolated"]["verdict"] in compare.AGREEMENT
    assert row(run.report, "left")["verdict"] in compare.AGREEMENT
    assert_top_down(run.markdown)


def test_correct_functional_resize_agrees(tmp_path):
    run = run_verify(project(tmp_path, "torch_two_branch", "ms_two_branch"))
    assert run.code == 0 and run.report["agree"] is True


def test_branches_run_in_another_order_pair_by_data_flow_and_agree(tmp_path):
    """Two same-shaped branches, each a conv and a ReLU, run b-then-a by the port: a correct port, not a map error."""
    run = run_verify(project(tmp_path, "torch_branches", "ms_branches_other_order"))
    assert run.code == 0 and run.report["agree"] is True, run.markdown
    assert {(row["torch"], row["mindspore"]) for row in run.report["layers"] if row["kind"] == "parameter-free"} == \
        {("act_a", "act_a"), ("act_b", "act_b")}
    assert run.report["map_problems"] == [] and run.report["order_problems"] == []


def test_norm_then_pool_against_pool_then_norm_is_named_as_an_order(tmp_path):
    run = run_verify(project(tmp_path, "torch_norm_pool", "ms_norm_pool", "pool_first=true"))
    assert_differs(run)
    assert cause_of(run) == ("order", "pool", "pool")
    text = run.report["first_divergence"]
    assert "PyTorch runs `pool` after `bn`" in text and "runs `pool` before `bn`" in text
    assert "## Operations in another order" in run.markdown


def test_norm_with_a_built_in_activation_agrees_with_a_separate_activation(tmp_path):
    run = run_verify(project(tmp_path, "torch_norm_act", "ms_norm_act"))
    assert run.code == 0 and run.report["agree"] is True, run.markdown
    bn = row(run.report, "bn1")
    # bn1 applies the ReLU the port applies as act1: it differs alone, yet what consumes it agrees.
    assert bn["verdict"] == "boundary differs" and bn["isolated"]["verdict"] == "differ"
    assert (row(run.report, "bn1.act")["mindspore"], row(run.report, "bn1.act")["verdict"]) == ("act1", "agree")
    assert run.report["first_divergence"] is None and run.report["settings_differ"] == []
    # Marked as a boundary in the table and left out of the plotted error curves, not drawn as an error near 1.
    index = run.report["layers"].index(bn)
    assert f"| {index} | `bn1` | `bn1` | layer | BatchNormAct2d | boundary |" in run.markdown, run.markdown
    for metric_of in (lambda layer: layer, lambda layer: layer.get("isolated", {})):
        assert index not in layer_series(run.report, metric_of)[0]


def test_only_numbers_make_a_structure_finding_a_cause():
    """A layer that drifts in the full run (inherited error) while it agrees alone is no difference; one that
    misses alone is, and a boundary layer never is."""
    drifted = {"torch": "b", "kind": "layer", "verdict": "differ", "isolated": {"compared": 4, "verdict": "agree"},
               "inputs": {"compared": 4, "relative": 1e-3, "verdict": "differ"}}
    agreeing = [{"output": "output", "compared": 4, "verdict": "agree"}]
    assert numbers_differ(agreeing, [drifted]) is False
    assert numbers_differ(agreeing, [{**drifted, "verdict": "boundary differs",
                                      "isolated": {"compared": 4, "verdict": "differ"}}]) is False
    assert numbers_differ(agreeing, [{**drifted, "isolated": {"compared": 4, "verdict": "differ"}}]) is True
    assert numbers_differ([{**agreeing[0], "verdict": "differ"}], []) is True


# --- the map itself -------------------------------------------------------------------------------------

def _edit_map(config, edit):
    map_path = config.parent / "maps" / "tiny.json"
    data = json.loads(map_path.read_text())
    edit(data["map"])
    map_path.write_text(json.dumps(data, indent=2))
    code, _, stderr = run_script("3_pth2ckpt.py", "--config", str(config))
    assert code == 0, stderr


def test_two_same_shaped_layers_swapped_in_the_map_are_blamed_on_the_map(tmp_path):
    config = project(tmp_path, "torch_twin_linear", "ms_twin_linear", verify="inputs = [[2, 8]]")

    def swap(entries):
        assert entries["fc1.weight"] == "fc1.weight" and entries["fc2.weight"] == "fc2.weight"
        for leaf in ("weight", "bias"):
            entries[f"fc1.{leaf}"], entries[f"fc2.{leaf}"] = f"fc2.{leaf}", f"fc1.{leaf}"

    _edit_map(config, swap)
    run = run_verify(config)
    assert_differs(run)
    detail = run.report["first_divergence_detail"]
    assert detail["kind"] == "map" and {"fc1.weight", "fc2.weight"} <= set(detail["entries"])
    # Each layer agrees alone, paired through the same wrong map: only the order shows it.
    assert all(row["isolated"]["verdict"] in compare.AGREEMENT for row in run.report["layers"] if row["kind"] == "layer")
    assert "`fc1.weight` <- `fc2.weight`" in run.report["first_divergence"]
    assert "parameter-free operations" not in run.report["first_divergence"]
    assert_top_down(run.markdown)


def test_blocks_paired_off_by_one_are_blamed_on_the_map(tmp_path):
    config = project(tmp_path, "torch_stack", "ms_stack", verify="inputs = [[2, 8]]")

    def shift(entries):
        ms_names = {index: [name for name in entries if name.startswith(f"blocks.{index}.")] for index in range(3)}
        assert all(len(names) == 2 for names in ms_names.values()), entries
        for index, names in ms_names.items():
            for name in names:  # MindSpore block i reads PyTorch block i - 1 (block 0 reads the last)
                entries[name] = entries[name].replace(f"blocks.{index}.", f"blocks.{(index - 1) % 3}.")

    _edit_map(config, shift)
    run = run_verify(config)
    assert_differs(run)
    detail = run.report["first_divergence_detail"]
    assert detail["kind"] == "map" and "blocks.0.0.weight" in detail["entries"]
    assert all(row["isolated"]["verdict"] in compare.AGREEMENT for row in run.report["layers"] if row["kind"] == "layer")
    assert "parameter-free operations" not in run.report["first_divergence"]


def test_a_fused_entry_with_the_wrong_layout_is_blamed_on_the_map(tmp_path):
    config = project(tmp_path, "torch_attention_net", "ms_attention_net", verify="inputs = [[2, 5, 4]]")
    assert run_verify(config).code == 0  # the map the matcher wrote is right

    def swap_pieces(entries):
        assert entries["attn.q.weight"] == {"torch": "attn.qkv.weight", "transform": "chunk(3, 0, 0)"}
        entries["attn.q.weight"]["transform"], entries["attn.k.weight"]["transform"] = "chunk(3, 0, 1)", "chunk(3, 0, 0)"

    _edit_map(config, swap_pieces)
    run = run_verify(config)
    assert_differs(run)
    detail = run.report["first_divergence_detail"]
    assert (detail["kind"], detail["torch"], detail["mindspore"]) == ("map", "attn", "attn")
    assert {"attn.q.weight", "attn.k.weight"} <= set(detail["entries"][:6])
    assert "`attn.q.weight` <- `attn.qkv.weight` (chunk(3, 0, 1))" in run.report["first_divergence"]
    block = row(run.report, "attn")
    assert block["kind"] == "block" and block["isolated"]["verdict"] == "differ"
    assert row(run.report, "attn.proj")["isolated"]["verdict"] in compare.AGREEMENT


# --- runs that cannot compare, and outputs that do not line up -----------------------------------------------

def test_a_forward_that_fails_is_its_own_exit_code_and_still_reported(tmp_path):
    config = project(tmp_path, "torch_conv_head", "ms_mint_conv_head")
    code, stdout, stderr = run_script("4_verify.py", "--config", str(config))
    assert code == 3 and stderr.count("\n") == 1
    assert stderr.startswith(f"error: {config}: MindSpore's forward failed on batch 0 in layer `conv`: RuntimeError: "
                             "The kernel Conv2DExt unregistered")
    report = json.loads((tmp_path / "outputs" / "tiny" / "verify.json").read_text())
    assert report["verdict"] == "not compared" and report["agree"] is False
    assert report["failed"]["side"] == "MindSpore" and report["failed"]["layer"] == "conv"
    markdown = (tmp_path / "outputs" / "tiny" / "verify.md").read_text()
    assert "NOT VERIFIED" in markdown and "Conv2DExt unregistered" in markdown


def test_non_tensor_outputs_are_skipped_and_outputs_selected(tmp_path):
    config = project(tmp_path, "torch_cached_net", "ms_tuple_net", verify="inputs = [[2, 4]]")
    run = run_verify(config)  # {"logits", "past_key_values"} against (logits, 2 * logits): labels do not meet
    assert run.code == 1 and "PyTorch `output['past_key_values']`: skipped, a KeyValueCache is not a tensor" \
        in run.report["load_notes"]
    config.write_text(config.read_text().replace("[verify]\n", '[verify]\noutputs = { torch = ["logits"], mindspore = [0] }\n'))
    run = run_verify(config)
    assert run.code == 0 and run.report["agree"] is True
    assert [(row["output"], row["verdict"]) for row in run.report["outputs"]] == [("output['logits']", "agree")]


def test_an_output_key_that_does_not_exist_is_bad_input(tmp_path):
    config = project(tmp_path, "torch_cached_net", "ms_tuple_net", verify="inputs = [[2, 4]]")
    config.write_text(config.read_text().replace("[verify]\n", '[verify]\noutputs = { torch = ["scores"], mindspore = [0] }\n'))
    code, _, stderr = run_script("4_verify.py", "--config", str(config))
    assert code == 2 and stderr.count("\n") == 1 and "[verify] outputs: PyTorch's output has no 'scores'" in stderr


def test_a_file_factory_cell_compiles_in_graph_mode(tmp_path):
    """GRAPH_MODE compiles a Cell by importing its module by name: the factory's file must be importable so."""
    import mindspore as ms
    import numpy as np

    from pt2ms.running.build import import_object

    (tmp_path / "my_port.py").write_text(textwrap.dedent("""\
        from mindspore import nn, ops

        class Scale(nn.Cell):
            def construct(self, x):
                return ops.relu(x) * 2

        def build():
            return Scale()
        """))
    net = import_object("my_port.py:build", tmp_path / "run.toml")()
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        out = net(ms.Tensor(np.array([-1.0, 3.0], np.float32))).asnumpy()
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    assert out.tolist() == [0.0, 6.0]
    assert import_object("my_port.py:build", tmp_path / "run.toml").__module__ == type(net).__module__


# --- the verdict weighs layer evidence ----------------------------------------------------------------

def _unit(name, full, isolated, inputs=1e-7):
    metric = lambda value: {"compared": 4, "relative": value, "cosine": 1.0,
                            "verdict": compare.verdict({"compared": 4, "relative": value}, 1e-4)}
    return {"torch": name, "mindspore": name, "kind": "layer", "torch_type": "Linear", "mindspore_type": "Dense",
            **metric(full), "inputs": metric(inputs),
            "isolated": {**metric(isolated), "verdict": compare.verdict({"compared": 4, "relative": isolated},
                                                                        compare.OP_TOLERANCE)}}


def test_outputs_within_tolerance_with_layers_that_differ_alone_is_not_agreement():
    from pt2ms.stages.verify import summarise
    from pt2ms.verify.diagnosis import causes

    outputs = [{"verdict": "agree within float noise", "relative": 2.05e-5}]
    rows = [_unit("a", 1e-7, 1e-7), _unit("b", 3e-4, 3e-4), _unit("c", 2e-4, 1e-7, inputs=3e-4)]
    found = causes(rows, [], [], [], [], [], 1e-4)
    summary = summarise(outputs, rows, found, [], True, 3)
    assert summary["verdict"] == "differ" and summary["agree"] is False and summary["outputs_agree"] is True
    assert summary["first_divergence_detail"]["torch"] == "b"


def test_layers_that_drift_while_each_agrees_alone_are_said_to_accumulate():
    from pt2ms.stages.verify import summarise
    from pt2ms.verify.diagnosis import causes
    from pt2ms.verify.report import markdown

    outputs = [{"batch": 0, "output": "output", "verdict": "agree within float noise", "relative": 2.05e-5}]
    # Each layer misses by float noise alone; in the full run the errors grow past the tolerance.
    rows = [_unit("a", 1e-6, 1e-6), _unit("b", 2e-4, 2e-6, inputs=1e-4 * 0.9), _unit("c", 3e-4, 3e-6, inputs=2e-4)]
    found = causes(rows, [], [], [], [], [], 1e-4)
    summary = summarise(outputs, rows, found, [], True, 3)
    assert found == [] and summary["verdict"] == "agree within float noise" and summary["layers_differ"] == 2
    # Within tolerance the drift is no finding (issue 18): no cause, the headline counts the drifting layers.
    assert summary["first_divergence_detail"] is None and summary["cause"] is None
    report = markdown({"name": "n", **summary, "warnings": [], "tolerance": 1e-4, "exact_threshold": 1e-6,
                       "inputs": [[1]], "batches": 1, "torch_checkpoint": "a", "mindspore_checkpoint": "b",
                       "outputs": outputs, "layers": rows, "layers_paired": 3, "load_notes": []})
    assert "agree within float noise at the outputs; 2 paired layer(s) leave tolerance" in report
    # With one layer computing something else alone, "accumulated" is never said.
    rows[1] = _unit("b", 2e-4, 5e-5, inputs=1e-4 * 0.9)
    assert causes(rows, [], [], [], [], [], 1e-4)[0]["kind"] == "in layer"


# --- a block that differs alone: the map only when the evidence points there ----------------------------

def _block(name, isolated):
    return {**_unit(name, isolated, isolated), "kind": "block", "torch_type": "Block", "mindspore_type": "Block"}


def _link(ms, cell, confidence):
    return {"ms": ms, "cell": cell, "torch": [ms], "owners": [cell], "transform": "", "pieces": False,
            "confidence": confidence, "edited": False}


def test_a_block_with_a_layer_set_up_differently_is_not_blamed_on_the_map():
    from pt2ms.verify.diagnosis import causes, first_divergence

    # blk.bn differs alone by its epsilon; the block differs alone far more (its cut holds more); an entry
    # inside is uncertain. Only the layer is checked: it is named, the block is "not sure", never the map.
    rows = [_block("blk", 0.7), _unit("blk.fc", 1e-2, 1e-7), _unit("blk.bn", 1e-2, 3e-3)]
    settings = [{"torch": "blk.bn", "mindspore": "blk.bn", "torch_type": "BatchNorm2d", "mindspore_type": "BatchNorm2d",
                 "setting": "eps", "mindspore_value": 1e-5, "torch_value": 1e-3}]
    links = [_link("blk.fc.weight", "blk.fc", 0.5)]
    found = causes(rows, settings, [], [], links, [], 1e-4)
    assert "map" not in {cause["kind"] for cause in found}
    block = next(cause for cause in found if cause["kind"] == "in block")
    assert block["sentence"].startswith("Not sure") and "`blk.bn`" in block["sentence"]
    named = first_divergence(found, rows, settings, True)
    assert (named["kind"], named["torch"]) == ("in layer", "blk.bn") and "epsilon" in named["sentence"]
    # With every layer inside agreeing alone and no setting apart, an uncertain entry is no evidence (issue 18):
    # the block's inline code is named, unless swapping two of its same-shaped layers made it agree.
    rows = [_block("blk", 0.7), _unit("blk.fc", 1e-2, 1e-7), _unit("blk.bn", 1e-2, 1e-7)]
    found = causes(rows, [], [], [], links, [("blk", "normalize(dim=-1)")], 1e-4)
    assert [cause["kind"] for cause in found] == ["inline"] and "`normalize(dim=-1)`" in found[0]["sentence"]
    # No recorded path places the call: the block's own layers stand in for the layers around it.
    assert "settings of the layers around it: in the block `blk.fc` (Linear; MindSpore `blk.fc`, Dense): no settings " \
           "to compare; `blk.bn`" in found[0]["sentence"]
    rows[0]["swaps"] = [{"layers": ["blk.fc", "blk.other"], "relative": 2e-7, "verdict": "agree"}]
    found = causes(rows, [], [], [], links, [], 1e-4)
    assert [(cause["kind"], cause.get("entries")) for cause in found] == [("map", ["blk.fc.weight"])]
    assert "2.00e-07" in found[0]["sentence"]


def test_inline_code_names_the_settings_of_the_layers_around_it_on_both_sides():
    from pt2ms.verify.diagnosis import causes

    # blk.b's input path holds the inline call: blk.a (fed by pre) is before the code, blk.b after it. blk.a's
    # eps differs but it agrees alone (equivalent here, so the block is still the inline code's); blk.b matches.
    rows = [_unit("pre", 1e-7, 1e-7), _block("blk", 0.7), {**_unit("blk.a", 1e-7, 1e-7), "from": ["pre"]},
            {**_unit("blk.b", 1e-2, 1e-7), "from": ["blk.a"], "through": ["normalize(dim=-1)"]}]
    settings = [{"torch": "blk.a", "mindspore": "blk.a", "torch_type": "Linear", "mindspore_type": "Dense",
                 "setting": "eps", "mindspore_value": 1e-5, "torch_value": 1e-3, "effect": "equivalent"}]
    found = causes(rows, settings, [], [], [], [("blk", "normalize(dim=-1)")], 1e-4,
                   {"blk.a": {"bias": True}, "blk.b": {"bias": False}})
    inline = next(cause for cause in found if cause["kind"] == "inline")
    assert [(layer["side"], layer["torch"]) for layer in inline["around"]] == [("before", "blk.a"), ("after", "blk.b")]
    assert ("settings of the layers around it: before it `blk.a` (Linear; MindSpore `blk.a`, Dense): epsilon (eps): "
            "MindSpore 1e-05, PyTorch 0.001 (equivalent here); the same on both sides: bias True; after it `blk.b` "
            "(Linear; MindSpore `blk.b`, Dense): the same on both sides (bias False).") in inline["sentence"]
    assert "Settings of the layers around that code: before it `blk.a`" in inline["text"]


def test_a_block_nobody_can_explain_ranks_after_a_layer_that_differs_alone():
    from pt2ms.verify.diagnosis import causes, first_divergence

    rows = [_unit("pool", 0.8, 0.8), _block("blk", 1.7), _unit("blk.a", 1.0, 1e-7, inputs=0.8),
            _unit("blk.b", 1.0, 1e-7, inputs=1.0)]
    found = causes(rows, [], [], [], [_link("blk.a.weight", "blk.a", 1.0)], [], 1e-4)
    assert sorted(cause["kind"] for cause in found) == ["in layer", "inline"]
    assert first_divergence(found, rows, [], True)["torch"] == "pool"  # a layer is named before a block's code


def test_a_producer_called_twice_does_not_vouch_for_the_inputs_it_fed():
    from pt2ms.verify.layer_compare import producers_agree

    drop = {**_unit("drop", 1e-7, 1e-7), "calls": 2}
    consumer = {**_unit("norm", 1e-4, 1e-7, inputs=1e-4), "from": ["drop"]}
    assert not producers_agree(consumer, {"drop": drop})
    assert producers_agree(consumer, {"drop": {**drop, "calls": 1}})


def test_blocks_pair_the_outermost_wrappers_around_the_same_layers():
    from pt2ms.verify.pairing import find_blocks

    # PyTorch: res holds body (a Sequential) and adds the residual; MindSpore: cell holds its layers directly
    # (residual inside), the other way round for the second block.
    modules = {"res": ["res.body", "res.body.a", "res.body.b"], "res.body": ["res.body.a", "res.body.b"],
               "blk": ["blk.a", "blk.b"]}
    links = [_link("c1.a.w", "c1.a", 1.0), _link("c1.b.w", "c1.b", 1.0), _link("c2.layers.a.w", "c2.layers.a", 1.0),
             _link("c2.layers.b.w", "c2.layers.b", 1.0)]
    for link, owner in zip(links, ("res.body.a", "res.body.b", "blk.a", "blk.b")):
        link["owners"] = [owner]
    pairs = [("c1.a", "res.body.a"), ("c1.b", "res.body.b"), ("c2.layers.a", "blk.a"), ("c2.layers.b", "blk.b")]
    cells = {"c1", "c1.a", "c1.b", "c2", "c2.layers", "c2.layers.a", "c2.layers.b"}
    assert sorted(find_blocks(modules, links, pairs, cells)) == [("c1", "res"), ("c2", "blk")]


def test_a_detector_head_whose_branches_run_in_another_order_agrees(tmp_path):
    """ultralytics runs every box branch and then every class branch, mindyolo box and class level by level:
    the map is right, so the numbers agree and the verdict follows them."""
    run = run_verify(project(tmp_path, "torch_two_branch_head", "ms_two_branch_head"))
    assert run.code == 0 and run.report["agree"] is True and run.report["cause"] is None, run.markdown
    assert run.report["map_problems"] == [] and run.report["order_problems"] == []


def test_errors_growing_with_depth_are_a_finding_only_when_the_outputs_leave_tolerance():
    """YOLOX-Darknet53 against mindyolo: layers deep in the head leave tolerance in the full run (float32
    rounding amplified by the exp box decode) while every layer agrees alone and the outputs stay within it."""
    rows = [_unit("a", 1e-6, 1e-7), _unit("b", 2e-4, 1e-7, inputs=1e-4)]
    assert first_divergence([], rows, [], outputs_differ=False) is None
    found = first_divergence([], rows, [], outputs_differ=True)
    assert found["kind"] == "accumulated" and found["torch"] == "b"
