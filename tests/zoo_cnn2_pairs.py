"""More tiny CNN pairs named like real public model zoos: timm (huggingface/pytorch-image-models) or torchvision on
the PyTorch side, mindcv (mindspore-lab/mindcv) on the MindSpore side.

Like tests/zoo_cnn_pairs.py, each pair copies the *naming structure* of two real public files (attribute names,
container kinds, nesting, definition order, and the owning layers' class names, which the matcher sees as layer
types), shrunk to a few channels and blocks, so a timm / torchvision state dict and a mindcv checkpoint carry exactly
these names, only with other sizes:

  ConvNeXt     timm/models/convnext.py (stem.0/.1, stages.N.downsample.0/.1 from stage 1 on, stages.N.blocks.M
               with the layer-scale `gamma` registered on the block itself so it comes first in the state dict,
               conv_dw, channels-last `norm`, mlp.fc1/fc2; NormMlpClassifierHead head.norm / head.fc)
               vs mindcv/models/convnext.py (one `feature` SequentialCell interleaving the downsample layers and
               the stages, Block dwconv / norm / pwconv1 / pwconv2 as Dense / layer scale `gamma_` (declared last,
               listed first: a cell's own parameters come before its children's), ConvNextLayerNorm (an
               nn.LayerNorm subclass: gamma/beta), final `norm`, `classifier`; the current file, whose checkpoint
               names are those of the older one that also kept `downsample_layers` / `stages` CellLists)
  EfficientNet timm/models/efficientnet.py + _efficientnet_blocks.py (conv_stem, bn1, blocks.S.B as
               DepthwiseSeparableConv conv_dw/bn1/se/conv_pw/bn2 or InvertedResidual conv_pw/bn1/conv_dw/bn2/se/
               conv_pwl/bn3, SqueezeExcite conv_reduce/conv_expand, conv_head, bn2, classifier; BatchNormAct2d)
               vs mindcv/models/efficientnet.py (flat `features` SequentialCell: stem conv/bn/Swish as items 0-2, one
               SequentialCell per stage, MBConv `block` SequentialCell, SqueezeExcite conv_reduce/conv_expand from
               mindcv/models/layers/squeeze_excite.py, last conv/bn/Swish, `mlp_head`)
  RepVGG       timm/models/byobnet.py (ByobNet: `stem` is a RepVggBlock, stages.N.M RepVggBlock with `identity`
               BatchNormAct2d, conv_kxk / conv_1x1 ConvBnAct (.conv, .bn), ClassifierHead head.fc)
               vs mindcv/models/repvgg.py (stage0 block, stage1-4 SequentialCells, RepVGGBlock rbr_identity /
               rbr_dense / rbr_1x1 where conv_bn is a SequentialCell (.0 conv, .1 bn), `linear`)
  Inception-v3 torchvision/models/inception.py (Conv2d_1a_3x3 ... Conv2d_4a_3x3, Mixed_5b-7c with branch1x1,
               branch5x5_1, branch3x3dbl_2, branch7x7dbl_4, branch3x3_2a ..., BasicConv2d conv/bn, fc)
               vs mindcv/models/inception_v3.py (conv1a ... conv4a, inception5b-7c with branch0, branch1.N,
               branch2.N, branch1a/1b, branch_pool.1 (after the pool), BasicConv2d conv/bn, classifier)

Where the mindcv code would not compute timm's function the port follows timm and keeps mindcv's names; each
deviation is said at the class. Reference maps are built by construction, walking one configuration on both sides.
"""
import mindspore as ms
import numpy as np
import torch
import torch.nn.functional as F
from mindspore import nn as msnn
from mindspore import ops
from torch import nn as tnn

from tests.pairs import Pair
from tests.zoo_cnn_pairs import _bn_map, _conv_bn_map

INPUT = [(1, 3, 32, 32)]


def _same(ms_prefix, torch_prefix, *leaves):
    return {f"{ms_prefix}.{leaf}": f"{torch_prefix}.{leaf}" for leaf in leaves}


def _ln_map(ms_prefix, torch_prefix):
    """A mindspore LayerNorm's entries (gamma, beta)."""
    return {f"{ms_prefix}.gamma": f"{torch_prefix}.weight", f"{ms_prefix}.beta": f"{torch_prefix}.bias"}


# ================================================================ 1. ConvNeXt

CONVNEXT_DEPTHS = (2, 2, 3, 2)
CONVNEXT_DIMS = (4, 8, 12, 16)
CONVNEXT_EPS = 1e-6  # timm's LayerNorm / LayerNorm2d default, mindcv's ConvNextLayerNorm epsilon


class LayerNorm2d(tnn.LayerNorm):
    """timm.layers.LayerNorm2d: LayerNorm over the channels of an NCHW tensor."""

    def __init__(self, num_channels, eps=CONVNEXT_EPS):
        super().__init__(num_channels, eps=eps)

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class LayerNorm(tnn.LayerNorm):
    """timm.layers.LayerNorm: channels-last LayerNorm with eps 1e-6."""

    def __init__(self, num_channels, eps=CONVNEXT_EPS):
        super().__init__(num_channels, eps=eps)


class Mlp(tnn.Module):
    """timm.layers.Mlp: fc1, act, drop1, norm (Identity), fc2, drop2."""

    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1 = tnn.Linear(in_features, hidden_features)
        self.act = tnn.GELU()
        self.drop1 = tnn.Dropout(0.0)
        self.norm = tnn.Identity()
        self.fc2 = tnn.Linear(hidden_features, in_features)
        self.drop2 = tnn.Dropout(0.0)

    def forward(self, x):
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x))))))


class ConvNeXtBlock(tnn.Module):
    def __init__(self, chs, ls_init_value=1e-6):
        super().__init__()
        self.use_conv_mlp = False
        self.conv_dw = tnn.Conv2d(chs, chs, 7, padding=3, groups=chs, bias=True)
        self.norm = LayerNorm(chs)
        self.mlp = Mlp(chs, 4 * chs)
        self.gamma = tnn.Parameter(ls_init_value * torch.ones(chs))
        self.shortcut = tnn.Identity()
        self.drop_path = tnn.Identity()

    def forward(self, x):
        shortcut = x
        x = self.conv_dw(x)
        x = self.mlp(self.norm(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        x = x.mul(self.gamma.reshape(1, -1, 1, 1))
        return self.drop_path(x) + self.shortcut(shortcut)


class ConvNeXtStage(tnn.Module):
    def __init__(self, in_chs, out_chs, stride, depth):
        super().__init__()
        if in_chs != out_chs or stride > 1:
            self.downsample = tnn.Sequential(LayerNorm2d(in_chs),
                                             tnn.Conv2d(in_chs, out_chs, kernel_size=2, stride=stride, bias=True))
        else:
            self.downsample = tnn.Identity()
        self.blocks = tnn.Sequential(*[ConvNeXtBlock(out_chs) for _ in range(depth)])

    def forward(self, x):
        return self.blocks(self.downsample(x))


class NormMlpClassifierHead(tnn.Module):
    """timm.layers.NormMlpClassifierHead without a hidden layer: pool, norm, flatten, pre_logits, drop, fc."""

    def __init__(self, in_features, num_classes):
        super().__init__()
        self.global_pool = tnn.AdaptiveAvgPool2d(1)
        self.norm = LayerNorm2d(in_features)
        self.flatten = tnn.Flatten(1)
        self.pre_logits = tnn.Identity()
        self.drop = tnn.Dropout(0.0)
        self.fc = tnn.Linear(in_features, num_classes)

    def forward(self, x):
        x = self.flatten(self.norm(self.global_pool(x)))
        return self.fc(self.drop(self.pre_logits(x)))


class TimmConvNeXt(tnn.Module):
    """timm's ConvNeXt with the default 'patch' stem (patch_size 4) and head_norm_first=False."""

    def __init__(self, depths=CONVNEXT_DEPTHS, dims=CONVNEXT_DIMS, num_classes=5):
        super().__init__()
        self.stem = tnn.Sequential(tnn.Conv2d(3, dims[0], kernel_size=4, stride=4, bias=True), LayerNorm2d(dims[0]))
        stages, prev_chs = [], dims[0]
        for i in range(4):
            stages.append(ConvNeXtStage(prev_chs, dims[i], stride=2 if i > 0 else 1, depth=depths[i]))
            prev_chs = dims[i]
        self.stages = tnn.Sequential(*stages)
        self.norm_pre = tnn.Identity()
        self.head = NormMlpClassifierHead(prev_chs, num_classes)

    def forward(self, x):
        return self.head(self.norm_pre(self.stages(self.stem(x))))


class ConvNextLayerNorm(msnn.LayerNorm):
    """mindcv's ConvNextLayerNorm: norm_axis=1 transposes an NCHW tensor to channels-last and back."""

    def __init__(self, normalized_shape, epsilon, norm_axis=-1):
        super().__init__(normalized_shape=normalized_shape, epsilon=epsilon)
        self.norm_axis = norm_axis

    def construct(self, input_x):
        if self.norm_axis == -1:
            y, _, _ = self.layer_norm(input_x, self.gamma, self.beta)
        else:
            input_x = ops.transpose(input_x, (0, 2, 3, 1))
            y, _, _ = self.layer_norm(input_x, self.gamma, self.beta)
            y = ops.transpose(y, (0, 3, 1, 2))
        return y


class MindcvConvNeXtBlock(msnn.Cell):
    """mindcv's convnext Block. Deviations: GELU is exact (mindcv's nn.GELU() defaults to the tanh approximation,
    timm's nn.GELU is exact); the depthwise conv pads explicitly (mindcv's pad_mode "same" gives the same 3 here)."""

    def __init__(self, dim, layer_scale_init_value=1e-6):
        super().__init__()
        self.dwconv = msnn.Conv2d(dim, dim, kernel_size=7, group=dim, has_bias=True, pad_mode="pad", padding=3)
        self.norm = ConvNextLayerNorm((dim,), epsilon=CONVNEXT_EPS)
        self.pwconv1 = msnn.Dense(dim, 4 * dim)
        self.act = msnn.GELU(approximate=False)
        self.pwconv2 = msnn.Dense(4 * dim, dim)
        self.gamma_ = ms.Parameter(ms.Tensor(layer_scale_init_value * np.ones(dim), dtype=ms.float32))

    def construct(self, x):
        downsample = x
        x = self.dwconv(x)
        x = ops.transpose(x, (0, 2, 3, 1))
        x = self.pwconv2(self.act(self.pwconv1(self.norm(x))))
        x = self.gamma_ * x
        x = ops.transpose(x, (0, 3, 1, 2))
        return downsample + x


class MindcvConvNeXt(msnn.Cell):
    """mindcv's ConvNeXt: `feature` = [stem, stage 0, downsample 1, stage 1, downsample 2, ...], then `norm` on the
    pooled features and `classifier`."""

    def __init__(self, depths=CONVNEXT_DEPTHS, dims=CONVNEXT_DIMS, num_classes=5):
        super().__init__()
        downsample_layers = [msnn.SequentialCell(
            msnn.Conv2d(3, dims[0], kernel_size=4, stride=4, has_bias=True, pad_mode="valid"),
            ConvNextLayerNorm((dims[0],), epsilon=CONVNEXT_EPS, norm_axis=1))]
        for i in range(3):
            downsample_layers.append(msnn.SequentialCell(
                ConvNextLayerNorm((dims[i],), epsilon=CONVNEXT_EPS, norm_axis=1),
                msnn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2, has_bias=True, pad_mode="valid")))
        stages = [msnn.SequentialCell([MindcvConvNeXtBlock(dims[i]) for _ in range(depths[i])]) for i in range(4)]
        self.feature = msnn.SequentialCell([cell for pair in zip(downsample_layers, stages) for cell in pair])
        self.norm = ConvNextLayerNorm((dims[-1],), epsilon=CONVNEXT_EPS)
        self.classifier = msnn.Dense(dims[-1], num_classes)

    def construct(self, x):
        x = self.feature(x)
        return self.classifier(self.norm(x.mean([-2, -1])))


def zoo_convnext_pair():
    """timm `stages.2.blocks.1.mlp.fc1` / `stages.2.downsample.1` / `stages.2.blocks.1.gamma` vs mindcv
    `feature.5.1.pwconv1` / `feature.4.1` / `feature.5.1.gamma_`; timm `head.norm` / `head.fc` vs `norm` /
    `classifier`. LayerNorms are ConvNextLayerNorm on the MindSpore side (a subclass, not nn.LayerNorm by name)."""
    reference = {**_same("feature.0.0", "stem.0", "weight", "bias"), **_ln_map("feature.0.1", "stem.1")}
    for i, depth in enumerate(CONVNEXT_DEPTHS):
        if i > 0:
            ms_ds, torch_ds = f"feature.{2 * i}", f"stages.{i}.downsample"
            reference |= {**_ln_map(f"{ms_ds}.0", f"{torch_ds}.0"),
                          **_same(f"{ms_ds}.1", f"{torch_ds}.1", "weight", "bias")}
        for j in range(depth):
            ms_block, torch_block = f"feature.{2 * i + 1}.{j}", f"stages.{i}.blocks.{j}"
            reference |= {f"{ms_block}.gamma_": f"{torch_block}.gamma",  # a cell's own parameters come first
                          **_same(f"{ms_block}.dwconv", f"{torch_block}.conv_dw", "weight", "bias"),
                          **_ln_map(f"{ms_block}.norm", f"{torch_block}.norm"),
                          **_same(f"{ms_block}.pwconv1", f"{torch_block}.mlp.fc1", "weight", "bias"),
                          **_same(f"{ms_block}.pwconv2", f"{torch_block}.mlp.fc2", "weight", "bias")}
    reference |= {**_ln_map("norm", "head.norm"), **_same("classifier", "head.fc", "weight", "bias")}
    return Pair("zoo_convnext", TimmConvNeXt(), MindcvConvNeXt(), reference, INPUT)



# ================================================================ 2. EfficientNet (B0 layout, shrunk)

# (expand ratio, kernel, stride, in, out, repeats), as mindcv's MBConvConfig rows and timm's arch_def strings
# (ds_r1_k3_s1_e1_c16_se0.25, ir_r2_k3_s2_e6_c24_se0.25, ...); B0's 7 stages shrunk to 4, expand 6 to 2
EFFICIENTNET_SETTING = [(1, 3, 1, 8, 8, 1), (2, 3, 2, 8, 12, 2), (2, 5, 2, 12, 16, 2), (2, 5, 1, 16, 16, 2)]
EFFICIENTNET_STEM = 8
EFFICIENTNET_HEAD = 4 * EFFICIENTNET_SETTING[-1][4]  # mindcv: 4 * last width (B0: 320 -> 1280)


class BatchNormAct2d(tnn.BatchNorm2d):
    """timm.layers.BatchNormAct2d: a BatchNorm2d (same state-dict names) followed by its activation."""

    def __init__(self, num_features, apply_act=True, act_layer=tnn.SiLU):
        super().__init__(num_features)
        self.drop = tnn.Identity()
        self.act = act_layer() if apply_act else tnn.Identity()

    def forward(self, x):
        return self.act(self.drop(super().forward(x)))


class SqueezeExcite(tnn.Module):
    """timm _efficientnet_blocks.SqueezeExcite: conv_reduce, act1, conv_expand, gate."""

    def __init__(self, in_chs, rd_channels):
        super().__init__()
        self.conv_reduce = tnn.Conv2d(in_chs, rd_channels, 1, bias=True)
        self.act1 = tnn.SiLU()
        self.conv_expand = tnn.Conv2d(rd_channels, in_chs, 1, bias=True)
        self.gate = tnn.Sigmoid()

    def forward(self, x):
        x_se = self.conv_expand(self.act1(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * self.gate(x_se)


class DepthwiseSeparableConv(tnn.Module):
    def __init__(self, in_chs, out_chs, dw_kernel_size, stride):
        super().__init__()
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_dw = tnn.Conv2d(in_chs, in_chs, dw_kernel_size, stride, dw_kernel_size // 2, groups=in_chs,
                                  bias=False)
        self.bn1 = BatchNormAct2d(in_chs)
        self.aa = tnn.Identity()
        self.se = SqueezeExcite(in_chs, in_chs // 4)
        self.conv_pw = tnn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn2 = BatchNormAct2d(out_chs, apply_act=False)
        self.drop_path = tnn.Identity()

    def forward(self, x):
        out = self.bn2(self.conv_pw(self.se(self.aa(self.bn1(self.conv_dw(x))))))
        return self.drop_path(out) + x if self.has_skip else out


class InvertedResidual(tnn.Module):
    def __init__(self, in_chs, out_chs, dw_kernel_size, stride, exp_ratio):
        super().__init__()
        mid_chs = in_chs * exp_ratio
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_pw = tnn.Conv2d(in_chs, mid_chs, 1, bias=False)
        self.bn1 = BatchNormAct2d(mid_chs)
        self.conv_dw = tnn.Conv2d(mid_chs, mid_chs, dw_kernel_size, stride, dw_kernel_size // 2, groups=mid_chs,
                                  bias=False)
        self.bn2 = BatchNormAct2d(mid_chs)
        self.aa = tnn.Identity()
        self.se = SqueezeExcite(mid_chs, in_chs // 4)  # timm: rd_ratio 0.25 / exp_ratio of mid_chs
        self.conv_pwl = tnn.Conv2d(mid_chs, out_chs, 1, bias=False)
        self.bn3 = BatchNormAct2d(out_chs, apply_act=False)
        self.drop_path = tnn.Identity()

    def forward(self, x):
        out = self.se(self.aa(self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))))
        out = self.bn3(self.conv_pwl(out))
        return self.drop_path(out) + x if self.has_skip else out


class TimmEfficientNet(tnn.Module):
    """timm's EfficientNet (efficientnet_b0 layout: symmetric padding, BatchNorm eps 1e-5, SiLU)."""

    def __init__(self, setting=EFFICIENTNET_SETTING, stem=EFFICIENTNET_STEM, head=EFFICIENTNET_HEAD, num_classes=5):
        super().__init__()
        self.conv_stem = tnn.Conv2d(3, stem, 3, 2, 1, bias=False)
        self.bn1 = BatchNormAct2d(stem)
        stages = []
        for expand, kernel, stride, cin, cout, repeats in setting:
            blocks = []
            for b in range(repeats):
                block_in, block_stride = (cin, stride) if b == 0 else (cout, 1)
                if expand == 1:
                    blocks.append(DepthwiseSeparableConv(block_in, cout, kernel, block_stride))
                else:
                    blocks.append(InvertedResidual(block_in, cout, kernel, block_stride, expand))
            stages.append(tnn.Sequential(*blocks))
        self.blocks = tnn.Sequential(*stages)
        self.conv_head = tnn.Conv2d(setting[-1][4], head, 1, bias=False)
        self.bn2 = BatchNormAct2d(head)
        self.global_pool = tnn.AdaptiveAvgPool2d(1)
        self.classifier = tnn.Linear(head, num_classes)

    def forward(self, x):
        x = self.bn2(self.conv_head(self.blocks(self.bn1(self.conv_stem(x)))))
        return self.classifier(torch.flatten(self.global_pool(x), 1))


class Swish(msnn.Cell):
    """mindcv.models.layers.activation.Swish (its `sigmoid` cell holds no parameter)."""

    def __init__(self):
        super().__init__()
        self.sigmoid = msnn.Sigmoid()

    def construct(self, x):
        return x * self.sigmoid(x)


class MindcvSqueezeExcite(msnn.Cell):
    """mindcv.models.layers.squeeze_excite.SqueezeExcite with norm=None: conv_reduce, conv_expand."""

    def __init__(self, in_channels, rd_channels, act_layer=Swish):
        super().__init__()
        self.act = act_layer()
        self.gate = msnn.Sigmoid()
        self.conv_reduce = msnn.Conv2d(in_channels, rd_channels, kernel_size=1, has_bias=True)
        self.conv_expand = msnn.Conv2d(rd_channels, in_channels, kernel_size=1, has_bias=True)

    def construct(self, x):
        x_se = self.conv_expand(self.act(self.conv_reduce(x.mean(axis=(2, 3), keep_dims=True))))
        return x * self.gate(x_se)


def _ms_bn(channels):
    return msnn.BatchNorm2d(channels, eps=1e-5, momentum=0.9)


def _ms_conv(cin, cout, kernel, stride=1, group=1):
    """Deviation from mindcv (pad_mode "same"): torch's symmetric padding, which "same" does not give at stride 2."""
    return msnn.Conv2d(cin, cout, kernel, stride=stride, pad_mode="pad", padding=kernel // 2, group=group,
                       has_bias=False)


class MBConv(msnn.Cell):
    """mindcv's MBConv: one `block` SequentialCell of [expand conv, bn, Swish,] dw conv, bn, Swish, SE, conv, bn."""

    def __init__(self, expand, kernel, stride, cin, cout):
        super().__init__()
        self.shortcut = stride == 1 and cin == cout
        expanded = cin * expand
        layers = []
        if expanded != cin:
            layers += [_ms_conv(cin, expanded, 1), _ms_bn(expanded), Swish()]
        layers += [_ms_conv(expanded, expanded, kernel, stride, group=expanded), _ms_bn(expanded), Swish()]
        layers.append(MindcvSqueezeExcite(expanded, max(1, cin // 4)))
        layers += [_ms_conv(expanded, cout, 1), _ms_bn(cout)]
        self.block = msnn.SequentialCell(layers)

    def construct(self, x):
        result = self.block(x)
        if self.shortcut:
            result = result + x
        return result


class MindcvEfficientNet(msnn.Cell):
    def __init__(self, setting=EFFICIENTNET_SETTING, stem=EFFICIENTNET_STEM, head=EFFICIENTNET_HEAD, num_classes=5):
        super().__init__()
        layers = [_ms_conv(3, stem, 3, 2), _ms_bn(stem), Swish()]
        for expand, kernel, stride, cin, cout, repeats in setting:
            stage = []
            for b in range(repeats):
                block_in, block_stride = (cin, stride) if b == 0 else (cout, 1)
                stage.append(MBConv(expand, kernel, block_stride, block_in, cout))
            layers.append(msnn.SequentialCell(stage))
        layers += [_ms_conv(setting[-1][4], head, 1), _ms_bn(head), Swish()]
        self.features = msnn.SequentialCell(layers)
        self.mlp_head = msnn.Dense(head, num_classes)

    def construct(self, x):
        return self.mlp_head(self.features(x).mean(axis=(2, 3)))


def zoo_efficientnet_pair():
    """timm `blocks.2.1.conv_pwl` / `blocks.2.1.se.conv_reduce` / `bn3` vs mindcv `features.5.1.block.7` /
    `features.5.1.block.6.conv_reduce` / `block.8`; the stem's three cells shift every stage index by three."""
    reference = _conv_bn_map("features.0", "features.1", "conv_stem", "bn1")
    for s, (expand, *_, repeats) in enumerate(EFFICIENTNET_SETTING):
        for b in range(repeats):
            ms_block, torch_block = f"features.{s + 3}.{b}.block", f"blocks.{s}.{b}"
            if expand == 1:
                convs = [(0, 1, "conv_dw", "bn1")]
                se, project = 3, (4, 5, "conv_pw", "bn2")
            else:
                convs = [(0, 1, "conv_pw", "bn1"), (3, 4, "conv_dw", "bn2")]
                se, project = 6, (7, 8, "conv_pwl", "bn3")
            for ms_conv, ms_bn, torch_conv, torch_bn in convs:
                reference |= _conv_bn_map(f"{ms_block}.{ms_conv}", f"{ms_block}.{ms_bn}",
                                          f"{torch_block}.{torch_conv}", f"{torch_block}.{torch_bn}")
            for conv in ("conv_reduce", "conv_expand"):
                reference |= _same(f"{ms_block}.{se}.{conv}", f"{torch_block}.se.{conv}", "weight", "bias")
            ms_conv, ms_bn, torch_conv, torch_bn = project
            reference |= _conv_bn_map(f"{ms_block}.{ms_conv}", f"{ms_block}.{ms_bn}",
                                      f"{torch_block}.{torch_conv}", f"{torch_block}.{torch_bn}")
    last = len(EFFICIENTNET_SETTING) + 3
    reference |= _conv_bn_map(f"features.{last}", f"features.{last + 1}", "conv_head", "bn2")
    reference |= _same("mlp_head", "classifier", "weight", "bias")
    return Pair("zoo_efficientnet", TimmEfficientNet(), MindcvEfficientNet(), reference, INPUT)



# ================================================================ 3. RepVGG (train-time branches)

REPVGG_BLOCKS = (2, 3, 3, 1)  # repvgg_a0: (2, 4, 14, 1)
REPVGG_WIDTHS = (8, 12, 16, 24)  # 64 * width multipliers; the stem is min(64, 64 * wm[0]) = widths[0]


class ConvBnAct(tnn.Module):
    """timm.layers.ConvBnAct with apply_act=False: `conv`, `bn` (a BatchNormAct2d), `aa`."""

    def __init__(self, in_chs, out_chs, kernel_size, stride=1):
        super().__init__()
        self.conv = tnn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn = BatchNormAct2d(out_chs, apply_act=False)
        self.aa = tnn.Identity()

    def forward(self, x):
        return self.aa(self.bn(self.conv(x)))


class RepVggBlock(tnn.Module):
    def __init__(self, in_chs, out_chs, stride=1):
        super().__init__()
        use_ident = in_chs == out_chs and stride == 1
        self.identity = BatchNormAct2d(out_chs, apply_act=False) if use_ident else None
        self.conv_kxk = ConvBnAct(in_chs, out_chs, 3, stride=stride)
        self.conv_1x1 = ConvBnAct(in_chs, out_chs, 1, stride=stride)
        self.attn = tnn.Identity()
        self.drop_path = tnn.Identity()
        self.act = tnn.ReLU(inplace=True)

    def forward(self, x):
        out = self.conv_1x1(x) + self.conv_kxk(x)
        if self.identity is not None:
            out = self.drop_path(out) + self.identity(x)
        return self.act(self.attn(out))


class ClassifierHead(tnn.Module):
    def __init__(self, in_chs, num_classes):
        super().__init__()
        self.global_pool = tnn.AdaptiveAvgPool2d(1)
        self.fc = tnn.Linear(in_chs, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.global_pool(x), 1))


class TimmByobNetRepVgg(tnn.Module):
    """timm's ByobNet with a repvgg model cfg: stem_type 'rep' (the stem is a RepVggBlock), no final conv."""

    def __init__(self, blocks=REPVGG_BLOCKS, widths=REPVGG_WIDTHS, num_classes=5):
        super().__init__()
        self.stem = RepVggBlock(3, widths[0], stride=2)
        stages, prev_chs = [], widths[0]
        for depth, width in zip(blocks, widths):
            stages.append(tnn.Sequential(*[RepVggBlock(prev_chs if b == 0 else width, width, 2 if b == 0 else 1)
                                           for b in range(depth)]))
            prev_chs = width
        self.stages = tnn.Sequential(*stages)
        self.final_conv = tnn.Identity()
        self.head = ClassifierHead(prev_chs, num_classes)

    def forward(self, x):
        return self.head(self.final_conv(self.stages(self.stem(x))))


def _conv_bn(in_channels, out_channels, kernel_size, stride, padding):
    """mindcv repvgg's conv_bn: a SequentialCell, so its conv and bn are `.0` and `.1`."""
    return msnn.SequentialCell([
        msnn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, pad_mode="pad",
                    has_bias=False),
        _ms_bn(out_channels)])


class RepVGGBlock(msnn.Cell):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.nonlinearity = msnn.ReLU()
        self.se = msnn.Identity()
        self.rbr_reparam = None
        self.rbr_identity = _ms_bn(in_channels) if out_channels == in_channels and stride == 1 else None
        self.rbr_dense = _conv_bn(in_channels, out_channels, 3, stride, 1)
        self.rbr_1x1 = _conv_bn(in_channels, out_channels, 1, stride, 0)

    def construct(self, inputs):
        out = self.rbr_dense(inputs) + self.rbr_1x1(inputs)
        if self.rbr_identity is not None:
            out = out + self.rbr_identity(inputs)
        return self.nonlinearity(self.se(out))


class MindcvRepVGG(msnn.Cell):
    def __init__(self, blocks=REPVGG_BLOCKS, widths=REPVGG_WIDTHS, num_classes=5):
        super().__init__()
        self.in_planes = widths[0]
        self.stage0 = RepVGGBlock(3, self.in_planes, stride=2)
        for i, (depth, width) in enumerate(zip(blocks, widths), start=1):
            setattr(self, f"stage{i}", self._make_stage(width, depth, stride=2))
        self.linear = msnn.Dense(widths[-1], num_classes)

    def _make_stage(self, planes, num_blocks, stride):
        cells = []
        for s in [stride] + [1] * (num_blocks - 1):
            cells.append(RepVGGBlock(self.in_planes, planes, stride=s))
            self.in_planes = planes
        return msnn.SequentialCell(cells)

    def construct(self, x):
        x = self.stage4(self.stage3(self.stage2(self.stage1(self.stage0(x)))))
        return self.linear(x.mean(axis=(2, 3)))


def zoo_repvgg_pair():
    """timm `stages.1.2.conv_kxk.bn` / `conv_1x1.conv` / `identity` vs mindcv `stage2.2.rbr_dense.1` /
    `rbr_1x1.0` / `rbr_identity`; timm's `stem` is mindcv's `stage0`, `head.fc` is `linear`. Three BatchNorms of
    one shape in every identity block."""
    def block(ms_block, torch_block, identity):
        entries = _bn_map(f"{ms_block}.rbr_identity", f"{torch_block}.identity") if identity else {}
        return entries | _conv_bn_map(f"{ms_block}.rbr_dense.0", f"{ms_block}.rbr_dense.1",
                                      f"{torch_block}.conv_kxk.conv", f"{torch_block}.conv_kxk.bn") \
            | _conv_bn_map(f"{ms_block}.rbr_1x1.0", f"{ms_block}.rbr_1x1.1",
                           f"{torch_block}.conv_1x1.conv", f"{torch_block}.conv_1x1.bn")

    reference = block("stage0", "stem", identity=False)
    for i, depth in enumerate(REPVGG_BLOCKS):
        for b in range(depth):
            reference |= block(f"stage{i + 1}.{b}", f"stages.{i}.{b}", identity=b > 0)
    reference |= _same("linear", "head.fc", "weight", "bias")
    return Pair("zoo_repvgg", TimmByobNetRepVgg(), MindcvRepVGG(), reference, INPUT)



# ================================================================ 4. Inception-v3

# torchvision's widths divided by 8; aux_logits=False on both sides (torchvision inception_v3(aux_logits=False),
# mindcv InceptionV3(aux_logits=False)): the aux head runs only in training, so no parity check could reach it.
INCEPTION_INPUT = [(1, 3, 75, 75)]  # torchvision's smallest input
# Test harness, alike on both sides: each top-level stage's output is divided by its largest magnitude, and the
# models return the logits followed by every stage's globally pooled features. With the parity suite's seeded weights
# (0.5 * randn everywhere) activations otherwise grow about 1e7-fold over Inception's ~20 conv layers in a row (float32
# rounding then exceeds the suite's absolute 1e-4), and this deep net without residuals forgets its input about
# four-fold per Inception block, so the stem's tensors would move the logits alone by under 1e-4.
INCEPTION_STAGES = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                    "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                    "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")
INCEPTION_EPS = 1e-3


def _w(channels):
    return channels // 8


class TvBasicConv2d(tnn.Module):
    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__()
        self.conv = tnn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = tnn.BatchNorm2d(out_channels, eps=INCEPTION_EPS)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


class TvInceptionA(tnn.Module):
    def __init__(self, in_channels, pool_features):
        super().__init__()
        self.branch1x1 = TvBasicConv2d(in_channels, _w(64), kernel_size=1)
        self.branch5x5_1 = TvBasicConv2d(in_channels, _w(48), kernel_size=1)
        self.branch5x5_2 = TvBasicConv2d(_w(48), _w(64), kernel_size=5, padding=2)
        self.branch3x3dbl_1 = TvBasicConv2d(in_channels, _w(64), kernel_size=1)
        self.branch3x3dbl_2 = TvBasicConv2d(_w(64), _w(96), kernel_size=3, padding=1)
        self.branch3x3dbl_3 = TvBasicConv2d(_w(96), _w(96), kernel_size=3, padding=1)
        self.branch_pool = TvBasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x):
        branch1x1 = self.branch1x1(x)  # torchvision's order of calls: execution order is what stage 1 records
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([branch1x1, branch5x5, branch3x3dbl, branch_pool], 1)


class TvInceptionB(tnn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3 = TvBasicConv2d(in_channels, _w(384), kernel_size=3, stride=2)
        self.branch3x3dbl_1 = TvBasicConv2d(in_channels, _w(64), kernel_size=1)
        self.branch3x3dbl_2 = TvBasicConv2d(_w(64), _w(96), kernel_size=3, padding=1)
        self.branch3x3dbl_3 = TvBasicConv2d(_w(96), _w(96), kernel_size=3, stride=2)

    def forward(self, x):
        branch3x3 = self.branch3x3(x)
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([branch3x3, branch3x3dbl, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class TvInceptionC(tnn.Module):
    def __init__(self, in_channels, channels_7x7):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = TvBasicConv2d(in_channels, _w(192), kernel_size=1)
        self.branch7x7_1 = TvBasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = TvBasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = TvBasicConv2d(c7, _w(192), kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = TvBasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = TvBasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = TvBasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = TvBasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = TvBasicConv2d(c7, _w(192), kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = TvBasicConv2d(in_channels, _w(192), kernel_size=1)

    def forward(self, x):
        branch1x1 = self.branch1x1(x)
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            branch7x7dbl = layer(branch7x7dbl)
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([branch1x1, branch7x7, branch7x7dbl, branch_pool], 1)


class TvInceptionD(tnn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3_1 = TvBasicConv2d(in_channels, _w(192), kernel_size=1)
        self.branch3x3_2 = TvBasicConv2d(_w(192), _w(320), kernel_size=3, stride=2)
        self.branch7x7x3_1 = TvBasicConv2d(in_channels, _w(192), kernel_size=1)
        self.branch7x7x3_2 = TvBasicConv2d(_w(192), _w(192), kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = TvBasicConv2d(_w(192), _w(192), kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = TvBasicConv2d(_w(192), _w(192), kernel_size=3, stride=2)

    def forward(self, x):
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            branch7x7x3 = layer(branch7x7x3)
        return torch.cat([branch3x3, branch7x7x3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class TvInceptionE(tnn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.branch1x1 = TvBasicConv2d(in_channels, _w(320), kernel_size=1)
        self.branch3x3_1 = TvBasicConv2d(in_channels, _w(384), kernel_size=1)
        self.branch3x3_2a = TvBasicConv2d(_w(384), _w(384), kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = TvBasicConv2d(_w(384), _w(384), kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = TvBasicConv2d(in_channels, _w(448), kernel_size=1)
        self.branch3x3dbl_2 = TvBasicConv2d(_w(448), _w(384), kernel_size=3, padding=1)
        self.branch3x3dbl_3a = TvBasicConv2d(_w(384), _w(384), kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = TvBasicConv2d(_w(384), _w(384), kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = TvBasicConv2d(in_channels, _w(192), kernel_size=1)

    def forward(self, x):
        branch1x1 = self.branch1x1(x)
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([branch1x1, branch3x3, branch3x3dbl, branch_pool], 1)


def _inception_widths():
    """(in channels of Mixed_5b .. Mixed_7c), as torchvision's Inception3 wires them at 1/8 width."""
    a = lambda cin, pool: _w(64) + _w(64) + _w(96) + pool  # noqa: E731
    c5b = _w(192)
    c5c = a(c5b, _w(32))
    c5d = a(c5c, _w(64))
    c6a = a(c5d, _w(64))
    c6b = _w(384) + _w(96) + c6a
    c7a = 4 * _w(192)
    c7b = _w(320) + _w(192) + c7a
    c7c = _w(320) + 4 * _w(384) + _w(192)
    return c5b, c5c, c5d, c6a, c6b, c7a, c7b, c7c


class TvInception3(tnn.Module):
    """torchvision's Inception3 (aux_logits=False, transform_input=False)."""

    def __init__(self, num_classes=5):
        super().__init__()
        c5b, c5c, c5d, c6a, c6b, c7a, c7b, c7c = _inception_widths()
        self.Conv2d_1a_3x3 = TvBasicConv2d(3, _w(32), kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = TvBasicConv2d(_w(32), _w(32), kernel_size=3)
        self.Conv2d_2b_3x3 = TvBasicConv2d(_w(32), _w(64), kernel_size=3, padding=1)
        self.maxpool1 = tnn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = TvBasicConv2d(_w(64), _w(80), kernel_size=1)
        self.Conv2d_4a_3x3 = TvBasicConv2d(_w(80), _w(192), kernel_size=3)
        self.maxpool2 = tnn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = TvInceptionA(c5b, pool_features=_w(32))
        self.Mixed_5c = TvInceptionA(c5c, pool_features=_w(64))
        self.Mixed_5d = TvInceptionA(c5d, pool_features=_w(64))
        self.Mixed_6a = TvInceptionB(c6a)
        self.Mixed_6b = TvInceptionC(c6b, channels_7x7=_w(128))
        self.Mixed_6c = TvInceptionC(c6b, channels_7x7=_w(160))
        self.Mixed_6d = TvInceptionC(c6b, channels_7x7=_w(160))
        self.Mixed_6e = TvInceptionC(c6b, channels_7x7=_w(192))
        self.AuxLogits = None
        self.Mixed_7a = TvInceptionD(c7a)
        self.Mixed_7b = TvInceptionE(c7b)
        self.Mixed_7c = TvInceptionE(c7c)
        self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
        self.dropout = tnn.Dropout(p=0.5)
        self.fc = tnn.Linear(c7c, num_classes)

    def forward(self, x):
        stage_features = []  # test harness: see INCEPTION_INPUT
        for name in INCEPTION_STAGES:
            x = getattr(self, name)(x)
            x = x / x.abs().max()
            stage_features.append(x.mean((2, 3)))
        return torch.cat([self.fc(torch.flatten(self.dropout(self.avgpool(x)), 1))] + stage_features, 1)


class MindcvBasicConv2d(msnn.Cell):
    """mindcv's BasicConv2d: `conv` (pad_mode "same" unless told "valid", which for stride 1 and odd kernels is
    torch's symmetric padding), `bn` (eps 1e-3), `relu`."""

    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, padding=0, pad_mode="same"):
        super().__init__()
        self.conv = msnn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=padding, pad_mode=pad_mode)
        self.bn = msnn.BatchNorm2d(out_channels, eps=INCEPTION_EPS, momentum=0.9)
        self.relu = msnn.ReLU()

    def construct(self, x):
        return self.relu(self.bn(self.conv(x)))


def _ms_branch_pool(in_channels, out_channels):
    """Deviation: mindcv's AvgPool2d(3, pad_mode="same") leaves the padding out of the mean; torchvision's
    avg_pool2d(3, 1, padding=1) counts it, so the port pads explicitly and counts the padding."""
    return msnn.SequentialCell([msnn.AvgPool2d(kernel_size=3, stride=1, pad_mode="pad", padding=1,
                                               count_include_pad=True),
                                MindcvBasicConv2d(in_channels, out_channels, kernel_size=1)])


class MindcvInceptionA(msnn.Cell):
    def __init__(self, in_channels, pool_features):
        super().__init__()
        self.branch0 = MindcvBasicConv2d(in_channels, _w(64), kernel_size=1)
        self.branch1 = msnn.SequentialCell([MindcvBasicConv2d(in_channels, _w(48), kernel_size=1),
                                            MindcvBasicConv2d(_w(48), _w(64), kernel_size=5)])
        self.branch2 = msnn.SequentialCell([MindcvBasicConv2d(in_channels, _w(64), kernel_size=1),
                                            MindcvBasicConv2d(_w(64), _w(96), kernel_size=3),
                                            MindcvBasicConv2d(_w(96), _w(96), kernel_size=3)])
        self.branch_pool = _ms_branch_pool(in_channels, pool_features)

    def construct(self, x):
        return ops.concat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch_pool(x)), axis=1)


class MindcvInceptionB(msnn.Cell):
    def __init__(self, in_channels):
        super().__init__()
        self.branch0 = MindcvBasicConv2d(in_channels, _w(384), kernel_size=3, stride=2, pad_mode="valid")
        self.branch1 = msnn.SequentialCell([
            MindcvBasicConv2d(in_channels, _w(64), kernel_size=1),
            MindcvBasicConv2d(_w(64), _w(96), kernel_size=3),
            MindcvBasicConv2d(_w(96), _w(96), kernel_size=3, stride=2, pad_mode="valid")])
        self.branch_pool = msnn.MaxPool2d(kernel_size=3, stride=2)

    def construct(self, x):
        return ops.concat((self.branch0(x), self.branch1(x), self.branch_pool(x)), axis=1)


class MindcvInceptionC(msnn.Cell):
    def __init__(self, in_channels, channels_7x7):
        super().__init__()
        c7 = channels_7x7
        self.branch0 = MindcvBasicConv2d(in_channels, _w(192), kernel_size=1)
        self.branch1 = msnn.SequentialCell([MindcvBasicConv2d(in_channels, c7, kernel_size=1),
                                            MindcvBasicConv2d(c7, c7, kernel_size=(1, 7)),
                                            MindcvBasicConv2d(c7, _w(192), kernel_size=(7, 1))])
        self.branch2 = msnn.SequentialCell([MindcvBasicConv2d(in_channels, c7, kernel_size=1),
                                            MindcvBasicConv2d(c7, c7, kernel_size=(7, 1)),
                                            MindcvBasicConv2d(c7, c7, kernel_size=(1, 7)),
                                            MindcvBasicConv2d(c7, c7, kernel_size=(7, 1)),
                                            MindcvBasicConv2d(c7, _w(192), kernel_size=(1, 7))])
        self.branch_pool = _ms_branch_pool(in_channels, _w(192))

    def construct(self, x):
        return ops.concat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch_pool(x)), axis=1)


class MindcvInceptionD(msnn.Cell):
    def __init__(self, in_channels):
        super().__init__()
        self.branch0 = msnn.SequentialCell([
            MindcvBasicConv2d(in_channels, _w(192), kernel_size=1),
            MindcvBasicConv2d(_w(192), _w(320), kernel_size=3, stride=2, pad_mode="valid")])
        self.branch1 = msnn.SequentialCell([
            MindcvBasicConv2d(in_channels, _w(192), kernel_size=1),
            MindcvBasicConv2d(_w(192), _w(192), kernel_size=(1, 7)),
            MindcvBasicConv2d(_w(192), _w(192), kernel_size=(7, 1)),
            MindcvBasicConv2d(_w(192), _w(192), kernel_size=3, stride=2, pad_mode="valid")])
        self.branch_pool = msnn.MaxPool2d(kernel_size=3, stride=2)

    def construct(self, x):
        return ops.concat((self.branch0(x), self.branch1(x), self.branch_pool(x)), axis=1)


class MindcvInceptionE(msnn.Cell):
    def __init__(self, in_channels):
        super().__init__()
        self.branch0 = MindcvBasicConv2d(in_channels, _w(320), kernel_size=1)
        self.branch1 = MindcvBasicConv2d(in_channels, _w(384), kernel_size=1)
        self.branch1a = MindcvBasicConv2d(_w(384), _w(384), kernel_size=(1, 3))
        self.branch1b = MindcvBasicConv2d(_w(384), _w(384), kernel_size=(3, 1))
        self.branch2 = msnn.SequentialCell([MindcvBasicConv2d(in_channels, _w(448), kernel_size=1),
                                            MindcvBasicConv2d(_w(448), _w(384), kernel_size=3)])
        self.branch2a = MindcvBasicConv2d(_w(384), _w(384), kernel_size=(1, 3))
        self.branch2b = MindcvBasicConv2d(_w(384), _w(384), kernel_size=(3, 1))
        self.branch_pool = _ms_branch_pool(in_channels, _w(192))

    def construct(self, x):
        x1 = self.branch1(x)
        x1 = ops.concat((self.branch1a(x1), self.branch1b(x1)), axis=1)
        x2 = self.branch2(x)
        x2 = ops.concat((self.branch2a(x2), self.branch2b(x2)), axis=1)
        return ops.concat((self.branch0(x), x1, x2, self.branch_pool(x)), axis=1)


class MindcvInceptionV3(msnn.Cell):
    def __init__(self, num_classes=5):
        super().__init__()
        c5b, c5c, c5d, c6a, c6b, c7a, c7b, c7c = _inception_widths()
        self.aux_logits = False
        self.conv1a = MindcvBasicConv2d(3, _w(32), kernel_size=3, stride=2, pad_mode="valid")
        self.conv2a = MindcvBasicConv2d(_w(32), _w(32), kernel_size=3, stride=1, pad_mode="valid")
        self.conv2b = MindcvBasicConv2d(_w(32), _w(64), kernel_size=3, stride=1)
        self.maxpool1 = msnn.MaxPool2d(kernel_size=3, stride=2)
        self.conv3b = MindcvBasicConv2d(_w(64), _w(80), kernel_size=1)
        self.conv4a = MindcvBasicConv2d(_w(80), _w(192), kernel_size=3, pad_mode="valid")
        self.maxpool2 = msnn.MaxPool2d(kernel_size=3, stride=2)
        self.inception5b = MindcvInceptionA(c5b, pool_features=_w(32))
        self.inception5c = MindcvInceptionA(c5c, pool_features=_w(64))
        self.inception5d = MindcvInceptionA(c5d, pool_features=_w(64))
        self.inception6a = MindcvInceptionB(c6a)
        self.inception6b = MindcvInceptionC(c6b, channels_7x7=_w(128))
        self.inception6c = MindcvInceptionC(c6b, channels_7x7=_w(160))
        self.inception6d = MindcvInceptionC(c6b, channels_7x7=_w(160))
        self.inception6e = MindcvInceptionC(c6b, channels_7x7=_w(192))
        self.inception7a = MindcvInceptionD(c7a)
        self.inception7b = MindcvInceptionE(c7b)
        self.inception7c = MindcvInceptionE(c7c)
        self.classifier = msnn.Dense(c7c, num_classes)

    def construct(self, x):
        stage_features = []  # test harness: see INCEPTION_INPUT
        for cell in (self.conv1a, self.conv2a, self.conv2b, self.maxpool1, self.conv3b, self.conv4a, self.maxpool2,
                     self.inception5b, self.inception5c, self.inception5d, self.inception6a, self.inception6b,
                     self.inception6c, self.inception6d, self.inception6e, self.inception7a, self.inception7b,
                     self.inception7c):
            x = cell(x)
            x = x / x.abs().max()
            stage_features.append(x.mean(axis=(2, 3)))
        return ops.concat([self.classifier(x.mean(axis=(2, 3)))] + stage_features, axis=1)


# mindcv block -> [(mindcv BasicConv2d path, torchvision BasicConv2d name)], in declaration order
INCEPTION_BRANCHES = {
    "A": [("branch0", "branch1x1"), ("branch1.0", "branch5x5_1"), ("branch1.1", "branch5x5_2"),
          ("branch2.0", "branch3x3dbl_1"), ("branch2.1", "branch3x3dbl_2"), ("branch2.2", "branch3x3dbl_3"),
          ("branch_pool.1", "branch_pool")],
    "B": [("branch0", "branch3x3"), ("branch1.0", "branch3x3dbl_1"), ("branch1.1", "branch3x3dbl_2"),
          ("branch1.2", "branch3x3dbl_3")],
    "C": [("branch0", "branch1x1"), ("branch1.0", "branch7x7_1"), ("branch1.1", "branch7x7_2"),
          ("branch1.2", "branch7x7_3"), ("branch2.0", "branch7x7dbl_1"), ("branch2.1", "branch7x7dbl_2"),
          ("branch2.2", "branch7x7dbl_3"), ("branch2.3", "branch7x7dbl_4"), ("branch2.4", "branch7x7dbl_5"),
          ("branch_pool.1", "branch_pool")],
    "D": [("branch0.0", "branch3x3_1"), ("branch0.1", "branch3x3_2"), ("branch1.0", "branch7x7x3_1"),
          ("branch1.1", "branch7x7x3_2"), ("branch1.2", "branch7x7x3_3"), ("branch1.3", "branch7x7x3_4")],
    "E": [("branch0", "branch1x1"), ("branch1", "branch3x3_1"), ("branch1a", "branch3x3_2a"),
          ("branch1b", "branch3x3_2b"), ("branch2.0", "branch3x3dbl_1"), ("branch2.1", "branch3x3dbl_2"),
          ("branch2a", "branch3x3dbl_3a"), ("branch2b", "branch3x3dbl_3b"), ("branch_pool.1", "branch_pool")],
}


def zoo_inception_v3_pair():
    """torchvision `Mixed_6c.branch7x7dbl_4.conv` / `Conv2d_2b_3x3.bn` / `fc` vs mindcv `inception6c.branch2.3.conv`
    / `conv2b.bn` / `classifier`; inside each Inception block several BasicConv2d share one shape (branch1x1 and
    branch3x3dbl_1, branch7x7_2 and branch7x7dbl_3, ...), and Mixed_6c / Mixed_6d are built alike."""
    def basic(ms_prefix, torch_prefix):
        return _conv_bn_map(f"{ms_prefix}.conv", f"{ms_prefix}.bn", f"{torch_prefix}.conv", f"{torch_prefix}.bn")

    reference = {}
    for ms_name, torch_name in (("conv1a", "Conv2d_1a_3x3"), ("conv2a", "Conv2d_2a_3x3"), ("conv2b", "Conv2d_2b_3x3"),
                                ("conv3b", "Conv2d_3b_1x1"), ("conv4a", "Conv2d_4a_3x3")):
        reference |= basic(ms_name, torch_name)
    for kind, ms_block, torch_block in (("A", "inception5b", "Mixed_5b"), ("A", "inception5c", "Mixed_5c"),
                                        ("A", "inception5d", "Mixed_5d"), ("B", "inception6a", "Mixed_6a"),
                                        ("C", "inception6b", "Mixed_6b"), ("C", "inception6c", "Mixed_6c"),
                                        ("C", "inception6d", "Mixed_6d"), ("C", "inception6e", "Mixed_6e"),
                                        ("D", "inception7a", "Mixed_7a"), ("E", "inception7b", "Mixed_7b"),
                                        ("E", "inception7c", "Mixed_7c")):
        for ms_branch, torch_branch in INCEPTION_BRANCHES[kind]:
            reference |= basic(f"{ms_block}.{ms_branch}", f"{torch_block}.{torch_branch}")
    reference |= _same("classifier", "fc", "weight", "bias")
    return Pair("zoo_inception_v3", TvInception3(), MindcvInceptionV3(), reference, INCEPTION_INPUT)


ZOO_CNN2_PAIRS = [
    zoo_convnext_pair,
    zoo_efficientnet_pair,
    zoo_repvgg_pair,
    zoo_inception_v3_pair,
]
