"""Pairs that agree in inference but train differently, for tests/verify/test_training.py (configs import them)."""

import torch.nn.functional as F
from mindspore import nn as msnn
from mindspore import ops
from torch import nn


class TorchNet(nn.Module):
    def __init__(self, dropout=0.0, inplace_relu=False):
        super().__init__()
        # torchvision's DenseNet: F.relu(features, inplace=True) right after norm5, where MindCV runs a ReLU layer.
        self.inplace_relu = inplace_relu
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.bn(self.conv(x))
        x = F.relu(x, inplace=True) if self.inplace_relu else x.relu()
        return self.fc(self.drop(x.mean(dim=(2, 3))))


class MsNet(msnn.Cell):
    def __init__(self, bn_momentum=0.9, dropout=0.0, frozen="", stop_gradient=False, running_stats=False,
                 relu_layer=False):
        super().__init__()
        self.stop_gradient = stop_gradient
        self.relu = msnn.ReLU() if relu_layer else ops.relu
        self.conv = msnn.Conv2d(3, 4, 3, pad_mode="pad", padding=1)
        # use_batch_statistics=False: running statistics in training too, as PyTorch does only in eval.
        self.bn = msnn.BatchNorm2d(4, momentum=bn_momentum, use_batch_statistics=False if running_stats else None)
        self.drop = msnn.Dropout(p=dropout) if dropout else msnn.Identity()
        self.fc = msnn.Dense(4, 3)
        for parameter in self.get_parameters():
            if parameter.name == frozen:
                parameter.requires_grad = False

    def construct(self, x):
        x = self.relu(self.bn(self.conv(x))).mean(axis=(2, 3))
        if self.stop_gradient:  # a port bug forward cannot show: no gradient reaches the layers below
            x = ops.stop_gradient(x)
        return self.fc(self.drop(x))


def torch_net(dropout=0.0, inplace_relu=False):
    return TorchNet(dropout, inplace_relu)


def ms_net(bn_momentum=0.9, dropout=0.0, frozen="", stop_gradient=False, running_stats=False, relu_layer=False):
    return MsNet(bn_momentum, dropout, frozen, stop_gradient, running_stats, relu_layer)


def torch_sum_mse():
    """A loss that sums where the other side averages."""
    return lambda output, target: ((output - target) ** 2).sum()


def ms_mean_mse():
    return lambda output, target: ops.mse_loss(output, target)
