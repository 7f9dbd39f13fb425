"""Pairs modelled on issue 18's unseen real pairs (timm -> MindCV), each differing in one thing, for stage 4's
diagnosis (tests/verify/test_unseen_pairs.py). Importable by configs as tests.unseen_models:<factory>.

- a timm-style net whose BatchNorm carries its activation (BatchNormAct2d) and a squeeze-excite block (timm's
  SqueezeExcite: mean, conv_reduce, act, conv_expand, sigmoid gate), against a port with BatchNorm2d and a
  separate activation; `se_act` plants the SE activation that differs (ReLU vs SiLU); `act="swish"` makes that
  activation MindCV's Swish (x times a Sigmoid cell of its own);
- an attention whose q and k are normalised inline in forward (F.normalize, a fixed logit scale: cosine
  attention), against a port without it, in every block;
- a transformer block (LayerNorm, Mlp with nn.GELU) against a port that keeps MindSpore's GELU default (tanh)
  and LayerNorm's epsilon default;
- a deep stack of same-shaped layers and an exp box decode (YOLOX's): float32 rounding grows to just under the
  tolerance.
"""

import torch.nn.functional as F
from mindspore import nn as msnn
from mindspore import ops
from torch import nn

from tests.diagnosis_models import MsAttention  # the port: separate q, k, v, the plain scaled dot product

# --- BatchNormAct2d and a squeeze-excite block ----------------------------------------------------------


class BatchNormAct2d(nn.BatchNorm2d):
    """As timm's: a BatchNorm2d (same parameter names) whose forward applies drop and act after normalising."""

    def __init__(self, num_features):
        super().__init__(num_features)
        self.drop, self.act = nn.Identity(), nn.SiLU(inplace=True)

    def forward(self, x):
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return self.act(self.drop(x))


class TorchSqueezeExcite(nn.Module):
    """timm's efficientnet_blocks.SqueezeExcite with act_layer=nn.ReLU."""

    def __init__(self, channels, reduced):
        super().__init__()
        self.conv_reduce, self.act1 = nn.Conv2d(channels, reduced, 1), nn.ReLU(inplace=True)
        self.conv_expand, self.gate = nn.Conv2d(reduced, channels, 1), nn.Sigmoid()

    def forward(self, x):
        scale = self.conv_expand(self.act1(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * self.gate(scale)


class TorchSeNet(nn.Module):
    def __init__(self, norm=BatchNormAct2d):
        super().__init__()
        self.conv_stem, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), norm(8)
        self.se = TorchSqueezeExcite(8, 4)
        self.conv_head, self.bn2 = nn.Conv2d(8, 8, 1, bias=False), norm(8)
        self.classifier = nn.Linear(8, 3)

    def forward(self, x):
        x = self.bn2(self.conv_head(self.se(self.bn1(self.conv_stem(x)))))
        return self.classifier(x.mean((2, 3)))


class BatchNormSiLU(nn.Sequential):
    """A BatchNorm2d then its own SiLU module (transformers' EfficientNet: `depthwise_norm`, `depthwise_act`)."""

    def __init__(self, num_features):
        super().__init__()
        self.norm, self.act = nn.BatchNorm2d(num_features), nn.SiLU()


class MsSqueezeExcite(msnn.Cell):
    def __init__(self, channels, reduced, act):
        super().__init__()
        self.conv_reduce = msnn.Conv2d(channels, reduced, 1, has_bias=True)
        self.act = act()
        self.conv_expand = msnn.Conv2d(reduced, channels, 1, has_bias=True)
        self.sigmoid = msnn.Sigmoid()

    def construct(self, x):
        return x * self.sigmoid(self.conv_expand(self.act(self.conv_reduce(x.mean((2, 3), keep_dims=True)))))


class Swish(msnn.Cell):
    """MindCV's layers.activation.Swish (its EfficientNet's activation): x * sigmoid(x), the Sigmoid a cell."""

    def __init__(self):
        super().__init__()
        self.result = None
        self.sigmoid = msnn.Sigmoid()

    def construct(self, x):
        return x * self.sigmoid(x)


class MsSeNet(msnn.Cell):
    def __init__(self, se_act="relu", act="silu"):
        super().__init__()
        act = {"silu": msnn.SiLU, "swish": Swish}[act]
        self.conv_stem = msnn.Conv2d(3, 8, 3, pad_mode="pad", padding=1)
        self.bn1, self.act1 = msnn.BatchNorm2d(8, momentum=0.9), act()
        self.se = MsSqueezeExcite(8, 4, {"relu": msnn.ReLU, "silu": msnn.SiLU}[se_act])
        self.conv_head = msnn.Conv2d(8, 8, 1)
        self.bn2, self.act2 = msnn.BatchNorm2d(8, momentum=0.9), act()
        self.classifier = msnn.Dense(8, 3)

    def construct(self, x):
        x = self.act2(self.bn2(self.conv_head(self.se(self.act1(self.bn1(self.conv_stem(x)))))))
        return self.classifier(x.mean((2, 3)))


def torch_se_net():
    return TorchSeNet()


def torch_se_net_plain():
    return TorchSeNet(BatchNormSiLU)


def ms_se_net(se_act="relu", act="silu"):
    return MsSeNet(se_act, act)


# --- attention normalised inline (cosine attention) -----------------------------------------------------


class TorchCosineAttention(nn.Module):
    """A fused qkv Linear; q and k normalised inline (F.normalize) before a fixed logit scale."""

    def __init__(self, dim=8, heads=2, normalise=True):
        super().__init__()
        self.heads, self.normalise = heads, normalise
        self.scale = 4.0 if normalise else (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)

    def forward(self, x):
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.normalise:
            q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(batch, tokens, dim))


class TorchAttentionBlock(nn.Module):
    def __init__(self, normalise=True):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(8), TorchCosineAttention(normalise=normalise)

    def forward(self, x):
        return x + self.attn(self.norm1(x))


class TorchCosineNet(nn.Module):
    def __init__(self, depth=3, normalise=True):
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.blocks = nn.ModuleList([TorchAttentionBlock(normalise) for _ in range(depth)])
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.embed(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(dim=1))


class MsAttentionBlock(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.norm1, self.attn = msnn.LayerNorm((8,), epsilon=1e-5), MsAttention()

    def construct(self, x):
        return x + self.attn(self.norm1(x))


class MsCosineNet(msnn.Cell):
    def __init__(self, depth=3):
        super().__init__()
        self.embed = msnn.Dense(4, 8)
        self.blocks = msnn.CellList([MsAttentionBlock() for _ in range(depth)])
        self.head = msnn.Dense(8, 3)

    def construct(self, x):
        x = self.embed(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(axis=1))


def torch_cosine_net(normalise=True):
    return TorchCosineNet(normalise=normalise)


def ms_cosine_net():
    return MsCosineNet()


# --- a transformer MLP block: GELU approximation and LayerNorm epsilon ----------------------------------


class TorchMlpBlock(nn.Module):
    """timm's Block without attention: x + mlp(norm(x)), Mlp = fc1, nn.GELU (exact), fc2; LayerNorm eps 1e-6."""

    def __init__(self, dim=16):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1, self.act, self.fc2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


class TorchMlpNet(nn.Module):
    def __init__(self, depth=2):
        super().__init__()
        self.embed = nn.Linear(4, 16)
        self.blocks = nn.Sequential(*[TorchMlpBlock() for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(16, eps=1e-6), nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.norm(self.blocks(self.embed(x))).mean(dim=1))


class MsMlpBlock(msnn.Cell):
    def __init__(self, dim=16, defaults=True):
        super().__init__()
        # MindCV's choice: MindSpore's defaults, nn.GELU() (tanh) and LayerNorm epsilon 1e-7.
        self.norm = msnn.LayerNorm((dim,)) if defaults else msnn.LayerNorm((dim,), epsilon=1e-6)
        self.fc1, self.fc2 = msnn.Dense(dim, 4 * dim), msnn.Dense(4 * dim, dim)
        self.act = msnn.GELU() if defaults else msnn.GELU(approximate=False)

    def construct(self, x):
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


class MsMlpNet(msnn.Cell):
    def __init__(self, depth=2, defaults=True):
        super().__init__()
        self.embed = msnn.Dense(4, 16)
        self.blocks = msnn.SequentialCell([MsMlpBlock(defaults=defaults) for _ in range(depth)])
        self.norm = msnn.LayerNorm((16,)) if defaults else msnn.LayerNorm((16,), epsilon=1e-6)
        self.head = msnn.Dense(16, 3)

    def construct(self, x):
        return self.head(self.norm(self.blocks(self.embed(x))).mean(axis=1))


def torch_mlp_net():
    return TorchMlpNet()


def ms_mlp_net(defaults=True):
    return MsMlpNet(defaults=defaults)


# --- a deep stack: rounding that grows with depth ----------------------------------------------------------


class TorchDeepStack(nn.Module):
    """24 Linear layers, then a box decode as YOLOX's: exp of a regression scaled to [-40, 40], which turns the
    stack's relative rounding (about 1e-6) into an output error of some 1e-5."""

    def __init__(self, depth=24, width=32):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(width, width) for _ in range(depth)])
        self.reg, self.decode = nn.Linear(width, 4), nn.Linear(4, 4)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        box = self.reg(x)
        return self.decode((40 * box / box.abs().amax()).exp())


class MsDeepStack(msnn.Cell):
    def __init__(self, depth=24, width=32):
        super().__init__()
        self.layers = msnn.CellList([msnn.Dense(width, width) for _ in range(depth)])
        self.reg, self.decode = msnn.Dense(width, 4), msnn.Dense(4, 4)

    def construct(self, x):
        for layer in self.layers:
            x = layer(x)
        box = self.reg(x)
        return self.decode(ops.exp(40 * box / box.abs().max()))


def torch_deep_stack():
    return TorchDeepStack()


def ms_deep_stack():
    return MsDeepStack()
