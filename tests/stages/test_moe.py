"""Mixture-of-Experts through all four stages: transformers 5's Qwen3-MoE, from a save_pretrained folder (one
tensor per expert) and from a fused in-memory state dict, into a port with mindformers' stacked, transposed
experts: maps right, converts exactly, verifies `agree`, and reverses byte for byte."""

import json
import textwrap

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import save_file

from pt2ms.formats.checkpoint import open_ms_checkpoint
from pt2ms.mapping import transforms
from tests.conftest import run_script
from tests.zoo_moe_pairs import qwen3_moe_reference, qwen3_moe_torch, save_folder

SOURCES = ["per-expert folder", "fused state dict"]


def moe_project(directory, source, ms_model="qwen3_moe_ms"):
    """A config for the MoE pair; returns (config path, the PyTorch tensors as the checkpoint holds them)."""
    if source == "per-expert folder":
        save_folder(directory / "moe")
        torch_lines, holds = 'checkpoint = "moe"', load_numpy(directory / "moe" / "model.safetensors")
    else:
        state = {name: tensor.contiguous() for name, tensor in qwen3_moe_torch().state_dict().items()}
        save_file(state, directory / "moe.safetensors")
        torch_lines = 'checkpoint = "moe.safetensors"\nmodel = "tests.zoo_moe_pairs:qwen3_moe_torch"'
        holds = {name: tensor.numpy() for name, tensor in state.items()}
    config = directory / "moe.toml"
    config.write_text(textwrap.dedent("""\
        name = "moe"
        [torch]
        {torch}
        [mindspore]
        model = "tests.zoo_moe_pairs:{ms_model}"
        [verify]
        inputs = [{{ shape = [2, 7], dtype = "int64", low = 0, high = 32 }}]
        [paths]
        maps = "maps"
        outputs = "outputs"
        """).format(torch=torch_lines, ms_model=ms_model))
    return config, holds


@pytest.mark.parametrize("source", SOURCES)
def test_moe_experts_map_convert_verify_and_reverse(tmp_path, source):
    config, holds = moe_project(tmp_path, source)
    for script in ("1_show.py", "2_build_map.py", "3_pth2ckpt.py"):
        code, stdout, stderr = run_script(script, "--config", str(config))
        assert code == 0, f"{script}: {stdout}{stderr}"
    data = json.loads((tmp_path / "maps" / "moe.json").read_text())
    reference = qwen3_moe_reference(fused=source != "per-expert folder")
    wrong = {name: (data["map"].get(name), value) for name, value in reference.items()
             if data["map"].get(name) != value}
    assert not wrong, wrong
    assert data["found"]["decoder.layers.0.mlp.router.fi_accu"]["method"] == "no source"
    assert "no source" in data["found"]["decoder.layers.0.mlp.router.fi_accu"]["note"]
    assert data["unused_torch"] == []
    assert data["found"]["decoder.layers.1.mlp.experts.weight1"]["chosen"] == "concatenated"  # the probe agrees
    # Exactly the numbers the transforms give, expert by expert.
    converted = open_ms_checkpoint(tmp_path / "outputs" / "moe" / "moe.ckpt")
    for ms_name, entry in reference.items():
        if isinstance(entry, dict):
            sources = entry["torch"] if isinstance(entry["torch"], list) else [entry["torch"]]
            expected = transforms.apply(transforms.parse(entry["transform"]), [holds[name] for name in sources])
            assert np.array_equal(converted[ms_name].read(), expected), ms_name
    weight1 = converted["decoder.layers.1.mlp.experts.weight1"].read().reshape(4, 16, 16)  # [E, H, 2F]
    gate_of_expert_2 = holds["model.layers.1.mlp.experts.gate_up_proj"][2, :8] if "fused" in source else \
        holds["model.layers.1.mlp.experts.2.gate_proj.weight"]
    assert np.array_equal(weight1[2][:, :8], gate_of_expert_2.T)   # expert 2's gate, transposed, first half
    code, stdout, stderr = run_script("4_verify.py", "--config", str(config))
    report = json.loads((tmp_path / "outputs" / "moe" / "verify.json").read_text())
    assert code == 0 and report["agree"] is True, stdout + stderr
    code, stdout, stderr = run_script("3_pth2ckpt.py", "--config", str(config), "--reverse")
    assert code == 0, stdout + stderr
    back = torch.load(tmp_path / "outputs" / "moe" / "moe.reversed.pth", weights_only=True)
    assert back.keys() == holds.keys()
    for name, array in holds.items():
        assert back[name].numpy().tobytes() == array.tobytes(), name


def test_a_real_miss_is_still_refused_beside_a_counter_with_no_source(tmp_path):
    config, _ = moe_project(tmp_path, "fused state dict")
    assert run_script("1_show.py", "--config", str(config))[0] == 0
    assert run_script("2_build_map.py", "--config", str(config))[0] == 0
    map_path = tmp_path / "maps" / "moe.json"
    data = json.loads(map_path.read_text())
    for section in ("map", "suggested"):  # as if stage 2 had found nothing for layer 0's experts
        data[section]["decoder.layers.0.mlp.experts.weight2"] = None
    data["found"]["decoder.layers.0.mlp.experts.weight2"] = {"method": "none", "confidence": 0.0, "note": ""}
    map_path.write_text(json.dumps(data))
    code, stdout, stderr = run_script("3_pth2ckpt.py", "--config", str(config))
    assert code == 2 and "1 MindSpore parameter(s) would keep their initial (random) values" in stderr, stderr
    assert "left at initial value: decoder.layers.0.mlp.experts.weight2" in stdout + stderr
    assert "fi_accu" not in stdout + stderr


def test_the_probe_settles_interleaved_gate_and_up(tmp_path):
    config, _ = moe_project(tmp_path, "fused state dict", ms_model="qwen3_moe_ms_interleaved")
    assert run_script("1_show.py", "--config", str(config))[0] == 0
    assert run_script("2_build_map.py", "--config", str(config))[0] == 0
    data = json.loads((tmp_path / "maps" / "moe.json").read_text())
    for layer in range(2):
        name = f"decoder.layers.{layer}.mlp.experts.weight1"
        assert data["map"][name] == {"torch": f"model.layers.{layer}.mlp.experts.gate_up_proj", "transform":
                                     "reshape(4, 2, 8, 16) | transpose(1, 2) | reshape(4, 16, 16) | transpose(1, 2) | "
                                     "reshape(64, 16)"}
        assert data["found"][name]["method"] == "probed" and data["found"][name]["chosen"] == "interleaved"


def test_without_a_probe_the_port_familys_layout_decides(tmp_path):
    config, _ = moe_project(tmp_path, "per-expert folder", ms_model="qwen3_moe_ms_ascend")
    assert run_script("1_show.py", "--config", str(config))[0] == 0
    code, stdout, stderr = run_script("2_build_map.py", "--config", str(config))
    assert code == 0 and "probe skipped: the MindSpore model's forward fails" in stdout, stdout + stderr
    data = json.loads((tmp_path / "maps" / "moe.json").read_text())
    reference = qwen3_moe_reference(fused=False)
    assert {name: data["map"][name] for name in reference} == reference
    found = data["found"]["decoder.layers.0.mlp.experts.weight1"]
    assert found["method"] == "experts" and found["confidence"] == 0.9  # not lowered: the family's rule settles it
