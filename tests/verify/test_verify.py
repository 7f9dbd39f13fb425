"""Stage 4 finds where two models part: deliberately broken MindSpore ports, and what the report says.

Each project is a tiny PyTorch model with a seeded .pth and a MindSpore port from tests/broken_models.py,
taken through stages 1 to 3 and then verified through 4_verify.py's main(). The tests read verify.json
("first_divergence_detail", "first_divergence", "outputs", "layers") and verify.md.
"""

import json
import os
import textwrap
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from pt2ms.config import InputSpec
from pt2ms.errors import Pt2MsError
from pt2ms.running import compare
from pt2ms.stages.verify import make_inputs, overall_verdict
from tests import broken_models
from tests.conftest import run_script, write_config
from tests.tiny_models import randomized_state_dict

FACTORIES = "tests.broken_models:"
IMAGE = "inputs = [[2, 3, 8, 8]]"


def make_project(directory, torch_model="torch_conv_net", ms_model="ms_conv_net", ms_kwargs="", verify=IMAGE):
    """A project taken through stages 1-3; `verify` replaces the [verify] lines, `ms_kwargs` is a TOML table."""
    import torch

    torch.save(randomized_state_dict(getattr(broken_models, torch_model)()), directory / "weights.pth")
    config = write_config(directory, torch_model=FACTORIES + torch_model, ms_model=FACTORIES + ms_model)
    text = config.read_text().replace(IMAGE, textwrap.dedent(verify).strip())
    if ms_kwargs:
        model_line = f'model = "{FACTORIES}{ms_model}"'
        text = text.replace(model_line, f"{model_line}\nkwargs = {ms_kwargs}")
    config.write_text(text)
    for script in ("1_show.py", "2_build_map.py", "3_pth2ckpt.py"):
        code, _, stderr = run_script(script, "--config", str(config))
        assert code == 0, f"{script}: {stderr}"
    return config


def run_verify(config, *args):
    """Stage 4: exit code, stdout, verify.json and verify.md."""
    code, stdout, stderr = run_script("4_verify.py", "--config", str(config), *args)
    out = config.parent / "outputs" / "tiny"
    assert (out / "verify.json").exists(), stderr
    return SimpleNamespace(code=code, stdout=stdout, report=json.loads((out / "verify.json").read_text()),
                           markdown=(out / "verify.md").read_text(), config=config)


def layer(report, torch_name):
    return next(item for item in report["layers"] if item["torch"] == torch_name)


def labelled(report):
    """{output label: verdict} of batch 0."""
    return {row["output"]: row["verdict"] for row in report["outputs"] if row["batch"] == 0}


def assert_reported(run):
    """The divergence text reaches verify.json, verify.md under its heading, and stdout."""
    text = run.report["first_divergence"]
    assert text and text == run.report["first_divergence_detail"]["text"]
    assert f"## Where the models part\n\n{text}\n" in run.markdown
    assert text in run.stdout


@pytest.fixture(scope="module")
def pool_run(tmp_path_factory):
    """MaxPool2d(3, 2) padded TF-style (pad_mode="same": after only) where PyTorch pads 1 on each side."""
    return run_verify(make_project(tmp_path_factory.mktemp("pool"), ms_kwargs='{ pool_pad_mode = "same" }'))


@pytest.fixture(scope="module")
def epsilon_run(tmp_path_factory):
    """BatchNorm2d at MindSpore's default eps 1e-5 where PyTorch's uses 1e-3."""
    return run_verify(make_project(tmp_path_factory.mktemp("eps"), ms_kwargs="{ bn_eps = 1e-5 }"))


# --- 1-3: the report names the place -------------------------------------------------------------------

def test_an_entry_reading_another_layers_tensor_is_blamed_on_the_map(tmp_path):
    config = make_project(tmp_path)
    map_path = tmp_path / "maps" / "tiny.json"
    data = json.loads(map_path.read_text())
    entries = data["map"]
    # Two (4,)-shaped scales trade places: the second BatchNorm's and the LayerNorm's.
    assert (entries["features.5.gamma"], entries["norm.gamma"]) == ("features.5.weight", "norm.weight")
    entries["features.5.gamma"], entries["norm.gamma"] = "norm.weight", "features.5.weight"
    map_path.write_text(json.dumps(data, indent=2))
    assert run_script("3_pth2ckpt.py", "--config", str(config))[0] == 0
    run = run_verify(config)
    detail = run.report["first_divergence_detail"]
    assert run.code == 1 and run.report["agree"] is False
    # Isolation pairs the layers through the same map, so only the map itself can show this: it is named.
    assert (detail["kind"], detail["torch"], detail["mindspore"]) == ("map", "features.5", "features.5")
    assert {"features.5.gamma", "norm.gamma"} <= set(detail["entries"])
    assert "`features.5.gamma` <- `norm.weight`" in run.report["first_divergence"]
    assert run.report["cause"].startswith("The map is wrong")
    assert "## Map problems" in run.markdown
    assert_reported(run)


def test_pooling_padding_is_named_at_the_pool(pool_run):
    detail = pool_run.report["first_divergence_detail"]
    assert pool_run.code == 1 and pool_run.report["agree"] is False
    # The MaxPool2d owns no parameter, yet it is paired, isolated and its settings compared.
    assert (detail["kind"], detail["after"], detail["torch"]) == ("in layer", "features.2", "features.3")
    assert [(item["setting"], item["mindspore_value"], item["torch_value"]) for item in detail["settings"]] == \
        [("padding", "same", 1)]
    pool = layer(pool_run.report, "features.3")
    assert pool["kind"] == "parameter-free" and pool["isolated"]["verdict"] == "differ"
    text = pool_run.report["first_divergence"]
    assert text.startswith("The models part at `features.3` (MaxPool2d") and "padding: MindSpore 'same', PyTorch 1" in text
    assert "| `features.3` | `features.3` | MaxPool2d | padding | 'same' | 1 |" in pool_run.markdown
    assert_reported(pool_run)


def test_shape_changing_pooling_padding_is_named_at_the_pool(tmp_path):
    """pad_mode="valid" makes the pooled map 3x3 instead of 4x4: the pool itself changes the size."""
    run = run_verify(make_project(tmp_path, ms_kwargs='{ pool_pad_mode = "valid" }'))
    detail = run.report["first_divergence_detail"]
    assert run.code == 1 and run.report["agree"] is False
    assert (detail["kind"], detail["after"], detail["torch"]) == ("in layer", "features.2", "features.3")
    # Layers whose inputs differ in shape are divergence, not "not compared".
    conv = layer(run.report, "features.4")
    assert conv["verdict"] == "differ" and conv["sizes_differ"] is True and conv["inputs"]["sizes_differ"] is True
    assert conv["inputs"]["shape_ms"] == [[2, 4, 3, 3]] and conv["inputs"]["shape_torch"] == [[2, 4, 4, 4]]
    assert "its output differs (72 values where PyTorch has 128)" in run.report["first_divergence"]
    assert "padding: MindSpore 0, PyTorch 1" in run.report["first_divergence"]
    assert "| sizes differ |" in run.markdown
    assert_reported(run)


def test_values_of_another_size_or_shape_differ():
    """Different sizes cannot be compared value by value, and are a difference; so is [2, 1] against [2]."""
    assert compare.verdict(compare.metrics(np.zeros(3), np.zeros(4)), 1e-4) == "differ"
    same_values = compare.metrics(np.ones((2, 1)), np.ones(2))
    assert same_values["compared"] == 2 and same_values["relative"] == 0.0 and same_values["shapes_differ"]
    assert compare.verdict(same_values, 1e-4) == "differ"
    # Two empty arrays of one shape are not a difference, only nothing to compare.
    assert compare.verdict(compare.metrics(np.zeros((0, 3)), np.zeros((0, 3))), 1e-4) == "not compared"


def test_normalisation_epsilon_parts_in_that_layer(epsilon_run):
    detail = epsilon_run.report["first_divergence_detail"]
    assert epsilon_run.code == 1 and epsilon_run.report["agree"] is False
    assert (detail["kind"], detail["torch"], detail["mindspore"], detail["after"]) == \
        ("in layer", "features.1", "features.1", "features.0")
    text = epsilon_run.report["first_divergence"]
    assert "features.1" in text and "BatchNorm2d" in text and "epsilon" in text
    assert_reported(epsilon_run)


# --- 4: isolation mode -----------------------------------------------------------------------------------

def test_isolation_clears_a_layer_that_only_inherits_the_difference(pool_run):
    conv = layer(pool_run.report, "features.4")
    assert conv["verdict"] == "differ" and compare.verdict(conv["inputs"], 1e-4) == "differ"
    assert conv["isolated"]["verdict"] in ("agree", "agree within float noise")
    assert layer(pool_run.report, "features.1")["verdict"] in ("agree", "agree within float noise")


def test_isolation_convicts_the_layer_that_computes_differently(epsilon_run):
    norm = layer(epsilon_run.report, "features.1")
    assert norm["verdict"] == "differ" and norm["isolated"]["verdict"] == "differ"
    assert compare.verdict(norm["inputs"], 1e-4) != "differ"
    # Downstream layers with the right epsilon inherit the difference but agree when fed PyTorch's inputs.
    assert layer(epsilon_run.report, "features.4")["isolated"]["verdict"] != "differ"


# --- 5: comparing nothing is never agreement -------------------------------------------------------------

def test_unpairable_cells_are_not_verified_even_when_outputs_agree(tmp_path):
    config = make_project(tmp_path, "torch_linear_net", "ms_bare_net", verify="inputs = [[2, 4]]")
    run = run_verify(config)
    assert run.report["outputs"][0]["verdict"] == "agree"  # the port itself is right
    assert run.code == 1 and run.report["agree"] is False and run.report["verdict"] == "not compared"
    assert run.report["layers_paired"] == 0
    assert run.report["reasons"] == ["no layer could be paired through the map"]
    assert "NOT VERIFIED" in run.markdown and "no layer could be paired through the map" in run.markdown
    # The outputs were compared: the headline names what is missing, not "nothing was compared".
    assert "**Verdict: NOT VERIFIED: no layer could be paired through the map**" in run.markdown
    assert "nothing was compared" not in run.markdown
    assert "not verified: no layer could be paired" in run.stdout
    # Asking for outputs only, the same pair is verified.
    config.write_text(config.read_text().replace("[verify]\n", "[verify]\nlayers = false\n"))
    assert run_verify(config).code == 0


def test_all_null_map_is_not_agreement(tmp_path):
    config = make_project(tmp_path)
    map_path = tmp_path / "maps" / "tiny.json"
    data = json.loads(map_path.read_text())
    data["map"] = dict.fromkeys(data["map"])
    map_path.write_text(json.dumps(data, indent=2))
    code, _, stderr = run_script("3_pth2ckpt.py", "--config", str(config))
    assert code == 2 and "nothing to convert" in stderr
    # Stage 4 finds the checkpoint of the earlier run. Verifying it is refused (2) or, as now, it pairs no
    # layer through the all-null map and is not agreement (1); either way never 0.
    code, _, stderr = run_script("4_verify.py", "--config", str(config))
    assert code in (1, 2)
    if code == 2:
        assert stderr.startswith("error: ") and stderr.count("\n") == 1
    else:
        report = json.loads((tmp_path / "outputs" / "tiny" / "verify.json").read_text())
        assert report["agree"] is False and report["layers_paired"] == 0
        assert "no layer could be paired through the map" in report["reasons"]


@pytest.fixture
def empty_output_run(tmp_path):
    """A model whose output holds no value ([0, 3]): both models run, their layer agrees, no output is compared."""
    return run_verify(make_project(tmp_path, "torch_no_rows_net", "ms_no_rows_net", verify="inputs = [[2, 4]]"))


def test_empty_output_is_not_agreement(empty_output_run):
    report = empty_output_run.report
    assert empty_output_run.code == 1 and report["agree"] is False
    assert report["verdict"] == "not compared" and report["reasons"] == ["no output was compared"]
    assert "**Verdict: NOT VERIFIED: nothing was compared**" in empty_output_run.markdown
    assert layer(report, "fc")["verdict"] == "agree"


def test_empty_output_is_not_reported_as_a_difference(empty_output_run):
    # Nothing was compared and every layer agrees, so nothing can be said to differ.
    assert empty_output_run.report["first_divergence"] is None
    assert "outputs differ" not in empty_output_run.stdout
    assert "## Where the models part" not in empty_output_run.markdown


def test_zero_size_input_is_refused(tmp_path):
    with pytest.raises(Pt2MsError, match=r"\[verify\] inputs: input 1 has shape \[0, 4\]"):
        make_inputs([InputSpec(shape=[2, 4]), InputSpec(shape=[0, 4])], seed=0)
    config = make_project(tmp_path, "torch_linear_net", "ms_bare_net", verify="inputs = [[2, 4]]")
    config.write_text(config.read_text().replace("inputs = [[2, 4]]", "inputs = [[0, 4]]"))
    code, _, stderr = run_script("4_verify.py", "--config", str(config))  # refused when the config is read
    assert code == 2 and stderr.startswith(f"error: {config}: [verify] inputs: input 0 ") and stderr.count("\n") == 1
    assert not (tmp_path / "outputs" / "tiny" / "verify.json").exists()


def test_a_difference_outweighs_what_could_not_be_compared():
    unpaired = ["no layer could be paired through the map"]
    assert overall_verdict([{"verdict": "agree"}, {"verdict": "differ"}], unpaired) == "differ"
    assert overall_verdict([{"verdict": "agree"}], unpaired) == "not compared"
    # Otherwise the worst of the outputs compared; an empty output beside them does not hide their agreement.
    outputs = [{"verdict": "agree"}, {"verdict": "agree within float noise"}, {"verdict": "not compared"}]
    assert overall_verdict(outputs, []) == "agree within float noise"


def test_a_missing_output_is_not_reported_as_agreement(tmp_path):
    run = run_verify(make_project(tmp_path, "torch_dict_net", "ms_dict_net", ms_kwargs="{ drop_sum = true }",
                                  verify="inputs = [[2, 4]]"))
    assert labelled(run.report)["output['hidden'][1]"] in ("not compared", "differ")
    assert run.code == 1 and run.report["agree"] is False
    # The headline must not call a port that lacks an output "agree".
    assert run.report["verdict"] not in ("agree", "agree within float noise")
    assert "**Verdict: the models agree" not in run.markdown
    # A missing output is a difference, and the output MindSpore gives instead is reported too.
    assert run.report["verdict"] == "differ" and labelled(run.report)["output['hidden'][1]"] == "differ"
    assert "`output['hidden'][1]`: MindSpore gives no output here" in run.markdown
    assert "`output['hidden']`: only MindSpore gives this output" in run.markdown


def test_an_extra_mindspore_output_is_reported(tmp_path):
    run = run_verify(make_project(tmp_path, "torch_dict_net", "ms_dict_net", ms_kwargs="{ extra = true }",
                                  verify="inputs = [[2, 4]]"))
    assert labelled(run.report) == {"output['logits']": "agree", "output['hidden'][0]": "agree",
                                    "output['hidden'][1]": "agree", "output['extra']": "differ"}
    assert run.code == 1 and run.report["verdict"] == "differ"
    assert "`output['extra']`: only MindSpore gives this output" in run.markdown
    # The cause is the outputs themselves, with the [verify] outputs line that pairs those both give.
    detail = run.report["first_divergence_detail"]
    assert detail["kind"] == "outputs" and "output['extra']" in run.report["cause"], run.report["cause"]
    line = 'outputs = { torch = ["logits", "hidden"], mindspore = ["logits", "hidden"] }'
    assert detail["outputs_line"] == line and line in run.markdown
    config = run.config
    config.write_text(config.read_text().replace("inputs = [[2, 4]]", f"inputs = [[2, 4]]\n{line}"))
    again = run_verify(config)
    assert again.code == 0 and again.report["agree"] is True, again.markdown


def test_a_port_returning_a_tuple_for_a_bare_tensor_is_told_which_positions_pair(tmp_path):
    """PyTorch returns one tensor, the port (logits, features): position 0 pairs with position 0."""
    run = run_verify(make_project(tmp_path, "torch_conv_net", "ms_conv_net", ms_kwargs="{ with_features = true }"))
    assert run.code == 1 and run.report["first_divergence_detail"]["kind"] == "outputs", run.markdown
    assert run.report["first_divergence_detail"]["outputs_line"] == "outputs = { torch = [0], mindspore = [0] }"


def test_an_output_of_another_shape_differs(tmp_path):
    """[2, 1] where PyTorch gives [2]: the same values, yet code indexing the output would break."""
    run = run_verify(make_project(tmp_path, "torch_dict_net", "ms_dict_net", ms_kwargs="{ keep_dims = true }",
                                  verify="inputs = [[2, 4]]"))
    row = next(row for row in run.report["outputs"] if row["output"] == "output['hidden'][1]")
    assert row["verdict"] == "differ" and row["shapes_differ"] is True
    assert (row["shape_ms"], row["shape_torch"]) == ([2, 1], [2]) and row["relative"] <= compare.EXACT
    assert run.code == 1 and run.report["verdict"] == "differ"
    assert "shapes differ: MindSpore [2, 1], PyTorch [2]" in run.markdown


def test_non_finite_errors_are_written_as_strict_json(tmp_path):
    run = run_verify(make_project(tmp_path, "torch_dict_net", "ms_dict_net", ms_kwargs="{ hidden_offset = nan }",
                                  verify="inputs = [[2, 4]]"))

    def refuse(token):
        raise ValueError(f"verify.json holds {token}, which is not JSON")

    report = json.loads((tmp_path / "outputs" / "tiny" / "verify.json").read_text(), parse_constant=refuse)
    row = next(row for row in report["outputs"] if row["output"] == "output['hidden'][1]")
    assert row["verdict"] == "differ" and row["relative"] is None and row["max_abs"] is None
    assert (row["non_finite_ms"], row["non_finite_torch"]) == (2, 0)
    assert run.code == 1 and report["verdict"] == "differ"


def test_a_map_edited_after_the_checkpoint_is_flagged_not_refused(tmp_path):
    config = make_project(tmp_path)
    ckpt, map_path = tmp_path / "outputs" / "tiny" / "tiny.ckpt", tmp_path / "maps" / "tiny.json"
    earlier = map_path.stat().st_mtime_ns - 60 * 10**9
    os.utime(ckpt, ns=(earlier, earlier))  # as if the map had been edited a minute after stage 3
    run = run_verify(config)
    warning = "map changed after the checkpoint was written: rerun 3_pth2ckpt.py"
    assert run.code == 0 and run.report["agree"] is True
    assert warning in run.report["warnings"][0] and f"warning: {warning}" in run.stdout
    assert f"**Warning:** {warning}" in run.markdown
    # Converting again clears it.
    assert run_script("3_pth2ckpt.py", "--config", str(config))[0] == 0
    assert run_verify(config).report["warnings"] == []


def test_an_activation_fused_into_the_layer_is_a_boundary_not_a_difference(tmp_path):
    run = run_verify(make_project(tmp_path, "torch_mlp_net", "ms_fused_mlp_net", verify="inputs = [[2, 4]]"))
    assert run.code == 0 and run.report["agree"] is True
    up = layer(run.report, "up")
    assert up["verdict"] == "boundary differs" and up["isolated"]["verdict"] == "differ"
    assert layer(run.report, "down")["verdict"] in ("agree", "agree within float noise")
    assert "0 differ in the full run, 0 on their own (isolated), 1 where the ports split the work" in run.stdout


def test_fused_attention_through_the_whole_pipeline_agrees(tmp_path):
    """GPT-2's fused (in, 3*out) c_attn into separate dense1/2/3: mapped, converted, verified, no layer flagged."""
    import torch

    from tests.mapping.test_pairs_parity import fill_torch_weights
    from tests.zoo_transformer_pairs import gpt2_torch

    model = gpt2_torch()
    fill_torch_weights(model, seed=0)
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    config = write_config(tmp_path, torch_model="tests.zoo_transformer_pairs:gpt2_torch",
                          ms_model="tests.zoo_transformer_pairs:gpt2_ms")
    config.write_text(config.read_text().replace(IMAGE, 'inputs = [{ shape = [2, 6], dtype = "int64", high = 20 }]'))
    for script in ("1_show.py", "2_build_map.py", "3_pth2ckpt.py"):
        code, _, stderr = run_script(script, "--config", str(config))
        assert code == 0, f"{script}: {stderr}"
    run = run_verify(config)
    assert run.code == 0 and run.report["agree"] is True
    assert [row["torch"] for row in run.report["layers"] if row["verdict"] == "differ"] == []
    assert "c_attn" not in {row["torch"].rpartition(".")[2] for row in run.report["layers"]}


# --- 6: integer inputs, several inputs, nested outputs --------------------------------------------------

def test_integer_inputs_stay_in_their_range():
    ids, = make_inputs([InputSpec(shape=[2, 5], dtype="int64", low=0, high=10)], seed=0)
    assert ids.dtype == np.int64 and ids.shape == (2, 5) and 0 <= ids.min() and ids.max() < 10
    assert len(np.unique(ids)) > 1


def test_embedding_pair_with_integer_inputs(tmp_path):
    run = run_verify(make_project(tmp_path, "torch_embed_net", "ms_embed_net",
                                  verify='inputs = [{ shape = [2, 5], dtype = "int64", low = 0, high = 10 }]'))
    assert run.code == 0 and run.report["agree"] is True and run.report["inputs"] == [[2, 5]]
    assert [item["torch"] for item in run.report["layers"]] == ["embed", "fc"]
    assert layer(run.report, "embed")["compared"] == 2 * 5 * 4


def test_two_positional_inputs_and_a_tuple_compared_element_by_element(tmp_path):
    config = make_project(tmp_path, "torch_two_input_net", "ms_two_input_net", verify="inputs = [[2, 4], [2, 6]]")
    run = run_verify(config)
    assert run.code == 0 and run.report["inputs"] == [[2, 4], [2, 6]]
    assert labelled(run.report) == {"output[0]": "agree", "output[1]": "agree"}
    config.write_text(config.read_text().replace(f'model = "{FACTORIES}ms_two_input_net"',
                                                 f'model = "{FACTORIES}ms_two_input_net"\nkwargs = {{ reuse_right = true }}'))
    run = run_verify(config)
    assert run.code == 1 and labelled(run.report) == {"output[0]": "differ", "output[1]": "agree"}


def test_dict_holding_a_tuple_compared_element_by_element(tmp_path):
    config = make_project(tmp_path, "torch_dict_net", "ms_dict_net", verify="inputs = [[2, 4]]")
    run = run_verify(config)
    expected = ["output['logits']", "output['hidden'][0]", "output['hidden'][1]"]
    assert run.code == 0 and list(labelled(run.report)) == expected
    config.write_text(config.read_text().replace(f'model = "{FACTORIES}ms_dict_net"',
                                                 f'model = "{FACTORIES}ms_dict_net"\nkwargs = {{ hidden_offset = 0.5 }}'))
    run = run_verify(config)
    assert run.code == 1 and labelled(run.report) == dict(zip(expected, ["agree", "agree", "differ"]))
    # Every layer agrees: the difference is after them, in forward()'s own arithmetic.
    assert run.report["first_divergence_detail"]["kind"] == "after layers"
    assert "`output['hidden'][1]`" in run.markdown


# --- 7: a user's dataset ---------------------------------------------------------------------------------

def test_dataset_batches_feed_both_frameworks(tmp_path):
    broken_models.MyDataset.reads.clear()
    config = make_project(tmp_path, verify="""\
        dataset = "tests.broken_models:MyDataset"
        dataset_kwargs = { length = 5 }
        batch_size = 2
        batches = 3
        dataset_inputs = 1""")
    run = run_verify(config)
    report = run.report
    assert run.code == 0 and report["agree"] is True, run.stdout
    assert report["batches"] == 3 and report["inputs"] == [[2, 3, 8, 8]]  # the label field is not an input
    assert [row["batch"] for row in report["outputs"]] == [0, 1, 2]
    # 5 samples in batches of 2: the last batch holds one sample (3 logits) on both sides.
    assert [row["compared"] for row in report["outputs"]] == [6, 6, 3]
    assert len({row["scale"] for row in report["outputs"]}) == 3  # three different batches
    assert not any("different first batches" in note for note in report["load_notes"])
    # Both pipelines (DataLoader and GeneratorDataset) read every sample.
    reads = Counter(broken_models.MyDataset.reads)
    assert all(reads[index] >= 2 for index in range(5)), reads


def test_dataset_with_a_broken_port_differs_in_every_batch(tmp_path):
    config = make_project(tmp_path, ms_kwargs="{ bn_eps = 1e-5 }", verify="""\
        dataset = "tests.broken_models:MyDataset"
        batch_size = 2
        batches = 2
        dataset_inputs = 1""")
    run = run_verify(config)
    assert run.code == 1 and [row["verdict"] for row in run.report["outputs"]] == ["differ", "differ"]
    assert run.report["first_divergence_detail"]["torch"] == "features.1"


# --- 8: tolerance and the verdict words ------------------------------------------------------------------

def test_verdict_rules_as_documented():
    assert compare.verdict({"compared": 1, "relative": compare.EXACT}, 1e-4) == "agree"
    assert compare.verdict({"compared": 1, "relative": 2e-6}, 1e-4) == "agree within float noise"
    assert compare.verdict({"compared": 1, "relative": 1e-4}, 1e-4) == "agree within float noise"
    assert compare.verdict({"compared": 1, "relative": 2e-4}, 1e-4) == "differ"
    assert compare.verdict({"compared": 1, "relative": 2e-4}, 1e-3) == "agree within float noise"
    assert compare.verdict({"compared": 0}, 1e-4) == "not compared"


def test_tolerance_from_config_and_command_line(tmp_path):
    config = make_project(tmp_path, ms_kwargs="{ bn_eps = 1e-5 }")
    error = run_verify(config).report["outputs"][0]["relative"]
    assert 1e-4 < error < 1e-2  # an epsilon error: above the default tolerance, far below a wrong weight

    config.write_text(config.read_text().replace("[verify]\n", "[verify]\ntolerance = 1e-2\n"))
    run = run_verify(config)
    # The outputs now agree, but the layer evidence does not: the BatchNorm computes something else.
    assert run.code == 1 and run.report["verdict"] == "differ" and run.report["outputs_agree"] is True
    assert run.report["tolerance"] == 1e-2 and labelled(run.report) == {"output": "agree within float noise"}
    assert "outputs stay within tolerance, but the models compute differently inside" in run.markdown
    assert run.report["first_divergence_detail"]["torch"] == "features.1"

    # Outputs only: the tolerance decides, from the config and from the command line on both sides of the error.
    config.write_text(config.read_text().replace("[verify]\n", "[verify]\nlayers = false\n"))
    run = run_verify(config)
    assert run.code == 0 and run.report["agree"] is True and run.report["verdict"] == "agree within float noise"
    assert "**Verdict: the models agree within float noise**" in run.markdown
    assert run.report["first_divergence"] is None
    run = run_verify(config, "--tolerance", str(error * 0.99))
    assert run.code == 1 and run.report["verdict"] == "differ" and run.report["tolerance"] == error * 0.99
    assert "**Verdict: the models DIFFER**" in run.markdown
    assert any(line.startswith("differ: worst relative error") for line in run.stdout.splitlines())
    run = run_verify(config, "--tolerance", str(error * 1.01))
    assert run.code == 0 and run.report["verdict"] == "agree within float noise"


def test_correct_port_agrees_to_float32_rounding(tmp_path):
    run = run_verify(make_project(tmp_path), "--tolerance", "1e-9")
    # "agree" is a fixed threshold (EXACT), independent of the tolerance.
    assert run.report["outputs"][0]["relative"] <= compare.EXACT
    assert run.code == 0 and run.report["agree"] is True and run.report["verdict"] == "agree"
    assert run.report["layers_paired"] == 6 and run.report["first_divergence"] is None
    assert run.report["warnings"] == []
    assert "**Verdict: the models agree (to float32 rounding)**" in run.markdown
    assert "## Where the models part" not in run.markdown


def test_position_0_of_a_bare_tensor_is_the_whole_tensor():
    import mindspore as ms

    from pt2ms.stages.verify import _select

    logits = ms.Tensor(np.arange(20, dtype=np.float32).reshape(2, 10))
    [picked] = _select(logits, [0], "MindSpore", "cfg")
    assert picked.shape == (2, 10)
    assert _select((logits, logits[0]), [1], "MindSpore", "cfg")[0].shape == (10,)  # a tuple: its element
    with pytest.raises(Pt2MsError, match="one tensor"):
        _select(logits, [1], "MindSpore", "cfg")
