"""A tiny PyTorch net and its MindSpore port, importable by configs as tests.tiny_models:<factory>."""

import torch
from mindspore import nn as msnn
from torch import nn


class TorchNet(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                                      nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.norm = nn.LayerNorm(4)
        self.fc = nn.Linear(4, classes)

    def forward(self, x):
        x = self.features(x).mean(dim=(2, 3))
        return self.fc(self.norm(x))


class MsNet(msnn.Cell):
    def __init__(self, classes=3, pool_pad=0, eps=1e-5):
        super().__init__()
        pool = msnn.MaxPool2d(2, 2) if not pool_pad else msnn.MaxPool2d(2, 2, pad_mode="pad", padding=pool_pad)
        self.features = msnn.SequentialCell([
            msnn.Conv2d(3, 4, 3, pad_mode="pad", padding=1), msnn.BatchNorm2d(4, momentum=0.9), msnn.ReLU(), pool,
            msnn.Conv2d(4, 4, 3, pad_mode="pad", padding=1, has_bias=True), msnn.BatchNorm2d(4, momentum=0.9)])
        self.norm = msnn.LayerNorm((4,), epsilon=eps)
        self.classifier = msnn.Dense(4, classes)

    def construct(self, x):
        x = self.features(x).mean(axis=(2, 3))
        return self.classifier(self.norm(x))


def torch_net(classes=3):
    return TorchNet(classes)


def ms_net(classes=3, pool_pad=0, eps=1e-5):
    return MsNet(classes, pool_pad, eps)


def randomized_state_dict(model, seed=0):
    """Seeded random values for every float tensor (BatchNorm variance kept positive)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point():
            value = torch.randn(tensor.shape, generator=generator) * 0.5
            state[name] = value.abs() + 0.5 if name.endswith("running_var") else value
        else:
            state[name] = tensor.clone()
    return state
