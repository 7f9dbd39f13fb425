"""Blocks: models built empty, run with their weights read one block at a time, give what loaded models give."""

import weakref

import mindspore as ms
import numpy as np
import pytest
import torch
from mindspore import nn as msnn
from mindspore.nn.utils import no_init_parameters

from pt2ms.errors import Pt2MsError
from pt2ms.formats.checkpoint import open_ms_checkpoint, open_torch_checkpoint
from pt2ms.formats.tensors import from_numpy
from pt2ms.running import blocks
from pt2ms.running.blocks import MsBlockWeights, TorchBlockWeights, blocks_of_ms, blocks_of_torch, empty_ms, empty_torch


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True, use_cache=False)
    return LlamaForCausalLM(config).eval()


class TorchConvNet(torch.nn.Module):
    """A stem with BatchNorm (buffers), a ModuleList of stages and a head; a bare parameter on the model itself."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4))
        self.stages = torch.nn.ModuleList([torch.nn.Conv2d(4, 4, 3, padding=1) for _ in range(3)])
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x):
        x = self.stem(x) * self.scale
        for stage in self.stages:
            x = torch.relu(stage(x))
        return self.head(x.mean((2, 3)))


def _trained_like(model):
    """Give BatchNorm statistics values a fresh model would not have, so that loading them shows."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    return model


def test_torch_blocks_are_the_layers_and_the_rest():
    torch.manual_seed(0)
    blocks = blocks_of_torch(tiny_llama())
    assert [b.path for b in blocks] == ["model.embed_tokens", "model.layers.0", "model.layers.1", "model.layers.2",
                                        "model.norm", "lm_head"]
    assert blocks[-1].names == ("lm_head.weight",) and blocks[0].names == ("model.embed_tokens.weight",)
    assert all(b.whole for b in blocks)
    conv = blocks_of_torch(TorchConvNet())
    assert [(b.path, b.whole) for b in conv] == [("", False), ("stem", True), ("stages.0", True),
                                                 ("stages.1", True), ("stages.2", True), ("head", True)]
    assert conv[0].names == ("scale",) and conv[1].numel == 3 * 4 * 9 + 4 + 8


def test_held_llama_gives_the_loaded_models_logits_and_ends_empty(tmp_path):
    torch.manual_seed(0)
    loaded = tiny_llama()
    loaded.save_pretrained(tmp_path)  # safetensors, the tied lm_head saved once as embed_tokens
    tokens = torch.tensor([[1, 5, 9, 3, 7]])
    with torch.no_grad():
        expected = loaded(tokens).logits
    model = empty_torch(tiny_llama)
    assert all(p.is_meta for p in model.parameters())
    weights = TorchBlockWeights(model, open_torch_checkpoint(tmp_path / "model.safetensors"))
    held_while = []
    model.model.layers[1].register_forward_hook(lambda m, i, o: held_while.append(not m.mlp.up_proj.weight.is_meta))
    with torch.no_grad(), weights.hold_while_running():
        got = model(tokens).logits
    assert held_while == [True]
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert all(p.is_meta for p in model.parameters())
    assert model.lm_head.weight is model.model.embed_tokens.weight  # the tie is back as it was


def test_pth_with_buffers_and_bf16_cast(tmp_path):
    torch.manual_seed(1)
    loaded = _trained_like(TorchConvNet()).eval()
    torch.save({"state_dict": {f"module.{k}": v.to(torch.bfloat16) if v.is_floating_point() else v
                               for k, v in loaded.state_dict().items()}}, tmp_path / "w.pth")
    loaded.load_state_dict({k: v.to(torch.bfloat16) for k, v in loaded.state_dict().items()})  # same rounding
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = loaded(x)
    model = empty_torch(TorchConvNet).eval()
    weights = TorchBlockWeights(model, open_torch_checkpoint(tmp_path / "w.pth"))
    torch.testing.assert_close(model.stem[1].running_var, loaded.stem[1].running_var, rtol=0, atol=0)
    with torch.no_grad(), weights.hold_while_running():
        got = model(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert got.dtype == torch.float32 and all(p.is_meta for p in model.parameters())


def test_one_block_by_hand_and_release_after_an_error(tmp_path):
    torch.manual_seed(2)
    loaded = TorchConvNet().eval()
    torch.save(loaded.state_dict(), tmp_path / "w.pth")
    model = empty_torch(TorchConvNet).eval()
    weights = TorchBlockWeights(model, open_torch_checkpoint(tmp_path / "w.pth"))
    h = torch.randn(1, 4, 5, 5)
    with torch.no_grad(), weights.holding("stages.1") as stage:
        torch.testing.assert_close(stage(h), loaded.stages[1](h), rtol=0, atol=0)
    assert model.stages[1].weight.is_meta
    with pytest.raises(RuntimeError), weights.hold_while_running():
        model(torch.randn(1, 5, 8, 8))  # wrong channel count: fails inside the stem
    assert all(p.is_meta for p in model.parameters())


def test_a_name_the_file_lacks_is_refused_or_random(tmp_path):
    loaded = TorchConvNet()
    state = {k: v for k, v in loaded.state_dict().items() if k != "head.bias"}
    torch.save(state, tmp_path / "w.pth")
    model = empty_torch(TorchConvNet).eval()
    with pytest.raises(Pt2MsError, match="head.bias"), weights_run(model, tmp_path / "w.pth", "error"):
        pass
    with weights_run(model, tmp_path / "w.pth", "random") as weights:
        pass
    assert weights.missing == ["head.bias"]


class weights_run:
    """Run TorchConvNet once with held weights; the context gives the TorchBlockWeights."""

    def __init__(self, model, path, missing):
        self.weights = TorchBlockWeights(model, open_torch_checkpoint(path), missing=missing)

    def __enter__(self):
        with torch.no_grad(), self.weights.hold_while_running():
            self.weights.model(torch.randn(1, 3, 8, 8))
        return self.weights

    def __exit__(self, *_):
        return False


# --- MindSpore -------------------------------------------------------------------------------------------

class MsBlockNet(msnn.Cell):
    """An embedding, a CellList of Dense + LayerNorm layers, a head; a bare Parameter on the net itself."""

    def __init__(self):
        super().__init__()
        self.scale = ms.Parameter(ms.common.initializer.initializer("ones", [1], ms.float32), name="scale")
        self.embed = msnn.Embedding(20, 8)
        self.layers = msnn.CellList([msnn.SequentialCell([msnn.Dense(8, 8), msnn.LayerNorm((8,))]) for _ in range(3)])
        self.head = msnn.Dense(8, 3)

    def construct(self, tokens):
        x = self.embed(tokens) * self.scale
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


def test_ms_blocks_names_are_parameter_names():
    blocks = blocks_of_ms(MsBlockNet())
    assert [(b.path, b.whole) for b in blocks] == [("", False), ("embed", True), ("layers.0", True),
                                                   ("layers.1", True), ("layers.2", True), ("head", True)]
    assert blocks[2].names == ("layers.0.0.weight", "layers.0.0.bias", "layers.0.1.gamma", "layers.0.1.beta")


def test_held_ms_net_gives_the_loaded_nets_output_and_ends_empty(tmp_path):
    ms.set_seed(3)
    loaded = MsBlockNet()
    loaded.set_train(False)
    ms.save_checkpoint(loaded, str(tmp_path / "w.safetensors"), format="safetensors")
    tokens = ms.Tensor(np.array([[1, 4, 7, 19]], np.int32))
    expected = loaded(tokens).asnumpy()
    net = empty_ms(MsBlockNet)
    net.set_train(False)
    assert all(p.has_init for p in net.get_parameters())
    weights = MsBlockWeights(net, open_ms_checkpoint(tmp_path / "w.safetensors"))
    with weights.hold_while_running():
        got = net(tokens).asnumpy()
    np.testing.assert_array_equal(got, expected)
    assert all(p.has_init for p in net.get_parameters()) and weights.touched() == []
    with weights.hold_while_running():  # a second run reads again
        np.testing.assert_array_equal(net(tokens).asnumpy(), expected)


def test_ms_net_with_its_own_init_and_a_bf16_file(tmp_path):
    with no_init_parameters():
        net = MsBlockNet()
    net.set_train(False)
    tokens = ms.Tensor(np.array([[2, 3]], np.int32))
    weights = MsBlockWeights(net)  # stage 1: no converted checkpoint yet
    with weights.hold_while_running():
        out = net(tokens).asnumpy()
    assert out.shape == (1, 2, 3) and np.isfinite(out).all()
    assert all(p.has_init for p in net.get_parameters())
    ms.set_seed(4)
    loaded = MsBlockNet()
    loaded.set_train(False)
    ms.save_checkpoint([{"name": p.name, "data": p.astype(ms.bfloat16)} for p in loaded.get_parameters()],
                       str(tmp_path / "w.safetensors"), format="safetensors")
    for p in loaded.get_parameters():  # the same rounding, kept in float32
        p.set_data(p.astype(ms.bfloat16).astype(ms.float32))
    weights = MsBlockWeights(net, open_ms_checkpoint(tmp_path / "w.safetensors"))
    with weights.hold_while_running():
        got = net(tokens).asnumpy()
    np.testing.assert_allclose(got, loaded(tokens).asnumpy(), rtol=1e-6, atol=1e-6)


# --- released MindSpore blocks are collected -----------------------------------------------------------

def _stack():
    return msnn.CellList([msnn.Dense(64, 64) for _ in range(3)])


def _net_and_tensors():
    class Stack(msnn.Cell):
        def __init__(self):
            super().__init__()
            self.blocks = _stack()

        def construct(self, x):
            for block in self.blocks:
                x = block(x)
            return x

    net = empty_ms(Stack)
    rng = np.random.default_rng(0)
    tensors = {p.name: from_numpy(rng.standard_normal(p.shape).astype(np.float32)) for p in net.get_parameters()}
    return net, tensors


def _read_and_released(weights, path):
    """A weak reference to one Parameter the block held while materialised, taken after it was released."""
    weights.materialise(path)
    parameter = weakref.ref(weights.layer(path)._params["weight"])
    weights.release(path)
    return parameter


def test_released_parameters_are_freed_once_enough_wait(monkeypatch):
    """A MindSpore Parameter sits in a cycle with its ParamInfo: release collects, so a block read is not kept."""
    monkeypatch.setattr(blocks, "COLLECT_BYTES", 1)  # every release collects
    net, tensors = _net_and_tensors()
    assert _read_and_released(MsBlockWeights(net, tensors), "blocks.0")() is None


def test_a_collected_stack_still_computes_what_a_loaded_one_does(monkeypatch):
    monkeypatch.setattr(blocks, "COLLECT_BYTES", 1)
    net, tensors = _net_and_tensors()
    x = np.ones((2, 64), np.float32)
    with MsBlockWeights(net, tensors).hold_while_running():
        streamed = net(ms.Tensor(x)).asnumpy()
    expected = x
    for index in range(3):
        weight, bias = (tensors[f"blocks.{index}.{leaf}"].read() for leaf in ("weight", "bias"))
        expected = expected @ weight.T + bias
    np.testing.assert_allclose(streamed, expected, rtol=1e-5, atol=1e-5)
