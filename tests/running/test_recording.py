"""Execution order and per-layer records from one hooked forward pass, on both frameworks."""

import numpy as np
import torch
from mindspore import nn

from pt2ms.running.isolation import ms_weights, run_ms_cell
from pt2ms.running.recording import record_ms, record_torch


class TorchDeclaredBackwards(torch.nn.Module):
    """Declares its layers in the opposite order to the one they run in; calls `act` twice."""

    def __init__(self):
        super().__init__()
        self.last = torch.nn.Linear(4, 2)
        self.act = torch.nn.ReLU()
        self.first = torch.nn.Linear(3, 4)

    def forward(self, x):
        return self.last(self.act(self.act(self.first(x))))


class MsDeclaredBackwards(nn.Cell):
    def __init__(self):
        super().__init__()
        self.last = nn.Dense(4, 2)
        self.act = nn.ReLU()
        self.first = nn.Dense(3, 4)

    def construct(self, x):
        return self.last(self.act(self.act(self.first(x))))


def test_order_is_execution_order_with_first_calls_only():
    x = np.ones((2, 3), np.float32)
    torch_rec, _ = record_torch(TorchDeclaredBackwards(), [x], watched={"first"})
    ms_rec, _ = record_ms(MsDeclaredBackwards(), [x], watched={"first"})
    assert torch_rec.order == ["first", "act", "last"]
    assert ms_rec.order == ["first", "act", "last"]
    assert torch_rec.records["first"].inputs[0].shape == (2, 3) and torch_rec.records["first"].output[0].shape == (2, 4)
    assert set(ms_rec.records) == {"first"}


def test_a_cell_runs_alone_with_temporary_weights():
    net = MsDeclaredBackwards()
    x = np.ones((1, 3), np.float32)
    weight = np.arange(12, dtype=np.float32).reshape(4, 3)
    before = net.first.weight.asnumpy().copy()
    with ms_weights(net, {"first.weight": weight, "first.bias": np.zeros(4, np.float32)}):
        out, = run_ms_cell(net.first, [x])
        np.testing.assert_allclose(out, x @ weight.T)
    np.testing.assert_array_equal(net.first.weight.asnumpy(), before)
    assert run_ms_cell(net.first, [np.ones((1, 5), np.float32)]) is None


def test_first_line_skips_mindspores_rules_and_headings():
    from pt2ms.running.recording import first_line

    # The opening of a kernel-select TypeError as MindSpore 2.10 raises it on CPU (a bfloat16 Conv2D).
    message = ("\n----------------------------------------------------\n- Kernel select failed:\n"
               "----------------------------------------------------\nSelect CPU operator[Conv2D] fail! Unsupported "
               "data type!\nThe supported data types are input[Float32 Float32], output[Float32]\n")
    assert first_line(TypeError(message)) == "Select CPU operator[Conv2D] fail! Unsupported data type!"
    assert first_line(ValueError("shapes differ\nmore")) == "shapes differ"
    assert first_line(RuntimeError("")) == "RuntimeError"
