"""MindSpore ResNet-50 in the model-zoo style, computing the same function as `resnet_torch.py`.

Cell and attribute names follow MindSpore's model zoo (`ResidualBlock`, `down_sample_layer`, `end_point`),
so the parameter names differ from torchvision's; tests/reference_maps/resnet50.json maps them.
Where MindSpore's defaults would change the function (eval mode) they are overridden:
- Conv2d defaults to pad_mode='same', which on even inputs with stride 2 pads asymmetrically (more at
  the bottom/right) where torch pads symmetrically; we use pad_mode='pad' with torch's padding.
- MaxPool2d likewise uses pad_mode='pad', padding=1 (torch pads one on each side).
- BatchNorm2d momentum is 1 - torch's (0.9 here = torch's 0.1); eps 1e-5 as in torch.
- Conv2d has_bias=False (MindSpore's default, and torchvision's ResNet convs have no bias either).
"""
import mindspore.ops as ops
from mindspore import nn


def _conv(in_channels, out_channels, kernel_size, stride=1):
    """Bias-free conv with torch's symmetric padding of kernel_size // 2."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                     pad_mode="pad", padding=kernel_size // 2, has_bias=False)


def _bn(channels):
    """BatchNorm2d with torch's eps and momentum (MindSpore's momentum is 1 - torch's)."""
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.9)


class ResidualBlock(nn.Cell):
    """Bottleneck block; out_channel is the expanded width, the stride sits on the 3x3 conv."""

    expansion = 4

    def __init__(self, in_channel, out_channel, stride=1):
        super().__init__()
        channel = out_channel // self.expansion
        self.conv1 = _conv(in_channel, channel, 1)
        self.bn1 = _bn(channel)
        self.conv2 = _conv(channel, channel, 3, stride=stride)
        self.bn2 = _bn(channel)
        self.conv3 = _conv(channel, out_channel, 1)
        self.bn3 = _bn(out_channel)
        self.relu = nn.ReLU()
        self.down_sample = stride != 1 or in_channel != out_channel
        self.down_sample_layer = None
        if self.down_sample:
            self.down_sample_layer = nn.SequentialCell([_conv(in_channel, out_channel, 1, stride=stride),
                                                        _bn(out_channel)])

    def construct(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.down_sample:
            identity = self.down_sample_layer(identity)
        return self.relu(out + identity)


class ResNet(nn.Cell):
    """Stem, four stages of ResidualBlocks, global mean, Dense head (`end_point`)."""

    def __init__(self, block, layer_nums, in_channels, out_channels, strides, num_classes):
        super().__init__()
        self.conv1 = _conv(3, 64, 7, stride=2)
        self.bn1 = _bn(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="pad", padding=1)
        self.layer1 = self._make_layer(block, layer_nums[0], in_channels[0], out_channels[0], strides[0])
        self.layer2 = self._make_layer(block, layer_nums[1], in_channels[1], out_channels[1], strides[1])
        self.layer3 = self._make_layer(block, layer_nums[2], in_channels[2], out_channels[2], strides[2])
        self.layer4 = self._make_layer(block, layer_nums[3], in_channels[3], out_channels[3], strides[3])
        self.mean = ops.ReduceMean(keep_dims=True)
        self.flatten = nn.Flatten()
        self.end_point = nn.Dense(out_channels[3], num_classes, has_bias=True)

    @staticmethod
    def _make_layer(block, layer_num, in_channel, out_channel, stride):
        """One stage: a (possibly strided, down-sampling) first block, then layer_num - 1 plain ones."""
        layers = [block(in_channel, out_channel, stride=stride)]
        layers += [block(out_channel, out_channel, stride=1) for _ in range(1, layer_num)]
        return nn.SequentialCell(layers)

    def construct(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.end_point(self.flatten(self.mean(x, (2, 3))))


def resnet50(class_num=1000):
    """Return a randomly initialised model-zoo-style ResNet-50."""
    return ResNet(ResidualBlock, [3, 4, 6, 3], [64, 256, 512, 1024], [256, 512, 1024, 2048],
                  [1, 2, 2, 2], class_num)
