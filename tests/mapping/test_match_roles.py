"""Megatron / mcore role words (pt2ms/mapping/match_roles.py): a port after mindformers' parallel_core Qwen3,
whose forward needs an Ascend kernel, maps right against Hugging Face's Qwen3 from names and roles alone."""

import json

import numpy as np
import torch

from tests import megatron_pairs as mp
from tests.conftest import run_script, write_config

TOKENS = '[verify]\ninputs = [{ shape = [2, 6], dtype = "int64", high = 32 }]\n'


def _megatron_project(tmp_path):
    model = mp.qwen3_torch()
    torch.save(model.state_dict(), tmp_path / "qwen3.pth")
    config = write_config(tmp_path, name="qwen3", torch_model="tests.megatron_pairs:qwen3_torch",
                          ms_model="tests.megatron_pairs:qwen3_megatron", checkpoint="qwen3.pth")
    config.write_text(config.read_text().replace("[verify]\ninputs = [[2, 3, 8, 8]]\n", TOKENS))
    return config, model


def _stages_1_and_2(config):
    assert run_script("1_show.py", "--config", str(config))[0] == 0
    code, stdout, stderr = run_script("2_build_map.py", "--config", str(config))
    assert code == 0, stderr
    return stdout, json.loads((config.parent / "maps" / f"{config.stem}.json").read_text())


def test_megatron_port_maps_right_by_roles_when_the_probe_cannot_run(tmp_path):
    config, _ = _megatron_project(tmp_path)
    stdout, mapping = _stages_1_and_2(config)
    skipped = [line for line in stdout.splitlines() if line.startswith("probe skipped:")]
    assert len(skipped) == 1 and sum("FlashAttentionScore" in line for line in stdout.splitlines()) == 1
    assert "the MindSpore model's forward fails in layer decoder.layers.0.self_attention" in skipped[0]
    assert "The kernel FlashAttentionScore unregistered." in skipped[0]
    reference = mp.qwen3_reference()
    assert {name: mapping["map"][name] for name in reference} == reference
    assert set(mapping["map"]) == set(reference) and mapping["unused_torch"] == []
    # the output projection is o_proj although q_proj has its shape: the role words decide, and say so
    assert mapping["found"]["decoder.layers.1.self_attention.linear_proj.weight"]["method"] == "role"
    assert "linear_proj is o_proj" in mapping["found"]["decoder.layers.1.self_attention.linear_proj.weight"]["note"]
    for name, found in mapping["found"].items():
        assert found["confidence"] < 0.9 or found["method"] == "role", (name, found)


def test_converted_megatron_layers_compute_what_the_torch_projections_do(tmp_path):
    """The fused layouts numerically: the converted linear_qkv, reshaped as the port's construct does, gives
    q_proj, k_proj and v_proj of the same input; linear_fc1 gives gate and up row by row."""
    import mindspore as ms

    config, model = _megatron_project(tmp_path)
    _stages_1_and_2(config)
    code, stdout, stderr = run_script("3_pth2ckpt.py", "--config", str(config))
    assert code == 0 and "left at initial value 0" in stdout, stderr
    net = mp.qwen3_megatron()
    not_loaded, _ = ms.load_param_into_net(net, ms.load_checkpoint(str(tmp_path / "outputs" / "qwen3" / "qwen3.ckpt")))
    assert not_loaded == []
    x = np.random.default_rng(1).normal(size=(2, 3, mp.HIDDEN)).astype(np.float32)
    layer, hf = net.decoder.layers[1], model.model.layers[1]
    with torch.no_grad():
        q, k, v = (getattr(hf.self_attn, f"{p}_proj")(torch.from_numpy(x)).numpy() for p in "qkv")
        gate, up = hf.mlp.gate_proj(torch.from_numpy(x)).numpy(), hf.mlp.up_proj(torch.from_numpy(x)).numpy()
    rep = mp.HEADS // mp.KV_HEADS
    mixed = layer.self_attention.linear_qkv(ms.Tensor(x)).asnumpy().reshape(2, 3, mp.KV_HEADS, (rep + 2) * mp.HEAD_DIM)
    ms_q, ms_k, ms_v = np.split(mixed, [rep * mp.HEAD_DIM, (rep + 1) * mp.HEAD_DIM], axis=3)
    assert np.allclose(ms_q.reshape(2, 3, -1), q, atol=1e-6)
    assert np.allclose(ms_k.reshape(2, 3, -1), k, atol=1e-6) and np.allclose(ms_v.reshape(2, 3, -1), v, atol=1e-6)
    gate_up = layer.mlp.linear_fc1(ms.Tensor(x)).asnumpy().reshape(2, 3, mp.INTERMEDIATE, 2)
    assert np.allclose(gate_up[..., 0], gate, atol=1e-6) and np.allclose(gate_up[..., 1], up, atol=1e-6)


def test_megatron_port_maps_right_from_an_alphabetical_safetensors_without_a_torch_model(tmp_path):
    """Hugging Face's model.safetensors (keys alphabetical, no PyTorch model, so no probe and no model order):
    the roles alone still map every entry; names and shapes alone fed linear_qkv from embed_tokens (32 rows
    each) and left output_layer null."""
    from safetensors.torch import save_file

    state = dict(sorted(mp.qwen3_torch().state_dict().items()))
    save_file({name: tensor.contiguous() for name, tensor in state.items()}, str(tmp_path / "model.safetensors"))
    config = write_config(tmp_path, name="qwen3", torch_model="unused:factory",
                          ms_model="tests.megatron_pairs:qwen3_megatron", checkpoint="model.safetensors")
    config.write_text(config.read_text().replace('model = "unused:factory"\n', "")
                      .replace("[verify]\ninputs = [[2, 3, 8, 8]]\n", ""))
    stdout, mapping = _stages_1_and_2(config)
    assert "probe" not in stdout
    assert mapping["map"] == mp.qwen3_reference()
    assert {found["method"] for found in mapping["found"].values()} == {"role"}
