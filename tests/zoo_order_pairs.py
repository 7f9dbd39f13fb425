"""Pairs that names and shapes map wrong and the models' own order and settings map right (issue 9).

Each copies the naming structure of real public code, shrunk to a few channels and blocks:

  YOLOX Darknet  PyTorch: Megvii-BaseDetection/YOLOX yolox/models/darknet.py (Darknet: `stem`, `dark2`,
                 `dark3` Sequentials that start with their stride-2 BaseConv and hold ResLayers
                 `layer1`/`layer2` after it: dark3.0, dark3.1 .. dark3.N; BaseConv conv/bn/act), inside
                 YOLOX -> YOLOFPN, so names start `backbone.backbone.`.
                 MindSpore: mindspore-lab/mindyolo configs/yolox/yolox-darknet53.yaml (one flat CellList of
                 layers `model.model.N`: the stride-2 ConvNormAct a layer of its own, then the Bottlenecks
                 `cv1`/`cv2` as one SequentialCell: 5 = dark3.0, 6.0 .. 6.N-1 = dark3.1 .. dark3.N).
                 The stride-2 conv has the kernel shape of each block's 3x3 conv.
  Shortcut       a bottleneck whose 1x1 projection shortcut (stride 2) has the shape of the block's first 1x1
                 conv (stride 1). PyTorch after torchvision's ResNet (conv1..3, bn1..3, `downsample` declared
                 and run last); MindSpore after the dual-path blocks of mindcv's dpn.py (the projection
                 `c1x1_w` declared and run first, then `c1x1_a`, `c3x3_b`, `c1x1_c`).
  MobileNetV2    PyTorch: torchvision mobilenetv2.py (features.0 = Conv2dNormActivation, features.K.conv.J);
                 MindSpore: mindspore-lab/mindcv mindcv/models/mobilenetv2.py (the stem's conv, bn, ReLU6 are
                 features.0-2, so every block sits two places later; InvertedResidual `layers` one flat
                 SequentialCell: conv, bn, ReLU6, conv, bn, ReLU6, conv, bn).

Where the zoo code would compute something else, the port follows PyTorch and keeps the zoo's names (mindyolo's
BatchNorm eps 1e-3 is torch's 1e-5 here). The LLaMA pair with a Hugging Face `model.safetensors` (keys stored
alphabetically) is tests/zoo_llm_pairs.py's, saved that way in tests/running/test_order.py.
"""
import torch
from mindspore import nn as msnn
from mindspore import ops
from torch import nn as tnn

from tests.pairs import Pair
from tests.zoo_cnn_pairs import TvMobileNetV2, _bn_map, _conv_bn_map, _ms_bn, _ms_conv

INPUT = [(1, 3, 32, 32)]


# ================================================================ YOLOX Darknet vs mindyolo

OUTPUT_SCALE = 5e-4  # float32 error 1.2e-5 and the weakest nudge 7.8e-4 at this scale (both tests: 1e-4)
DARKNET_BLOCKS = (1, 2, 8, 8)  # ResLayers in stem, dark2, dark3, dark4 (Darknet-53: 1, then 2, 8, 8, 4)


class YxBaseConv(tnn.Module):
    def __init__(self, cin, cout, ksize, stride=1):
        super().__init__()
        self.conv = tnn.Conv2d(cin, cout, ksize, stride, (ksize - 1) // 2, bias=False)
        self.bn = tnn.BatchNorm2d(cout)
        self.act = tnn.LeakyReLU(0.1)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class YxResLayer(tnn.Module):
    def __init__(self, channels):
        super().__init__()
        self.layer1 = YxBaseConv(channels, channels // 2, 1)
        self.layer2 = YxBaseConv(channels // 2, channels, 3)

    def forward(self, x):
        return x + self.layer2(self.layer1(x))


def _group(cin, blocks, stride=2):
    """Darknet.make_group_layer: the stride-2 conv first, then the blocks."""
    return [YxBaseConv(cin, cin * 2, 3, stride), *[YxResLayer(cin * 2) for _ in range(blocks)]]


class YxDarknet(tnn.Module):
    def __init__(self, stem_channels=2, blocks=DARKNET_BLOCKS):
        super().__init__()
        self.stem = tnn.Sequential(YxBaseConv(3, stem_channels, 3), *_group(stem_channels, blocks[0]))
        self.dark2 = tnn.Sequential(*_group(stem_channels * 2, blocks[1]))
        self.dark3 = tnn.Sequential(*_group(stem_channels * 4, blocks[2]))
        self.dark4 = tnn.Sequential(*_group(stem_channels * 8, blocks[3]))

    def forward(self, x):
        return self.dark4(self.dark3(self.dark2(self.stem(x))))


class YxYOLOFPN(tnn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = YxDarknet()

    def forward(self, x):
        return self.backbone(x)


class YxYOLOX(tnn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = YxYOLOFPN()

    def forward(self, x):
        # Scaled down: residual blocks on random weights grow the features to ~1e3, where float32 rounding
        # alone exceeds the parity test's absolute tolerance (YOLOX's neck and heads would follow here).
        return self.backbone(x) * OUTPUT_SCALE


class MyConvNormAct(msnn.Cell):
    def __init__(self, cin, cout, k, s=1):
        super().__init__()
        self.conv = _ms_conv(cin, cout, k, s)
        self.bn = _ms_bn(cout)
        self.act = msnn.LeakyReLU(0.1)

    def construct(self, x):
        return self.act(self.bn(self.conv(x)))


class MyBottleneck(msnn.Cell):
    def __init__(self, channels):
        super().__init__()
        self.cv1 = MyConvNormAct(channels, channels // 2, 1)
        self.cv2 = MyConvNormAct(channels // 2, channels, 3)

    def construct(self, x):
        return x + self.cv2(self.cv1(x))


class MyModel(msnn.Cell):
    """mindyolo's parsed model: one flat list of layers; `number > 1` becomes a SequentialCell."""

    def __init__(self, stem_channels=2, blocks=DARKNET_BLOCKS):
        super().__init__()
        c = stem_channels
        layers = [MyConvNormAct(3, c, 3)]
        for blocks_here in blocks:
            layers.append(MyConvNormAct(c, c * 2, 3, 2))
            c *= 2
            bottlenecks = [MyBottleneck(c) for _ in range(blocks_here)]
            layers.append(bottlenecks[0] if blocks_here == 1 else msnn.SequentialCell(bottlenecks))
        self.model = msnn.CellList(layers)

    def construct(self, x):
        for layer in self.model:
            x = layer(x)
        return x


class MyYOLOX(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.model = MyModel()

    def construct(self, x):
        return self.model(x) * OUTPUT_SCALE


def _conv_norm_act_map(ms, torch_prefix):
    return _conv_bn_map(f"{ms}.conv", f"{ms}.bn", f"{torch_prefix}.conv", f"{torch_prefix}.bn")


def yolox_darknet_vs_mindyolo_pair():
    """torch dark3.0 (stride-2 conv) + dark3.1..3 vs mindyolo model.model.5 + model.model.6.0..2."""
    reference = _conv_norm_act_map("model.model.0", "backbone.backbone.stem.0")
    index = 1
    for stage, blocks in zip(("stem", "dark2", "dark3", "dark4"), DARKNET_BLOCKS):
        start = 1 if stage == "stem" else 0  # the stem's group follows its first conv
        torch_stage = f"backbone.backbone.{stage}"
        reference |= _conv_norm_act_map(f"model.model.{index}", f"{torch_stage}.{start}")
        for block in range(blocks):
            ms_block = f"model.model.{index + 1}" + (f".{block}" if blocks > 1 else "")
            torch_block = f"{torch_stage}.{start + 1 + block}"
            reference |= _conv_norm_act_map(f"{ms_block}.cv1", f"{torch_block}.layer1")
            reference |= _conv_norm_act_map(f"{ms_block}.cv2", f"{torch_block}.layer2")
        index += 2
    return Pair("yolox_darknet_vs_mindyolo", YxYOLOX(), MyYOLOX(), reference, INPUT)


# ================================================================ a projection shortcut declared first vs last

SHORTCUT_STAGES = ((8, 16, 2), (16, 32, 2))  # (in, out = width, first block's stride); two blocks each


class TvBottleneck(tnn.Module):
    """torchvision's Bottleneck with expansion 1 (width = out), stride on conv2, downsample last."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1, self.bn1 = tnn.Conv2d(cin, cout, 1, bias=False), tnn.BatchNorm2d(cout)
        self.conv2, self.bn2 = tnn.Conv2d(cout, cout, 3, stride, 1, bias=False), tnn.BatchNorm2d(cout)
        self.conv3, self.bn3 = tnn.Conv2d(cout, cout, 1, bias=False), tnn.BatchNorm2d(cout)
        self.relu = tnn.ReLU()
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class TvShortcutNet(tnn.Module):
    def __init__(self, num_classes=5):
        super().__init__()
        self.conv1, self.bn1 = tnn.Conv2d(3, 8, 3, 1, 1, bias=False), tnn.BatchNorm2d(8)
        for index, (cin, cout, stride) in enumerate(SHORTCUT_STAGES, start=1):
            setattr(self, f"layer{index}", tnn.Sequential(TvBottleneck(cin, cout, stride), TvBottleneck(cout, cout)))
        self.fc = tnn.Linear(SHORTCUT_STAGES[-1][1], num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(x.mean((2, 3)))


class CvConvBn(msnn.Cell):
    def __init__(self, cin, cout, k, s=1):
        super().__init__()
        self.conv, self.bn = _ms_conv(cin, cout, k, s), _ms_bn(cout)

    def construct(self, x):
        return self.bn(self.conv(x))


class CvProjectionBlock(msnn.Cell):
    """mindcv dpn.py's block layout: the projection `c1x1_w` first (declared and run), then a, b, c."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.has_proj = stride != 1 or cin != cout
        if self.has_proj:
            self.c1x1_w = CvConvBn(cin, cout, 1, stride)
        self.c1x1_a = CvConvBn(cin, cout, 1)
        self.c3x3_b = CvConvBn(cout, cout, 3, stride)
        self.c1x1_c = CvConvBn(cout, cout, 1)
        self.relu = msnn.ReLU()

    def construct(self, x):
        shortcut = self.c1x1_w(x) if self.has_proj else x
        out = self.relu(self.c1x1_a(x))
        out = self.relu(self.c3x3_b(out))
        return self.relu(self.c1x1_c(out) + shortcut)


class CvShortcutNet(msnn.Cell):
    def __init__(self, num_classes=5):
        super().__init__()
        self.conv1_0 = CvConvBn(3, 8, 3)
        blocks = []
        for cin, cout, stride in SHORTCUT_STAGES:
            blocks += [CvProjectionBlock(cin, cout, stride), CvProjectionBlock(cout, cout)]
        self.features = msnn.SequentialCell(blocks)
        self.classifier = msnn.Dense(SHORTCUT_STAGES[-1][1], num_classes)

    def construct(self, x):
        x = self.features(ops.relu(self.conv1_0(x)))
        return self.classifier(x.mean(axis=(2, 3)))


def shortcut_declared_first_vs_last_pair():
    """torch layerN.0.downsample.0 (1x1, stride 2, last) vs port features.K.c1x1_w (first), both the shape of
    conv1 / c1x1_a (1x1, stride 1)."""
    reference = _conv_bn_map("conv1_0.conv", "conv1_0.bn", "conv1", "bn1")
    block = 0
    for stage in range(1, len(SHORTCUT_STAGES) + 1):
        for index in range(2):
            ms, pt = f"features.{block}", f"layer{stage}.{index}"
            if index == 0:
                reference |= _conv_bn_map(f"{ms}.c1x1_w.conv", f"{ms}.c1x1_w.bn", f"{pt}.downsample.0",
                                          f"{pt}.downsample.1")
            for ms_part, number in (("c1x1_a", 1), ("c3x3_b", 2), ("c1x1_c", 3)):
                reference |= _conv_bn_map(f"{ms}.{ms_part}.conv", f"{ms}.{ms_part}.bn", f"{pt}.conv{number}",
                                          f"{pt}.bn{number}")
            block += 1
    reference |= {"classifier.weight": "fc.weight", "classifier.bias": "fc.bias"}
    return Pair("shortcut_declared_first_vs_last", TvShortcutNet(), CvShortcutNet(), reference, INPUT)


# ================================================================ MobileNetV2: torchvision vs mindcv

# (t, c, n, s): mindcv's and torchvision's setting with channels divided by 8
MOBILENET_SETTING = [[1, 2, 1, 1], [6, 3, 2, 2], [6, 4, 3, 2], [6, 8, 4, 2], [6, 12, 3, 1], [6, 20, 3, 2],
                     [6, 40, 1, 1]]


class CvInvertedResidual(msnn.Cell):
    def __init__(self, cin, cout, stride, expand_ratio):
        super().__init__()
        hidden = round(cin * expand_ratio)
        self.use_res_connect = stride == 1 and cin == cout
        layers = []
        if expand_ratio != 1:
            layers += [_ms_conv(cin, hidden, 1), _ms_bn(hidden), msnn.ReLU6()]
        layers += [_ms_conv(hidden, hidden, 3, stride, group=hidden), _ms_bn(hidden), msnn.ReLU6(),
                   _ms_conv(hidden, cout, 1), _ms_bn(cout)]
        self.layers = msnn.SequentialCell(layers)

    def construct(self, x):
        return x + self.layers(x) if self.use_res_connect else self.layers(x)


class CvMobileNetV2(msnn.Cell):
    def __init__(self, num_classes=5, input_channel=4, last_channel=160, setting=MOBILENET_SETTING):
        super().__init__()
        features = [_ms_conv(3, input_channel, 3, 2), _ms_bn(input_channel), msnn.ReLU6()]
        for t, c, n, s in setting:
            for i in range(n):
                features.append(CvInvertedResidual(input_channel, c, s if i == 0 else 1, t))
                input_channel = c
        features += [_ms_conv(input_channel, last_channel, 1), _ms_bn(last_channel), msnn.ReLU6()]
        self.features = msnn.SequentialCell(features)
        self.classifier = msnn.SequentialCell([msnn.Dropout(p=0.2), msnn.Dense(last_channel, num_classes)])

    def construct(self, x):
        return self.classifier(self.features(x).mean(axis=(2, 3)))


def mobilenet_v2_tv_vs_mindcv_pair():
    """torchvision features.K.conv.J vs mindcv features.(K+2).layers.M: every block two places later."""
    reference = {"features.0.weight": "features.0.0.weight", **_bn_map("features.1", "features.0.1")}
    torch_index, ms_index = 1, 3
    for t, _, n, _ in MOBILENET_SETTING:
        for _ in range(n):
            ms, pt = f"features.{ms_index}.layers", f"features.{torch_index}.conv"
            ms_at, pt_at = 0, 0
            if t != 1:
                reference |= _conv_bn_map(f"{ms}.0", f"{ms}.1", f"{pt}.0.0", f"{pt}.0.1")
                ms_at, pt_at = 3, 1
            reference |= _conv_bn_map(f"{ms}.{ms_at}", f"{ms}.{ms_at + 1}", f"{pt}.{pt_at}.0", f"{pt}.{pt_at}.1")
            reference |= _conv_bn_map(f"{ms}.{ms_at + 3}", f"{ms}.{ms_at + 4}", f"{pt}.{pt_at + 1}",
                                      f"{pt}.{pt_at + 2}")
            torch_index, ms_index = torch_index + 1, ms_index + 1
    reference |= _conv_bn_map(f"features.{ms_index}", f"features.{ms_index + 1}", f"features.{torch_index}.0",
                              f"features.{torch_index}.1")
    reference |= {"classifier.1.weight": "classifier.1.weight", "classifier.1.bias": "classifier.1.bias"}
    torch_model = TvMobileNetV2(input_channel=4, last_channel=160, setting=MOBILENET_SETTING)
    # 64x64: at 32x32 the last stages see 1x1 maps, where a nudged stem statistic barely reaches the output
    return Pair("mobilenet_v2_tv_vs_mindcv", torch_model, CvMobileNetV2(), reference, [(1, 3, 64, 64)])


ZOO_ORDER_PAIRS = [yolox_darknet_vs_mindyolo_pair, shortcut_declared_first_vs_last_pair,
                   mobilenet_v2_tv_vs_mindcv_pair]


# ================================================================ factories for configs (tests/running/test_order.py)

def hf_llama():
    """The PyTorch side of tests/zoo_llm_pairs.py's LLaMA pair (Hugging Face names)."""
    from tests.zoo_llm_pairs import llama_hf_vs_mindformers_pair
    return llama_hf_vs_mindformers_pair().torch_model


def mindformers_llama():
    """The MindSpore side of the same pair (mindformers names: wq/wk/wv/wo, w1/w2/w3)."""
    from tests.zoo_llm_pairs import llama_hf_vs_mindformers_pair
    return llama_hf_vs_mindformers_pair().ms_model
