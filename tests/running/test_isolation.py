"""Running a MindSpore cell alone: with pairs of its same-shaped layers swapped, weights put back after."""

import numpy as np
from mindspore import nn

from pt2ms.running.isolation import run_ms_cell, same_shaped_layers, swapped_runs


class Twins(nn.Cell):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Dense(4, 4), nn.Dense(4, 4), nn.Dense(4, 2)

    def construct(self, x):
        return self.head(self.b(self.a(x)))


def test_same_shaped_layers_are_swapped_whole_then_parameter_by_parameter():
    net = Twins()
    names = [(first, second) for (first, _), (second, _) in same_shaped_layers(net, 10)]
    assert names[0] == ("a", "b")  # the two Dense(4, 4), weight and bias together
    assert ("a.weight", "b.weight") in names and ("a.bias", "b.bias") in names
    assert ("a.bias", "head.bias") not in names  # shapes (4,) and (2,)
    assert len(same_shaped_layers(net, 2)) == 2


def test_a_swapped_run_equals_the_cell_with_the_layers_exchanged_and_leaves_the_weights_as_they_were():
    net, x = Twins(), np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    before = {p.name: p.asnumpy().copy() for p in net.get_parameters()}
    (pair, output), *_ = swapped_runs(net, [x], 1)
    assert pair == ("a", "b")
    weight = lambda name: before[name].T
    expected = ((x @ weight("b.weight") + before["b.bias"]) @ weight("a.weight") + before["a.bias"]) @ \
        weight("head.weight") + before["head.bias"]
    assert np.allclose(output[0], expected, atol=1e-5)
    assert all(np.array_equal(p.asnumpy(), before[p.name]) for p in net.get_parameters())
    assert np.allclose(run_ms_cell(net, [x])[0], ((x @ weight("a.weight") + before["a.bias"]) @ weight("b.weight")
                                                  + before["b.bias"]) @ weight("head.weight") + before["head.bias"],
                       atol=1e-5)
