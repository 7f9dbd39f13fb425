"""A released MindSpore block's Parameters are freed when their block is released, not when the run ends."""

import weakref

import mindspore as ms
import numpy as np
from mindspore import nn as msnn

from pt2ms.formats.tensors import from_numpy
from pt2ms.running import freeing
from pt2ms.running.blocks import MsBlockWeights, empty_ms


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
    monkeypatch.setattr(freeing, "COLLECT_BYTES", 1)  # every release collects
    net, tensors = _net_and_tensors()
    weights = freeing.FreedMsBlockWeights(net, tensors)
    assert _read_and_released(weights, "blocks.0")() is None


def test_without_a_collection_a_released_parameter_lingers():
    """Why freeing.py exists: the Parameter <-> ParamInfo cycle outlives the release (fails once blocks.py frees)."""
    import gc

    net, tensors = _net_and_tensors()
    weights = MsBlockWeights(net, tensors)
    gc.disable()
    try:
        lingering = _read_and_released(weights, "blocks.1")
        assert lingering() is not None
    finally:
        gc.enable()
    gc.collect()
    assert lingering() is None


def test_a_freed_stack_still_computes_what_a_loaded_one_does(monkeypatch):
    monkeypatch.setattr(freeing, "COLLECT_BYTES", 1)
    net, tensors = _net_and_tensors()
    x = np.ones((2, 64), np.float32)
    with freeing.FreedMsBlockWeights(net, tensors).hold_while_running():
        streamed = net(ms.Tensor(x)).asnumpy()
    expected = x
    for index in range(3):
        weight, bias = (tensors[f"blocks.{index}.{leaf}"].read() for leaf in ("weight", "bias"))
        expected = expected @ weight.T + bias
    np.testing.assert_allclose(streamed, expected, rtol=1e-5, atol=1e-5)
