"""Layer settings read from real torch modules and MindSpore cells into one vocabulary."""

import pytest
import torch
from mindspore import nn

from pt2ms.running.settings import differences, ms_settings, torch_settings

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


def test_same_padding_that_pads_nothing_is_no_difference():
    """A 1-wide kernel never pads; a kernel as wide as its stride pads nothing on inputs the stride divides."""
    one_by_one = differences(ms_settings(nn.Conv2d(3, 4, 1, stride=2)), torch_settings(torch.nn.Conv2d(3, 4, 1, 2, 0, bias=False)))
    assert one_by_one == []
    patchify_ms, patchify_torch = nn.Conv2d(3, 4, 4, stride=4), torch.nn.Conv2d(3, 4, 4, stride=4, bias=False)
    assert differences(ms_settings(patchify_ms, (64, 64)), torch_settings(patchify_torch, (64, 64))) == []
    # On 65 pixels 'same' pads 3 (1 before, 2 after) where PyTorch pads nothing; of unknown size, it may.
    for size in ((65, 64), None):
        found = differences(ms_settings(patchify_ms, size), torch_settings(patchify_torch, size))
        assert found == [("padding", "same", 0)]
    # Stride 2 on an odd size pads one pixel each side: the symmetric padding=1.
    assert ms_settings(nn.Conv2d(3, 4, 3, stride=2), (33, 33))["padding"] == 1
    assert ms_settings(nn.MaxPool2d(3, 2, pad_mode="same"), (32, 32))["padding"] == "same"


def test_transformers_activations_are_gelus_with_their_approximation():
    activations = pytest.importorskip("transformers.activations")
    from pt2ms.verify.pairing import kind

    exact, tanh = activations.GELUActivation(), activations.NewGELUActivation()
    assert {kind(type(layer).__name__) for layer in (exact, tanh, activations.GELUTanh(), nn.GELU(), nn.FastGelu())} \
        == {"gelu"}
    assert differences(ms_settings(nn.GELU(approximate=False)), torch_settings(exact)) == []
    assert differences(ms_settings(nn.GELU()), torch_settings(exact)) == [("approximate", "tanh", "none")]
    assert differences(ms_settings(nn.GELU()), torch_settings(tanh)) == []
    assert torch_settings(activations.GELUTanh())["approximate"] == "tanh"  # read from its partial
    assert differences(ms_settings(nn.FastGelu()), torch_settings(activations.QuickGELUActivation())) == []
