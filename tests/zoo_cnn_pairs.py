"""Tiny CNN pairs named like real public model zoos: torchvision on the PyTorch side, MindSpore's model zoo
(github.com/mindspore-ai/models) on the MindSpore side.

The stage-2 matcher is judged on real model pairs the hand-made cases in tests/pairs.py do not include.
Each pair here copies the *naming structure* of two real public files (attribute names, container kinds,
container nesting and definition order), shrunk to 4-48 channels and a few blocks, so both a torchvision
state dict and a zoo checkpoint would carry exactly these names, only with other sizes:

  MobileNetV2  torchvision/models/mobilenetv2.py (Conv2dNormActivation = Sequential(conv, bn, ReLU6))
               vs official/cv/MobileNet/mobilenetv2/src/mobilenetV2.py (ConvBNReLU cell holding
               `features`, InvertedResidual `conv`, MobileNetV2Backbone + MobileNetV2Head joined by
               MobileNetV2Combine(auto_prefix=False), so names start at `features.` / `dense.`)
  MobileNetV3  torchvision/models/mobilenetv3.py (features.N.block.K, SqueezeExcitation fc1/fc2, Linear
               classifier.0/.3) vs official/cv/MobileNet/mobilenetv3/src/mobilenetV3.py (flat `features`
               with the stem's conv/bn/act as items 0-2, ResUnit expand/conv1/se/conv2 of Unit conv/bn,
               SE conv1/conv2, the last 1x1 convs inside `features`, a 1x1 conv `output` head)
  DenseNet     torchvision/models/densenet.py (denseblockN.denselayerN, transitionN as a Sequential)
               vs the zoo's DenseNet-121 code as read in research/cv/PAMTRI/MultiTaskNet/src/model/DenseNet.py
               (official/cv/DenseNet/src/network/densenet.py has the same cells): `features` SequentialCell of
               an OrderedDict, `_DenseBlock.cell_list` (an empty CellList appended to, nested in a cell so the
               path is kept), `_Transition.features`
  ShuffleNetV2 torchvision/models/shufflenetv2.py (conv1, stage2-4, branch1/branch2, conv5, fc)
               vs official/cv/ShuffleNet/shufflenetv2/src/shufflenetv2.py (Megvii layout: first_conv,
               one flat `features` SequentialCell, branch_main defined before branch_proj, conv_last,
               classifier as a one-cell SequentialCell)
  ResNet-18    torchvision/models/resnet.py (BasicBlock bn1/bn2, downsample, fc)
               vs official/cv/ResNet/src/resnet.py (ResidualBlockBase bn1d/bn2d, down_sample_layer,
               end_point; res_base stem with nn.Pad + valid max pool)

Where the zoo code would not compute torchvision's function, the port follows torchvision (as a real port
must) and keeps the zoo's names; each deviation is said at the class. All ports use Conv2d pad_mode="pad"
with torch's padding, and BatchNorm with torch's eps and 1 - torch's momentum (1e-5 and 0.9; MobileNetV3:
1e-3 and 0.99).
Reference maps are built by construction, walking the same configuration on both sides.
"""
from collections import OrderedDict

import torch
from mindspore import nn as msnn
from mindspore import ops
from torch import nn as tnn

from tests.pairs import Pair

INPUT = [(1, 3, 32, 32)]


def _ms_conv(cin, cout, kernel, stride=1, group=1):
    """A bias-free MindSpore conv padded like torch's `padding=kernel // 2`."""
    return msnn.Conv2d(cin, cout, kernel, stride=stride, pad_mode="pad", padding=(kernel - 1) // 2,
                       group=group, has_bias=False)


def _ms_bn(channels):
    return msnn.BatchNorm2d(channels, eps=1e-5, momentum=0.9)


def _bn_map(ms_prefix, torch_prefix):
    """One mindspore.nn BatchNorm's entries, in MindSpore's parameter order."""
    return {f"{ms_prefix}.moving_mean": f"{torch_prefix}.running_mean",
            f"{ms_prefix}.moving_variance": f"{torch_prefix}.running_var",
            f"{ms_prefix}.gamma": f"{torch_prefix}.weight",
            f"{ms_prefix}.beta": f"{torch_prefix}.bias"}


def _conv_bn_map(ms_conv, ms_bn, torch_conv, torch_bn):
    return {f"{ms_conv}.weight": f"{torch_conv}.weight", **_bn_map(ms_bn, torch_bn)}


# ================================================================ 1. MobileNetV2

# (expand ratio t, channels c, repeats n, stride s), as torchvision's inverted_residual_setting
MOBILENET_SETTING = [[1, 8, 1, 1], [2, 8, 2, 2], [2, 12, 2, 2]]


class TvConv2dNormActivation(tnn.Sequential):
    """torchvision.ops.misc.Conv2dNormActivation: Sequential(conv, BatchNorm2d, ReLU6) -> `.0`, `.1`."""

    def __init__(self, cin, cout, kernel_size=3, stride=1, groups=1):
        super().__init__(tnn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
                         tnn.BatchNorm2d(cout), tnn.ReLU6(inplace=True))


class TvInvertedResidual(tnn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(TvConv2dNormActivation(inp, hidden_dim, kernel_size=1))
        layers.extend([TvConv2dNormActivation(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
                       tnn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
                       tnn.BatchNorm2d(oup)])
        self.conv = tnn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class TvMobileNetV2(tnn.Module):
    def __init__(self, num_classes=5, input_channel=8, last_channel=16, setting=MOBILENET_SETTING):
        super().__init__()
        features = [TvConv2dNormActivation(3, input_channel, stride=2)]
        for t, c, n, s in setting:
            for i in range(n):
                features.append(TvInvertedResidual(input_channel, c, s if i == 0 else 1, expand_ratio=t))
                input_channel = c
        features.append(TvConv2dNormActivation(input_channel, last_channel, kernel_size=1))
        self.features = tnn.Sequential(*features)
        self.classifier = tnn.Sequential(tnn.Dropout(p=0.2), tnn.Linear(last_channel, num_classes))

    def forward(self, x):
        x = tnn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


class ZooConvBNReLU(msnn.Cell):
    """The zoo's ConvBNReLU: a cell whose `features` SequentialCell holds conv, bn, ReLU6 (-> `features.0`)."""

    def __init__(self, in_planes, out_planes, kernel_size=3, stride=1, groups=1):
        super().__init__()
        conv = _ms_conv(in_planes, out_planes, kernel_size, stride, group=groups)
        self.features = msnn.SequentialCell([conv, _ms_bn(out_planes), msnn.ReLU6()])

    def construct(self, x):
        return self.features(x)


class ZooInvertedResidual(msnn.Cell):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(ZooConvBNReLU(inp, hidden_dim, kernel_size=1))
        layers.extend([ZooConvBNReLU(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
                       _ms_conv(hidden_dim, oup, 1),
                       _ms_bn(oup)])
        self.conv = msnn.SequentialCell(layers)

    def construct(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class ZooMobileNetV2Backbone(msnn.Cell):
    def __init__(self, input_channel=8, last_channel=16, setting=MOBILENET_SETTING):
        super().__init__()
        features = [ZooConvBNReLU(3, input_channel, stride=2)]
        for t, c, n, s in setting:
            for i in range(n):
                features.append(ZooInvertedResidual(input_channel, c, s if i == 0 else 1, expand_ratio=t))
                input_channel = c
        features.append(ZooConvBNReLU(input_channel, last_channel, kernel_size=1))
        self.features = msnn.SequentialCell(features)

    def construct(self, x):
        return self.features(x)


class ZooGlobalAvgPooling(msnn.Cell):
    def __init__(self, keep_dims=False):
        super().__init__()
        self.keep_dims = keep_dims

    def construct(self, x):
        return x.mean(axis=(2, 3), keep_dims=self.keep_dims)


class ZooMobileNetV2Head(msnn.Cell):
    def __init__(self, input_channel=16, num_classes=5):
        super().__init__()
        self.head = msnn.SequentialCell([ZooGlobalAvgPooling()])
        self.dense = msnn.Dense(input_channel, num_classes, has_bias=True)

    def construct(self, x):
        return self.dense(self.head(x))


class ZooMobileNetV2Combine(msnn.Cell):
    """auto_prefix=False as in the zoo: parameters keep the backbone's and head's own names."""

    def __init__(self, backbone, head):
        super().__init__(auto_prefix=False)
        self.backbone = backbone
        self.head = head

    def construct(self, x):
        return self.head(self.backbone(x))


def zoo_mobilenet_v2_pair():
    """torchvision `features.2.conv.1.0.weight` vs zoo `features.2.conv.1.features.0.weight`;
    zoo head `dense` vs torchvision `classifier.1`."""
    reference = _conv_bn_map("features.0.features.0", "features.0.features.1", "features.0.0", "features.0.1")
    index = 1
    for t, _, n, _ in MOBILENET_SETTING:
        for _ in range(n):
            ms_block, torch_block = f"features.{index}.conv", f"features.{index}.conv"
            position = 0
            if t != 1:  # expand 1x1 ConvBNReLU
                reference |= _conv_bn_map(f"{ms_block}.0.features.0", f"{ms_block}.0.features.1",
                                          f"{torch_block}.0.0", f"{torch_block}.0.1")
                position = 1
            reference |= _conv_bn_map(f"{ms_block}.{position}.features.0", f"{ms_block}.{position}.features.1",
                                      f"{torch_block}.{position}.0", f"{torch_block}.{position}.1")
            reference |= _conv_bn_map(f"{ms_block}.{position + 1}", f"{ms_block}.{position + 2}",
                                      f"{torch_block}.{position + 1}", f"{torch_block}.{position + 2}")
            index += 1
    reference |= _conv_bn_map(f"features.{index}.features.0", f"features.{index}.features.1",
                              f"features.{index}.0", f"features.{index}.1")
    reference |= {"dense.weight": "classifier.1.weight", "dense.bias": "classifier.1.bias"}
    ms_model = ZooMobileNetV2Combine(ZooMobileNetV2Backbone(), ZooMobileNetV2Head())
    return Pair("zoo_mobilenet_v2", TvMobileNetV2(), ms_model, reference, INPUT)


# ================================================================ 1b. MobileNetV3 (small layout)

# (kernel, expanded, out, use_se, activation, stride), as the zoo's cfg rows; torchvision's
# InvertedResidualConfig takes the same numbers. Expanded == in exactly when expanded == out here, so
# torchvision's test for an expand conv (expanded != in) and the zoo's (expanded != out) agree.
MOBILENET_V3_CFG = [[3, 8, 8, True, "relu", 2],
                    [3, 16, 12, False, "relu", 2],
                    [3, 24, 12, False, "relu", 1],
                    [5, 24, 16, True, "hswish", 2],
                    [5, 32, 16, True, "hswish", 1]]
MOBILENET_V3_STEM, MOBILENET_V3_LAST = 8, 32  # torchvision: lastconv = 6 * last block's out
V3_EPS, V3_MOMENTUM = 1e-3, 0.01  # torchvision's norm_layer for MobileNetV3


def _divisible(value, divisor=8):
    """Both sides' _make_divisible agree on the squeeze widths used here."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


def _v3_squeeze(expanded):
    return _divisible(expanded // 4)


class TvConvNormActV3(tnn.Sequential):
    def __init__(self, cin, cout, kernel_size=1, stride=1, groups=1, activation=tnn.Hardswish):
        layers = [tnn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
                  tnn.BatchNorm2d(cout, eps=V3_EPS, momentum=V3_MOMENTUM)]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)


class TvSqueezeExcitation(tnn.Module):
    """torchvision.ops.SqueezeExcitation with MobileNetV3's Hardsigmoid scale: `fc1`, `fc2` are biased 1x1 convs."""

    def __init__(self, input_channels, squeeze_channels):
        super().__init__()
        self.avgpool = tnn.AdaptiveAvgPool2d(1)
        self.fc1 = tnn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = tnn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = tnn.ReLU()
        self.scale_activation = tnn.Hardsigmoid()

    def forward(self, x):
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class TvInvertedResidualV3(tnn.Module):
    def __init__(self, cin, kernel, expanded, cout, use_se, activation, stride):
        super().__init__()
        act = tnn.Hardswish if activation == "hswish" else tnn.ReLU
        self.use_res_connect = stride == 1 and cin == cout
        layers = []
        if expanded != cin:
            layers.append(TvConvNormActV3(cin, expanded, 1, activation=act))
        layers.append(TvConvNormActV3(expanded, expanded, kernel, stride, groups=expanded, activation=act))
        if use_se:
            layers.append(TvSqueezeExcitation(expanded, _v3_squeeze(expanded)))
        layers.append(TvConvNormActV3(expanded, cout, 1, activation=None))
        self.block = tnn.Sequential(*layers)

    def forward(self, x):
        result = self.block(x)
        return result + x if self.use_res_connect else result


class TvMobileNetV3(tnn.Module):
    def __init__(self, cfg=MOBILENET_V3_CFG, stem=MOBILENET_V3_STEM, last_channel=MOBILENET_V3_LAST, num_classes=5):
        super().__init__()
        layers = [TvConvNormActV3(3, stem, 3, 2)]
        cin = stem
        for kernel, expanded, cout, use_se, activation, stride in cfg:
            layers.append(TvInvertedResidualV3(cin, kernel, expanded, cout, use_se, activation, stride))
            cin = cout
        layers.append(TvConvNormActV3(cin, 6 * cin, 1))
        self.features = tnn.Sequential(*layers)
        self.avgpool = tnn.AdaptiveAvgPool2d(1)
        self.classifier = tnn.Sequential(tnn.Linear(6 * cin, last_channel), tnn.Hardswish(inplace=True),
                                         tnn.Dropout(p=0.2, inplace=True), tnn.Linear(last_channel, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _ms_bn_v3(channels):
    return msnn.BatchNorm2d(channels, eps=V3_EPS, momentum=1 - V3_MOMENTUM)


class ZooActivation(msnn.Cell):
    def __init__(self, act_func):
        super().__init__()
        self.act = {"relu": msnn.ReLU, "hsigmoid": msnn.HSigmoid, "hswish": msnn.HSwish}[act_func]()

    def construct(self, x):
        return self.act(x)


class ZooSE(msnn.Cell):
    """The zoo's SE: biased 1x1 convs `conv1`, `conv2` (torchvision: `fc1`, `fc2`)."""

    def __init__(self, num_out):
        super().__init__()
        num_mid = _v3_squeeze(num_out)
        self.pool = ZooGlobalAvgPooling(keep_dims=True)
        self.conv1 = msnn.Conv2d(num_out, num_mid, 1, has_bias=True, pad_mode="pad")
        self.act1 = ZooActivation("relu")
        self.conv2 = msnn.Conv2d(num_mid, num_out, 1, has_bias=True, pad_mode="pad")
        self.act2 = ZooActivation("hsigmoid")

    def construct(self, x):
        out = self.act2(self.conv2(self.act1(self.conv1(self.pool(x)))))
        return x * out


class ZooUnit(msnn.Cell):
    """The zoo's Unit: `conv`, `bn`, optional `act` (torchvision: Conv2dNormActivation's `.0`, `.1`)."""

    def __init__(self, num_in, num_out, kernel_size=1, stride=1, num_groups=1, use_act=True, act_type="relu"):
        super().__init__()
        self.conv = msnn.Conv2d(num_in, num_out, kernel_size, stride=stride, padding=(kernel_size - 1) // 2,
                                group=num_groups, has_bias=False, pad_mode="pad")
        self.bn = _ms_bn_v3(num_out)
        self.use_act = use_act
        self.act = ZooActivation(act_type) if use_act else None

    def construct(self, x):
        out = self.bn(self.conv(x))
        if self.use_act:
            out = self.act(out)
        return out


class ZooResUnit(msnn.Cell):
    def __init__(self, num_in, num_mid, num_out, kernel_size, stride=1, act_type="relu", use_se=False):
        super().__init__()
        self.use_se = use_se
        self.first_conv = num_out != num_mid
        self.expand = ZooUnit(num_in, num_mid, 1, act_type=act_type) if self.first_conv else None
        self.conv1 = ZooUnit(num_mid, num_mid, kernel_size, stride, num_groups=num_mid, act_type=act_type)
        if use_se:
            self.se = ZooSE(num_mid)
        self.conv2 = ZooUnit(num_mid, num_out, 1, use_act=False)
        self.use_short_cut_conv = num_in == num_out and stride == 1

    def construct(self, x):
        out = self.expand(x) if self.first_conv else x
        out = self.conv1(out)
        if self.use_se:
            out = self.se(out)
        out = self.conv2(out)
        if self.use_short_cut_conv:
            out = x + out
        return out


class ZooMobileNetV3(msnn.Cell):
    """The zoo's MobileNetV3: one flat `features` SequentialCell (stem conv, bn and activation are its items
    0-2; after the blocks: last conv, bn, activation, pooling, the `cls_ch_expand` 1x1 conv, activation) and
    a 1x1 conv `output` head. Deviation: the cls_ch_expand conv has a bias here, as torchvision's Linear
    `classifier.0` has (the zoo's conv has none)."""

    def __init__(self, cfg=MOBILENET_V3_CFG, stem=MOBILENET_V3_STEM, cls_ch_expand=MOBILENET_V3_LAST, num_classes=5):
        super().__init__()
        features = [msnn.Conv2d(3, stem, 3, stride=2, padding=1, has_bias=False, pad_mode="pad"),
                    _ms_bn_v3(stem), ZooActivation("hswish")]
        inplanes = stem
        for kernel, expanded, cout, use_se, activation, stride in cfg:
            features.append(ZooResUnit(inplanes, expanded, cout, kernel, stride, activation, use_se))
            inplanes = cout
        squeeze = 6 * inplanes  # the zoo's cls_ch_squeeze
        features += [msnn.Conv2d(inplanes, squeeze, 1, has_bias=False, pad_mode="pad"), _ms_bn_v3(squeeze),
                     ZooActivation("hswish"), ZooGlobalAvgPooling(keep_dims=True),
                     msnn.Conv2d(squeeze, cls_ch_expand, 1, has_bias=True, pad_mode="pad"), ZooActivation("hswish")]
        self.features = msnn.SequentialCell(features)
        self.output = msnn.Conv2d(cls_ch_expand, num_classes, 1, has_bias=True, pad_mode="pad")

    def construct(self, x):
        return self.output(self.features(x)).squeeze(axis=(2, 3))


def zoo_mobilenet_v3_pair():
    """torchvision `features.2.block.1.0` / `block.2.fc1` / Linear `classifier.0`, `classifier.3` vs zoo
    `features.4.conv1.conv` / `se.conv1` / 1x1 convs `features.N` and `output` (reshaped); the zoo's flat
    stem shifts every block index by two."""
    reference = {"features.0.weight": "features.0.0.weight", **_bn_map("features.1", "features.0.1")}
    cin = MOBILENET_V3_STEM
    for b, (kernel, expanded, cout, use_se, activation, stride) in enumerate(MOBILENET_V3_CFG):
        ms_block, torch_block = f"features.{b + 3}", f"features.{b + 1}.block"
        position = 0
        if expanded != cin:
            reference |= _conv_bn_map(f"{ms_block}.expand.conv", f"{ms_block}.expand.bn",
                                      f"{torch_block}.0.0", f"{torch_block}.0.1")
            position = 1
        reference |= _conv_bn_map(f"{ms_block}.conv1.conv", f"{ms_block}.conv1.bn",
                                  f"{torch_block}.{position}.0", f"{torch_block}.{position}.1")
        if use_se:
            position += 1
            reference |= {f"{ms_block}.se.conv1.weight": f"{torch_block}.{position}.fc1.weight",
                          f"{ms_block}.se.conv1.bias": f"{torch_block}.{position}.fc1.bias",
                          f"{ms_block}.se.conv2.weight": f"{torch_block}.{position}.fc2.weight",
                          f"{ms_block}.se.conv2.bias": f"{torch_block}.{position}.fc2.bias"}
        reference |= _conv_bn_map(f"{ms_block}.conv2.conv", f"{ms_block}.conv2.bn",
                                  f"{torch_block}.{position + 1}.0", f"{torch_block}.{position + 1}.1")
        cin = cout
    last, blocks = f"features.{len(MOBILENET_V3_CFG) + 3}", len(MOBILENET_V3_CFG)
    reference |= _conv_bn_map(last, f"features.{blocks + 4}", f"features.{blocks + 1}.0", f"features.{blocks + 1}.1")
    squeeze = 6 * cin
    reference |= {f"features.{blocks + 7}.weight": {"torch": "classifier.0.weight",
                                                    "transform": f"reshape({MOBILENET_V3_LAST}, {squeeze}, 1, 1)"},
                  f"features.{blocks + 7}.bias": "classifier.0.bias",
                  "output.weight": {"torch": "classifier.3.weight",
                                    "transform": f"reshape(5, {MOBILENET_V3_LAST}, 1, 1)"},
                  "output.bias": "classifier.3.bias"}
    return Pair("zoo_mobilenet_v3", TvMobileNetV3(), ZooMobileNetV3(), reference, INPUT)


# ================================================================ 2. DenseNet (121 layout, 2 blocks)

DENSENET = dict(growth_rate=4, block_config=(2, 3), num_init_features=8, bn_size=2, num_classes=5)


class TvDenseLayer(tnn.Module):
    def __init__(self, num_input_features, growth_rate, bn_size):
        super().__init__()
        self.norm1 = tnn.BatchNorm2d(num_input_features)
        self.relu1 = tnn.ReLU(inplace=True)
        self.conv1 = tnn.Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1, stride=1, bias=False)
        self.norm2 = tnn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = tnn.ReLU(inplace=True)
        self.conv2 = tnn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, features):
        bottleneck = self.conv1(self.relu1(self.norm1(features)))
        return self.conv2(self.relu2(self.norm2(bottleneck)))


class TvDenseBlock(tnn.ModuleDict):
    def __init__(self, num_layers, num_input_features, bn_size, growth_rate):
        super().__init__()
        for i in range(num_layers):
            layer = TvDenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size)
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, init_features):
        features = init_features
        for layer in self.values():
            features = torch.cat([features, layer(features)], 1)
        return features


class TvTransition(tnn.Sequential):
    def __init__(self, num_input_features, num_output_features):
        super().__init__()
        self.add_module("norm", tnn.BatchNorm2d(num_input_features))
        self.add_module("relu", tnn.ReLU(inplace=True))
        self.add_module("conv", tnn.Conv2d(num_input_features, num_output_features, kernel_size=1, stride=1,
                                           bias=False))
        self.add_module("pool", tnn.AvgPool2d(kernel_size=2, stride=2))


class TvDenseNet(tnn.Module):
    def __init__(self, growth_rate, block_config, num_init_features, bn_size, num_classes):
        super().__init__()
        self.features = tnn.Sequential(OrderedDict([
            ("conv0", tnn.Conv2d(3, num_init_features, kernel_size=7, stride=2, padding=3, bias=False)),
            ("norm0", tnn.BatchNorm2d(num_init_features)),
            ("relu0", tnn.ReLU(inplace=True)),
            ("pool0", tnn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
        ]))
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", TvDenseBlock(num_layers, num_features, bn_size, growth_rate))
            num_features += num_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", TvTransition(num_features, num_features // 2))
                num_features //= 2
        self.features.add_module("norm5", tnn.BatchNorm2d(num_features))
        self.classifier = tnn.Linear(num_features, num_classes)

    def forward(self, x):
        out = torch.relu(self.features(x))
        return self.classifier(torch.flatten(tnn.functional.adaptive_avg_pool2d(out, (1, 1)), 1))


class ZooDenseLayer(msnn.Cell):
    """The zoo's _DenseLayer (its Dropout(keep_prob=1.0) holds no parameter and is left out)."""

    def __init__(self, num_input_features, growth_rate, bn_size):
        super().__init__()
        self.norm1 = _ms_bn(num_input_features)
        self.relu1 = msnn.ReLU()
        self.conv1 = _ms_conv(num_input_features, bn_size * growth_rate, 1)
        self.norm2 = _ms_bn(bn_size * growth_rate)
        self.relu2 = msnn.ReLU()
        self.conv2 = _ms_conv(bn_size * growth_rate, growth_rate, 3)

    def construct(self, features):
        bottleneck = self.conv1(self.relu1(self.norm1(features)))
        return self.conv2(self.relu2(self.norm2(bottleneck)))


class ZooDenseBlock(msnn.Cell):
    def __init__(self, num_layers, num_input_features, bn_size, growth_rate):
        super().__init__()
        self.cell_list = msnn.CellList()  # created empty and appended to, as in the zoo
        for i in range(num_layers):
            self.cell_list.append(ZooDenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size))
        self.concate = ops.Concat(axis=1)

    def construct(self, init_features):
        features = init_features
        for layer in self.cell_list:
            features = self.concate((features, layer(features)))
        return features


class ZooTransition(msnn.Cell):
    def __init__(self, num_input_features, num_output_features):
        super().__init__()
        self.features = msnn.SequentialCell(OrderedDict([
            ("norm", _ms_bn(num_input_features)),
            ("relu", msnn.ReLU()),
            ("conv", _ms_conv(num_input_features, num_output_features, 1)),
            ("pool", msnn.AvgPool2d(kernel_size=2, stride=2)),
        ]))

    def construct(self, x):
        return self.features(x)


class ZooDenseNet(msnn.Cell):
    """The zoo's DenseNet; pool0 is pad_mode="pad", padding=1 (the zoo's "same" pads only bottom/right)."""

    def __init__(self, growth_rate, block_config, num_init_features, bn_size, num_classes):
        super().__init__()
        layers = OrderedDict()
        layers["conv0"] = _ms_conv(3, num_init_features, 7, stride=2)
        layers["norm0"] = _ms_bn(num_init_features)
        layers["relu0"] = msnn.ReLU()
        layers["pool0"] = msnn.MaxPool2d(kernel_size=3, stride=2, pad_mode="pad", padding=1)
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            layers[f"denseblock{i + 1}"] = ZooDenseBlock(num_layers, num_features, bn_size, growth_rate)
            num_features += num_layers * growth_rate
            if i != len(block_config) - 1:
                layers[f"transition{i + 1}"] = ZooTransition(num_features, num_features // 2)
                num_features //= 2
        layers["norm5"] = _ms_bn(num_features)
        self.features = msnn.SequentialCell(layers)
        self.relu = msnn.ReLU()
        self.avgpool = ZooGlobalAvgPooling()
        self.classifier = msnn.Dense(num_features, num_classes, has_bias=True)

    def construct(self, x):
        return self.classifier(self.avgpool(self.relu(self.features(x))))


def zoo_densenet_pair():
    """torchvision `features.denseblock2.denselayer1.conv2` vs zoo `features.denseblock2.cell_list.0.conv2`;
    `features.transition1.conv` vs `features.transition1.features.conv`. Many layers share one signature."""
    reference = _conv_bn_map("features.conv0", "features.norm0", "features.conv0", "features.norm0")
    for b, num_layers in enumerate(DENSENET["block_config"], start=1):
        for i in range(num_layers):
            ms_layer, torch_layer = f"features.denseblock{b}.cell_list.{i}", f"features.denseblock{b}.denselayer{i + 1}"
            reference |= {**_bn_map(f"{ms_layer}.norm1", f"{torch_layer}.norm1"),
                          f"{ms_layer}.conv1.weight": f"{torch_layer}.conv1.weight",
                          **_bn_map(f"{ms_layer}.norm2", f"{torch_layer}.norm2"),
                          f"{ms_layer}.conv2.weight": f"{torch_layer}.conv2.weight"}
        if b != len(DENSENET["block_config"]):
            reference |= {**_bn_map(f"features.transition{b}.features.norm", f"features.transition{b}.norm"),
                          f"features.transition{b}.features.conv.weight": f"features.transition{b}.conv.weight"}
    reference |= {**_bn_map("features.norm5", "features.norm5"),
                  "classifier.weight": "classifier.weight", "classifier.bias": "classifier.bias"}
    return Pair("zoo_densenet", TvDenseNet(**DENSENET), ZooDenseNet(**DENSENET), reference, INPUT)


# ================================================================ 3. ShuffleNetV2

# torchvision's stages_repeats / stages_out_channels. Each stage doubles its input, so the zoo's
# Megvii channel arithmetic (branch_proj keeps `inp`, branch_main ends at `oup - inp`) gives torchvision's shapes.
SHUFFLE_REPEATS = [2, 3, 2]
SHUFFLE_CHANNELS = [6, 12, 24, 48, 16]


def _torch_channel_shuffle(x, groups):
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width).transpose(1, 2).contiguous()
    return x.view(batch, -1, height, width)


class TvShuffleInvertedResidual(tnn.Module):
    def __init__(self, inp, oup, stride):
        super().__init__()
        self.stride = stride
        branch_features = oup // 2
        if stride > 1:
            self.branch1 = tnn.Sequential(
                tnn.Conv2d(inp, inp, 3, stride, 1, bias=False, groups=inp),
                tnn.BatchNorm2d(inp),
                tnn.Conv2d(inp, branch_features, kernel_size=1, stride=1, padding=0, bias=False),
                tnn.BatchNorm2d(branch_features),
                tnn.ReLU(inplace=True))
        else:
            self.branch1 = tnn.Sequential()
        self.branch2 = tnn.Sequential(
            tnn.Conv2d(inp if stride > 1 else branch_features, branch_features, 1, 1, 0, bias=False),
            tnn.BatchNorm2d(branch_features),
            tnn.ReLU(inplace=True),
            tnn.Conv2d(branch_features, branch_features, 3, stride, 1, bias=False, groups=branch_features),
            tnn.BatchNorm2d(branch_features),
            tnn.Conv2d(branch_features, branch_features, 1, 1, 0, bias=False),
            tnn.BatchNorm2d(branch_features),
            tnn.ReLU(inplace=True))

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return _torch_channel_shuffle(out, 2)


class TvShuffleNetV2(tnn.Module):
    def __init__(self, stages_repeats=SHUFFLE_REPEATS, stages_out_channels=SHUFFLE_CHANNELS, num_classes=5):
        super().__init__()
        input_channels, output_channels = 3, stages_out_channels[0]
        self.conv1 = tnn.Sequential(tnn.Conv2d(input_channels, output_channels, 3, 2, 1, bias=False),
                                    tnn.BatchNorm2d(output_channels), tnn.ReLU(inplace=True))
        input_channels = output_channels
        self.maxpool = tnn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for name, repeats, output_channels in zip(["stage2", "stage3", "stage4"], stages_repeats,
                                                  stages_out_channels[1:]):
            seq = [TvShuffleInvertedResidual(input_channels, output_channels, 2)]
            seq += [TvShuffleInvertedResidual(output_channels, output_channels, 1) for _ in range(repeats - 1)]
            setattr(self, name, tnn.Sequential(*seq))
            input_channels = output_channels
        output_channels = stages_out_channels[-1]
        self.conv5 = tnn.Sequential(tnn.Conv2d(input_channels, output_channels, 1, 1, 0, bias=False),
                                    tnn.BatchNorm2d(output_channels), tnn.ReLU(inplace=True))
        self.fc = tnn.Linear(output_channels, num_classes)

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.fc(x.mean([2, 3]))


class ZooShuffleV2Block(msnn.Cell):
    """The zoo's (Megvii's) block names: `branch_main` (defined first), `branch_proj` only when stride is 2.

    Deviation: construct follows torchvision (split in halves, shuffle after the concat); the zoo's
    Megvii order (shuffle-split before, no shuffle after) permutes channels differently, so torchvision
    weights only compute torchvision's function with torchvision's order.
    """

    def __init__(self, inp, oup, mid_channels, *, ksize, stride):
        super().__init__()
        self.stride = stride
        pad = ksize // 2
        outputs = oup - inp
        self.branch_main = msnn.SequentialCell([
            msnn.Conv2d(inp, mid_channels, 1, 1, pad_mode="pad", padding=0, has_bias=False),
            _ms_bn(mid_channels),
            msnn.ReLU(),
            msnn.Conv2d(mid_channels, mid_channels, ksize, stride, pad_mode="pad", padding=pad,
                        group=mid_channels, has_bias=False),
            _ms_bn(mid_channels),
            msnn.Conv2d(mid_channels, outputs, 1, 1, pad_mode="pad", padding=0, has_bias=False),
            _ms_bn(outputs),
            msnn.ReLU(),
        ])
        if stride == 2:
            self.branch_proj = msnn.SequentialCell([
                msnn.Conv2d(inp, inp, ksize, stride, pad_mode="pad", padding=pad, group=inp, has_bias=False),
                _ms_bn(inp),
                msnn.Conv2d(inp, inp, 1, 1, pad_mode="pad", padding=0, has_bias=False),
                _ms_bn(inp),
                msnn.ReLU(),
            ])
        else:
            self.branch_proj = None

    def construct(self, x):
        if self.stride == 1:
            half = x.shape[1] // 2
            out = ops.concat((x[:, :half], self.branch_main(x[:, half:])), axis=1)
        else:
            out = ops.concat((self.branch_proj(x), self.branch_main(x)), axis=1)
        batch, channels, height, width = out.shape
        out = out.reshape(batch, 2, channels // 2, height, width).swapaxes(1, 2)
        return out.reshape(batch, channels, height, width)


class ZooShuffleNetV2(msnn.Cell):
    """The zoo's ShuffleNetV2 names. Deviations: max pool pads like torch (pad_mode="pad", padding=1, not
    "same"); global pool is a mean, not AvgPool2d(7); the classifier Dense has a bias (the zoo's has none,
    torchvision's fc does)."""

    def __init__(self, stage_repeats=SHUFFLE_REPEATS, stage_out_channels=SHUFFLE_CHANNELS, n_class=5):
        super().__init__()
        input_channel = stage_out_channels[0]
        self.first_conv = msnn.SequentialCell([
            msnn.Conv2d(3, input_channel, 3, 2, pad_mode="pad", padding=1, has_bias=False),
            _ms_bn(input_channel),
            msnn.ReLU(),
        ])
        self.maxpool = msnn.MaxPool2d(kernel_size=3, stride=2, pad_mode="pad", padding=1)
        features = []
        for numrepeat, output_channel in zip(stage_repeats, stage_out_channels[1:4]):
            for i in range(numrepeat):
                if i == 0:
                    features.append(ZooShuffleV2Block(input_channel, output_channel,
                                                      mid_channels=output_channel // 2, ksize=3, stride=2))
                else:
                    features.append(ZooShuffleV2Block(input_channel // 2, output_channel,
                                                      mid_channels=output_channel // 2, ksize=3, stride=1))
                input_channel = output_channel
        self.features = msnn.SequentialCell([*features])
        self.conv_last = msnn.SequentialCell([
            msnn.Conv2d(input_channel, stage_out_channels[-1], 1, 1, pad_mode="pad", padding=0, has_bias=False),
            _ms_bn(stage_out_channels[-1]),
            msnn.ReLU(),
        ])
        self.classifier = msnn.SequentialCell([msnn.Dense(stage_out_channels[-1], n_class, has_bias=True)])

    def construct(self, x):
        x = self.conv_last(self.features(self.maxpool(self.first_conv(x))))
        return self.classifier(x.mean(axis=(2, 3)))


def zoo_shufflenet_v2_pair():
    """torchvision `stage3.1.branch2.3.weight` vs zoo `features.3.branch_main.3.weight` (stages flattened into
    one SequentialCell); `branch1` vs `branch_proj`, listed after `branch_main`; `conv5`/`fc` vs
    `conv_last`/`classifier.0`."""
    reference = _conv_bn_map("first_conv.0", "first_conv.1", "conv1.0", "conv1.1")
    index = 0
    for stage, repeats in zip((2, 3, 4), SHUFFLE_REPEATS):
        for i in range(repeats):
            ms_block, torch_block = f"features.{index}", f"stage{stage}.{i}"
            for conv, bn in ((0, 1), (3, 4), (5, 6)):
                reference |= _conv_bn_map(f"{ms_block}.branch_main.{conv}", f"{ms_block}.branch_main.{bn}",
                                          f"{torch_block}.branch2.{conv}", f"{torch_block}.branch2.{bn}")
            if i == 0:
                for conv, bn in ((0, 1), (2, 3)):
                    reference |= _conv_bn_map(f"{ms_block}.branch_proj.{conv}", f"{ms_block}.branch_proj.{bn}",
                                              f"{torch_block}.branch1.{conv}", f"{torch_block}.branch1.{bn}")
            index += 1
    reference |= _conv_bn_map("conv_last.0", "conv_last.1", "conv5.0", "conv5.1")
    reference |= {"classifier.0.weight": "fc.weight", "classifier.0.bias": "fc.bias"}
    # 64x64: at 32x32 some stage-2/3 BatchNorm statistics reach the output by less than the 1e-4 the
    # parity suite asks of every mapped tensor (dead ReLUs with these seeded weights)
    return Pair("zoo_shufflenet_v2", TvShuffleNetV2(), ZooShuffleNetV2(), reference, [(1, 3, 64, 64)])


# ================================================================ 4. ResNet-18

RESNET_LAYERS = [2, 2, 2, 2]
RESNET_WIDTHS = [4, 6, 8, 12]


class TvBasicBlock(tnn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.relu = tnn.ReLU(inplace=True)
        self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class TvResNet(tnn.Module):
    def __init__(self, layers=RESNET_LAYERS, widths=RESNET_WIDTHS, num_classes=5):
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = tnn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = tnn.BatchNorm2d(self.inplanes)
        self.relu = tnn.ReLU(inplace=True)
        self.maxpool = tnn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for i, (blocks, planes) in enumerate(zip(layers, widths), start=1):
            setattr(self, f"layer{i}", self._make_layer(planes, blocks, stride=1 if i == 1 else 2))
        self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
        self.fc = tnn.Linear(widths[-1], num_classes)

    def _make_layer(self, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = tnn.Sequential(tnn.Conv2d(self.inplanes, planes, 1, stride, bias=False),
                                        tnn.BatchNorm2d(planes))
        layers = [TvBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [TvBasicBlock(planes, planes) for _ in range(1, blocks)]
        return tnn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class ZooResidualBlockBase(msnn.Cell):
    """The zoo's ResNet-18/34 block: `bn1d`, `bn2d`, `down_sample_layer` (eps 1e-5 here; the zoo's _bn uses 1e-4)."""

    def __init__(self, in_channel, out_channel, stride=1):
        super().__init__()
        self.conv1 = _ms_conv(in_channel, out_channel, 3, stride)
        self.bn1d = _ms_bn(out_channel)
        self.conv2 = _ms_conv(out_channel, out_channel, 3)
        self.bn2d = _ms_bn(out_channel)
        self.relu = msnn.ReLU()
        self.down_sample = stride != 1 or in_channel != out_channel
        self.down_sample_layer = None
        if self.down_sample:
            self.down_sample_layer = msnn.SequentialCell([_ms_conv(in_channel, out_channel, 1, stride),
                                                          _ms_bn(out_channel)])

    def construct(self, x):
        identity = x
        out = self.relu(self.bn1d(self.conv1(x)))
        out = self.bn2d(self.conv2(out))
        if self.down_sample:
            identity = self.down_sample_layer(identity)
        return self.relu(out + identity)


class ZooResNet(msnn.Cell):
    """The zoo's ResNet with res_base=True (ResNet-18): nn.Pad then a valid max pool, `end_point` head."""

    def __init__(self, layer_nums=RESNET_LAYERS, widths=RESNET_WIDTHS, num_classes=5):
        super().__init__()
        in_channels, out_channels = [widths[0]] + widths[:-1], widths
        self.conv1 = _ms_conv(3, widths[0], 7, stride=2)
        self.bn1 = _ms_bn(widths[0])
        self.relu = ops.ReLU()
        self.pad = msnn.Pad(paddings=((0, 0), (0, 0), (1, 1), (1, 1)))
        self.maxpool = msnn.MaxPool2d(kernel_size=3, stride=2, pad_mode="valid")
        for i in range(4):
            setattr(self, f"layer{i + 1}", self._make_layer(layer_nums[i], in_channels[i], out_channels[i],
                                                            stride=1 if i == 0 else 2))
        self.end_point = msnn.Dense(widths[-1], num_classes, has_bias=True)

    @staticmethod
    def _make_layer(layer_num, in_channel, out_channel, stride):
        layers = [ZooResidualBlockBase(in_channel, out_channel, stride=stride)]
        layers += [ZooResidualBlockBase(out_channel, out_channel, stride=1) for _ in range(1, layer_num)]
        return msnn.SequentialCell(layers)

    def construct(self, x):
        # the pad is safe before a max pool only because the input to it is >= 0 (after the ReLU)
        x = self.maxpool(self.pad(self.relu(self.bn1(self.conv1(x)))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.end_point(x.mean(axis=(2, 3)))


def zoo_resnet18_pair():
    """torchvision `layer2.0.bn1` / `downsample.0` / `fc` vs zoo `layer2.0.bn1d` / `down_sample_layer.0` /
    `end_point`."""
    reference = _conv_bn_map("conv1", "bn1", "conv1", "bn1")
    in_channel = RESNET_WIDTHS[0]
    for layer, (blocks, width) in enumerate(zip(RESNET_LAYERS, RESNET_WIDTHS), start=1):
        for i in range(blocks):
            block = f"layer{layer}.{i}"
            reference |= _conv_bn_map(f"{block}.conv1", f"{block}.bn1d", f"{block}.conv1", f"{block}.bn1")
            reference |= _conv_bn_map(f"{block}.conv2", f"{block}.bn2d", f"{block}.conv2", f"{block}.bn2")
            if i == 0 and (layer != 1 or in_channel != width):
                reference |= _conv_bn_map(f"{block}.down_sample_layer.0", f"{block}.down_sample_layer.1",
                                          f"{block}.downsample.0", f"{block}.downsample.1")
        in_channel = width
    reference |= {"end_point.weight": "fc.weight", "end_point.bias": "fc.bias"}
    return Pair("zoo_resnet18", TvResNet(), ZooResNet(), reference, INPUT)


ZOO_CNN_PAIRS = [
    zoo_mobilenet_v2_pair,
    zoo_mobilenet_v3_pair,
    zoo_densenet_pair,
    zoo_shufflenet_v2_pair,
    zoo_resnet18_pair,
]
