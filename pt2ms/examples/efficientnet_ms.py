"""MindSpore port of EfficientNet-b0 as built by `efficientnet_pytorch` 0.7.1 (seed 002's example).

It computes the same function as `EfficientNet.from_name('efficientnet-b0', num_classes=...)` in eval
mode, for inputs of the fixed image size it was built for (224 by default): the PyTorch model pads
every convolution with a "same" padding computed once from that size, which can be asymmetric
(one more row/column at the bottom/right), so this port does the same with `pad_mode='pad'`.

Parameter names follow the blog the example comes from: `_conv_stem.weight`, `_bn0.gamma`, ...,
then block N's parameters as `N._depthwise_conv.weight`, `N._bn1.moving_mean`, ..., then
`_conv_head.weight`, `_bn1.*`, `_fc.*`. The `N.` (not `_blocks.N.`) comes from MindSpore itself:
a cell appended to an existing `CellList` is named by its index only, while its attribute path
stays `_blocks.N....`.
"""

import math

from mindspore import nn, ops

# efficientnet-b0's stages, as in efficientnet_pytorch.utils.efficientnet():
# (num_repeat, kernel_size, stride, expand_ratio, input_filters, output_filters, se_ratio)
B0_STAGES = (
    (1, 3, 1, 1, 32, 16, 0.25),
    (2, 3, 2, 6, 16, 24, 0.25),
    (2, 5, 2, 6, 24, 40, 0.25),
    (3, 3, 2, 6, 40, 80, 0.25),
    (3, 5, 1, 6, 80, 112, 0.25),
    (4, 5, 2, 6, 112, 192, 0.25),
    (1, 3, 1, 6, 192, 320, 0.25),
)
# PyTorch uses momentum 1 - 0.99 = 0.01; MindSpore's momentum is the complement of PyTorch's.
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3


def same_padding(image_size, kernel_size, stride):
    """Return TensorFlow-style "same" padding (top, bottom, left, right) for a square input."""
    out_size = math.ceil(image_size / stride)
    total = max((out_size - 1) * stride + kernel_size - image_size, 0)
    # The odd pixel goes to the bottom/right, as in Conv2dStaticSamePadding's ZeroPad2d.
    return (total // 2, total - total // 2, total // 2, total - total // 2)


def conv_same(in_channels, out_channels, kernel_size, image_size, stride=1, groups=1, bias=False):
    """Return a Conv2d padded like efficientnet_pytorch's Conv2dStaticSamePadding."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, pad_mode='pad',
                     padding=same_padding(image_size, kernel_size, stride), group=groups,
                     has_bias=bias)


def batch_norm(num_features):
    """Return a BatchNorm2d with EfficientNet's epsilon and momentum."""
    return nn.BatchNorm2d(num_features, eps=BN_EPSILON, momentum=BN_MOMENTUM)


class Swish(nn.Cell):
    """Swish activation, x * sigmoid(x)."""

    def construct(self, x):
        return x * ops.sigmoid(x)


def drop_connect(x, drop_rate):
    """Zero whole samples with probability drop_rate and rescale the rest (training only)."""
    keep_prob = 1.0 - drop_rate
    # ops.rand warns it is deprecated, but mint.rand has no CPU kernel (InplaceUniform) in 2.10.
    mask = ops.floor(keep_prob + ops.rand((x.shape[0], 1, 1, 1), dtype=x.dtype))
    return x / keep_prob * mask


class MBConvBlock(nn.Cell):
    """Mobile inverted bottleneck block with squeeze-excitation."""

    def __init__(self, kernel_size, stride, expand_ratio, input_filters, output_filters, se_ratio,
                 image_size):
        super().__init__()
        self.expand_ratio = expand_ratio
        self.has_skip = stride == 1 and input_filters == output_filters
        hidden = input_filters * expand_ratio
        if expand_ratio != 1:
            self._expand_conv = conv_same(input_filters, hidden, 1, image_size)
            self._bn0 = batch_norm(hidden)
        self._depthwise_conv = conv_same(hidden, hidden, kernel_size, image_size, stride=stride,
                                         groups=hidden)
        self._bn1 = batch_norm(hidden)
        squeezed = max(1, int(input_filters * se_ratio))
        self._se_reduce = conv_same(hidden, squeezed, 1, 1, bias=True)
        self._se_expand = conv_same(squeezed, hidden, 1, 1, bias=True)
        self._project_conv = conv_same(hidden, output_filters, 1, math.ceil(image_size / stride))
        self._bn2 = batch_norm(output_filters)
        self._swish = Swish()

    def construct(self, inputs, drop_connect_rate=0.0):
        x = inputs
        if self.expand_ratio != 1:
            x = self._swish(self._bn0(self._expand_conv(x)))
        x = self._swish(self._bn1(self._depthwise_conv(x)))

        squeezed = ops.mean(x, (2, 3), keep_dims=True)
        squeezed = self._se_expand(self._swish(self._se_reduce(squeezed)))
        x = ops.sigmoid(squeezed) * x

        x = self._bn2(self._project_conv(x))
        if self.has_skip:
            if self.training and drop_connect_rate:
                x = drop_connect(x, drop_connect_rate)
            x = x + inputs
        return x


class EfficientNet(nn.Cell):
    """EfficientNet backbone with a global-average-pool, dropout and linear classifier."""

    def __init__(self, stages=B0_STAGES, num_classes=1000, image_size=224, dropout_rate=0.2,
                 drop_connect_rate=0.2):
        super().__init__()
        self.drop_connect_rate = drop_connect_rate
        stem_filters = stages[0][4]
        self._conv_stem = conv_same(3, stem_filters, 3, image_size, stride=2)
        self._bn0 = batch_norm(stem_filters)
        image_size = math.ceil(image_size / 2)

        # Appending to an empty CellList (like PyTorch's ModuleList([]) + append) names block N's
        # parameters "N.<...>", the names seed 002's checkpoint uses.
        self._blocks = nn.CellList()
        for num_repeat, kernel, stride, expand, in_filters, out_filters, se_ratio in stages:
            self._blocks.append(MBConvBlock(kernel, stride, expand, in_filters, out_filters,
                                            se_ratio, image_size))
            image_size = math.ceil(image_size / stride)
            for _ in range(num_repeat - 1):
                self._blocks.append(MBConvBlock(kernel, 1, expand, out_filters, out_filters,
                                                se_ratio, image_size))

        head_filters = 1280
        self._conv_head = conv_same(stages[-1][5], head_filters, 1, image_size)
        self._bn1 = batch_norm(head_filters)
        self._dropout = nn.Dropout(p=dropout_rate)
        self._fc = nn.Dense(head_filters, num_classes)
        self._swish = Swish()

    def extract_features(self, inputs):
        """Return the output of the head convolution (N, 1280, H/32, W/32)."""
        x = self._swish(self._bn0(self._conv_stem(inputs)))
        num_blocks = len(self._blocks)
        for index, block in enumerate(self._blocks):
            # Deeper blocks are dropped more often; the rate only matters in training.
            x = block(x, self.drop_connect_rate * index / num_blocks)
        return self._swish(self._bn1(self._conv_head(x)))

    def construct(self, inputs):
        x = self.extract_features(inputs)
        x = ops.mean(x, (2, 3))
        return self._fc(self._dropout(x))


def efficientnet_b0(num_classes=3, image_size=224, dropout_rate=0.2, drop_connect_rate=0.2):
    """Return an EfficientNet-b0 Cell (random init) matching efficientnet_pytorch's, in eval mode."""
    return EfficientNet(B0_STAGES, num_classes=num_classes, image_size=image_size,
                        dropout_rate=dropout_rate, drop_connect_rate=drop_connect_rate)
