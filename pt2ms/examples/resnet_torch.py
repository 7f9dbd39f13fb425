"""PyTorch ResNet-50 whose state-dict keys are exactly torchvision's.

Written from scratch because torchvision cannot be imported beside the pinned torch. The block is
torchvision's Bottleneck ("v1.5"): the stride sits on the 3x3 conv, not on the first 1x1 conv.
The MindSpore twin is `resnet_ms.py`; the name map between them is tests/reference_maps/resnet50.json.
"""
from torch import nn


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 residual block with a 4x channel expansion."""

    expansion = 4

    def __init__(self, in_channels, width, stride=1, downsample=None):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Stem, four stages of Bottleneck blocks, global average pool, linear head."""

    def __init__(self, blocks_per_stage, num_classes=1000):
        super().__init__()
        self.in_channels = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_stage(64, blocks_per_stage[0], stride=1)
        self.layer2 = self._make_stage(128, blocks_per_stage[1], stride=2)
        self.layer3 = self._make_stage(256, blocks_per_stage[2], stride=2)
        self.layer4 = self._make_stage(512, blocks_per_stage[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)

    def _make_stage(self, width, num_blocks, stride):
        out_channels = width * Bottleneck.expansion
        downsample = None
        if stride != 1 or self.in_channels != out_channels:
            downsample = nn.Sequential(
                nn.Conv2d(self.in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        blocks = [Bottleneck(self.in_channels, width, stride, downsample)]
        self.in_channels = out_channels
        blocks += [Bottleneck(out_channels, width) for _ in range(1, num_blocks)]
        return nn.Sequential(*blocks)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def resnet50(num_classes=1000):
    """Return a randomly initialised ResNet-50 with torchvision's state-dict keys."""
    return ResNet([3, 4, 6, 3], num_classes=num_classes)
