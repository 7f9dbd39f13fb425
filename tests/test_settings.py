"""Layer settings read from real torch modules and MindSpore cells into one vocabulary."""

import pytest
import torch
from mindspore import nn

from pt2ms.settings import differences, ms_settings, torch_settings

SAME = [
    ("conv with symmetric padding", lambda: torch.nn.Conv2d(3, 4, 3, stride=2, padding=1),
     lambda: nn.Conv2d(3, 4, 3, stride=2, pad_mode="pad", padding=1, has_bias=True)),
    ("pad_mode same at stride 1 is symmetric", lambda: torch.nn.Conv2d(3, 4, 3, padding=1, bias=False),
     lambda: nn.Conv2d(3, 4, 3)),
    ("Conv1d's extra MindSpore dim", lambda: torch.nn.Conv1d(3, 4, 3, padding=1), lambda: nn.Conv1d(3, 4, 3, has_bias=True)),
    ("BatchNorm momentum, each in its own convention", lambda: torch.nn.BatchNorm2d(4, momentum=0.01),
     lambda: nn.BatchNorm2d(4, momentum=0.99)),
    ("exact GELU", lambda: torch.nn.GELU(), lambda: nn.GELU(approximate=False)),
    ("padded max pool", lambda: torch.nn.MaxPool2d(3, 2, 1), lambda: nn.MaxPool2d(3, 2, pad_mode="pad", padding=1)),
]
DIFFER = [
    ("pad_mode same at stride 2", lambda: torch.nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False),
     lambda: nn.Conv2d(3, 4, 3, stride=2), {"padding": ("same", 1)}),
    ("BatchNorm momentum copied across conventions", lambda: torch.nn.BatchNorm2d(4, momentum=0.1),
     lambda: nn.BatchNorm2d(4, momentum=0.1), {"momentum": (0.9, 0.1)}),
    ("LayerNorm epsilon default", lambda: torch.nn.LayerNorm(4), lambda: nn.LayerNorm((4,)), {"eps": (1e-7, 1e-5)}),
    ("GELU default", lambda: torch.nn.GELU(), lambda: nn.GELU(), {"approximate": ("tanh", "none")}),
    ("count_include_pad", lambda: torch.nn.AvgPool2d(3, 2, 1, count_include_pad=False),
     lambda: nn.AvgPool2d(3, 2, pad_mode="pad", padding=1), {"count_include_pad": (True, False)}),
    ("align_corners", lambda: torch.nn.Upsample(scale_factor=2, mode="bilinear"),
     lambda: nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=True), {"align_corners": (True, False)}),
    ("built-in activation", lambda: torch.nn.Linear(3, 4), lambda: nn.Dense(3, 4, activation="relu"),
     {"activation": ("ReLU", None)}),
]


@pytest.mark.parametrize("case", SAME, ids=[case[0] for case in SAME])
def test_equivalent_settings_agree(case):
    _, make_torch, make_ms = case
    assert differences(ms_settings(make_ms()), torch_settings(make_torch())) == []


@pytest.mark.parametrize("case", DIFFER, ids=[case[0] for case in DIFFER])
def test_settings_that_change_the_math_are_named(case):
    _, make_torch, make_ms, expected = case
    found = {key: (ms, pt) for key, ms, pt in differences(ms_settings(make_ms()), torch_settings(make_torch()))}
    assert found == expected
