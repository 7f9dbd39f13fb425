"""Model pairs for stage 2's hard cases (issue 18): entries that names, shapes and order cannot settle, and a path
whose output barely depends on an entry, so that a probe must say whether its numbers separate the candidates.

Config files name these as "tests.hidden_path_pairs:<factory>".

- A BiT-style pre-activation bottleneck (Kolesnikov et al. 2020, timm's `PreActBottleneck`): stage 0's shortcut
  1x1 conv and its last 1x1 conv have one shape and stride 1; PyTorch declares the shortcut first (timm), the port
  declares it last and runs it after the main path (as a port written from the paper may).
- A ConViT-style gated positional self-attention (d'Ascoli et al. 2021, timm's `GPSA`): PyTorch fuses q and k into
  one `qk` Linear of 2*dim rows, the port keeps separate `q` and `k` Dense layers; the content path is damped by a
  gate, `sigmoid(gating_param)` weighting the positional scores against the content scores.
"""

import mindspore as ms
import numpy as np
import torch
from mindspore import nn as msnn
from mindspore import ops
from torch import nn as tnn

# ---------------------------------------------------------------- BiT-style pre-activation bottleneck

IN, MID, OUT, CLASSES = 8, 8, 32, 5  # stage 0 as in BiT: the shortcut and conv3 both (OUT, MID, 1, 1)


def _bit_stages():
    """(in, mid, out, depth, stride) per stage: ResNet-50's 3 blocks in stage 0, then fewer, each stage halving."""
    return [(IN, MID, OUT, 3, 1), (OUT, 2 * MID, 2 * OUT, 2, 2), (2 * OUT, 4 * MID, 4 * OUT, 1, 2),
            (4 * OUT, 8 * MID, 8 * OUT, 1, 2)]


class DownsampleConv(tnn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv = tnn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x):
        return self.conv(x)


class PreActBottleneck(tnn.Module):
    """timm's order: downsample declared (and run) first, then norm1, conv1, norm2, conv2, norm3, conv3."""

    def __init__(self, cin, mid, cout, stride=1):
        super().__init__()
        self.downsample = DownsampleConv(cin, cout, stride) if cin != cout or stride != 1 else None
        self.norm1 = tnn.GroupNorm(2, cin)
        self.conv1 = tnn.Conv2d(cin, mid, 1, bias=False)
        self.norm2 = tnn.GroupNorm(2, mid)
        self.conv2 = tnn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.norm3 = tnn.GroupNorm(2, mid)
        self.conv3 = tnn.Conv2d(mid, cout, 1, bias=False)

    def forward(self, x):
        x_preact = torch.relu(self.norm1(x))
        shortcut = self.downsample(x_preact) if self.downsample is not None else x
        x = self.conv1(x_preact)
        x = self.conv2(torch.relu(self.norm2(x)))
        x = self.conv3(torch.relu(self.norm3(x)))
        return x + shortcut


class BitStage(tnn.Module):
    def __init__(self, cin, mid, cout, depth, stride=1):
        super().__init__()
        self.blocks = tnn.Sequential(*[PreActBottleneck(cin, mid, cout, stride) if i == 0 else
                                       PreActBottleneck(cout, mid, cout) for i in range(depth)])

    def forward(self, x):
        return self.blocks(x)


class BitNet(tnn.Module):
    """timm's ResNetV2 layout: stem.conv, stages.N.blocks.M, norm, head.fc."""

    def __init__(self):
        super().__init__()
        self.stem = tnn.Sequential()
        self.stem.add_module("conv", tnn.Conv2d(3, IN, 3, padding=1, bias=False))
        self.stages = tnn.Sequential(*[BitStage(cin, mid, cout, depth, stride) for cin, mid, cout, depth, stride
                                       in _bit_stages()])
        self.norm = tnn.GroupNorm(2, _bit_stages()[-1][2])
        self.fc = tnn.Linear(_bit_stages()[-1][2], CLASSES)

    def forward(self, x):
        x = torch.relu(self.norm(self.stages(self.stem(x))))
        return self.fc(x.mean(dim=(2, 3)))


class MsPreActBottleneck(msnn.Cell):
    """MindCV's BiT Bottleneck: gn1, conv1, gn2, conv2, gn3, conv3, then the `down_sample` it is given, declared
    last and run after conv3."""

    def __init__(self, cin, mid, cout, down_sample=None, stride=1):
        super().__init__()
        self.gn1 = msnn.GroupNorm(2, cin)
        self.conv1 = msnn.Conv2d(cin, mid, 1)
        self.gn2 = msnn.GroupNorm(2, mid)
        self.conv2 = msnn.Conv2d(mid, mid, 3, stride=stride, pad_mode="pad", padding=1)
        self.gn3 = msnn.GroupNorm(2, mid)
        self.conv3 = msnn.Conv2d(mid, cout, 1)
        self.down_sample = down_sample

    def construct(self, x):
        identity = x
        out = ops.relu(self.gn1(x))
        residual = out
        out = self.conv1(out)
        out = self.conv2(ops.relu(self.gn2(out)))
        out = self.conv3(ops.relu(self.gn3(out)))
        if self.down_sample is not None:
            identity = self.down_sample(residual)
        return out + identity


class MsBitNet(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.conv1 = msnn.Conv2d(3, IN, 3, pad_mode="pad", padding=1)
        for index, (cin, mid, cout, depth, stride) in enumerate(_bit_stages()):
            setattr(self, f"layer{index + 1}", self._layer(cin, mid, cout, depth, stride))
        self.gn = msnn.GroupNorm(2, _bit_stages()[-1][2])
        self.classifier = msnn.Dense(_bit_stages()[-1][2], CLASSES)

    @staticmethod
    def _layer(cin, mid, cout, depth, stride):
        down_sample = msnn.SequentialCell([msnn.Conv2d(cin, cout, 1, stride=stride)])
        return msnn.SequentialCell([MsPreActBottleneck(cin, mid, cout, down_sample, stride)]
                                   + [MsPreActBottleneck(cout, mid, cout) for _ in range(depth - 1)])

    def construct(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        x = ops.relu(self.gn(x))
        return self.classifier(x.mean(axis=(2, 3)))


def bit_torch():
    return BitNet()


def bit_mindspore():
    return MsBitNet()


BIT_REFERENCE = {"layer1.0.down_sample.0.weight": "stages.0.blocks.0.downsample.conv.weight",
                 "layer1.0.conv3.weight": "stages.0.blocks.0.conv3.weight",
                 "layer1.1.conv3.weight": "stages.0.blocks.1.conv3.weight",
                 "layer1.0.conv1.weight": "stages.0.blocks.0.conv1.weight"}


# ---------------------------------------------------------------- ConViT-style gated positional attention

DIM, HEADS, TOKENS = 16, 2, 9  # 9 patches: a 3x3 grid for the relative positions


def _rel_indices(tokens):
    side = int(round(tokens ** 0.5))
    ind = np.arange(side)[None, :] - np.arange(side)[:, None]
    indx = np.tile(ind, (side, side))
    indy = np.repeat(np.repeat(ind, side, axis=0), side, axis=1)
    rel = np.stack([indx, indy, indx ** 2 + indy ** 2], axis=-1).astype(np.float32)
    return rel[None]  # (1, N, N, 3)


class GPSA(tnn.Module):
    """timm's GPSA: one `qk` Linear, a `v` Linear, positional scores from `pos_proj`, mixed by a gate."""

    def __init__(self, dim=DIM, heads=HEADS, gate=1.0, gate_name="gating_param"):
        super().__init__()
        self.heads, self.head_dim, self.gate_name = heads, dim // heads, gate_name
        self.scale = self.head_dim ** -0.5
        self.qk = tnn.Linear(dim, dim * 2, bias=False)
        self.v = tnn.Linear(dim, dim, bias=False)
        self.proj = tnn.Linear(dim, dim)
        self.pos_proj = tnn.Linear(3, heads)
        setattr(self, gate_name, tnn.Parameter(gate * torch.ones(heads)))
        self.register_buffer("rel_indices", torch.from_numpy(_rel_indices(TOKENS)), persistent=False)

    def forward(self, x):
        b, n, c = x.shape
        qk = self.qk(x).reshape(b, n, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = qk[0], qk[1]
        pos_score = self.pos_proj(self.rel_indices).expand(b, -1, -1, -1).permute(0, 3, 1, 2).softmax(dim=-1)
        patch_score = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        gating = torch.sigmoid(getattr(self, self.gate_name).view(1, -1, 1, 1))
        attn = (1.0 - gating) * patch_score + gating * pos_score
        attn = attn / attn.sum(dim=-1).unsqueeze(-1)
        v = self.v(x).reshape(b, n, self.heads, self.head_dim).permute(0, 2, 1, 3)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class ConvitNet(tnn.Module):
    def __init__(self, gate=1.0, gate_name="gating_param"):
        super().__init__()
        self.embed = tnn.Linear(4, DIM)
        self.attn = GPSA(gate=gate, gate_name=gate_name)
        self.head = tnn.Linear(DIM, CLASSES)

    def forward(self, x):
        x = self.embed(x)
        x = x + self.attn(x)
        return self.head(x.mean(dim=1))


class MsGPSA(msnn.Cell):
    """MindCV's GPSA: separate `q`, `k`, `v` Dense layers, declared q, k, v."""

    def __init__(self, dim=DIM, heads=HEADS, gate_name="gating_param"):
        super().__init__()
        self.heads, self.head_dim, self.gate_name = heads, dim // heads, gate_name
        self.scale = self.head_dim ** -0.5
        self.q = msnn.Dense(dim, dim, has_bias=False)
        self.k = msnn.Dense(dim, dim, has_bias=False)
        self.v = msnn.Dense(dim, dim, has_bias=False)
        self.proj = msnn.Dense(dim, dim)
        self.pos_proj = msnn.Dense(3, heads)
        setattr(self, gate_name, ms.Parameter(ms.Tensor(np.ones(heads, np.float32)), name=gate_name))
        self.rel_indices = ms.Tensor(_rel_indices(TOKENS))

    def _heads(self, x):
        b, n, _ = x.shape
        return x.reshape(b, n, self.heads, self.head_dim).transpose(0, 2, 1, 3)

    def construct(self, x):
        b, n, c = x.shape
        q, k = self._heads(self.q(x)), self._heads(self.k(x))
        pos_score = ops.softmax(self.pos_proj(self.rel_indices).transpose(0, 3, 1, 2), axis=-1)
        patch_score = ops.softmax(ops.matmul(q, k.transpose(0, 1, 3, 2)) * self.scale, axis=-1)
        gating = ops.sigmoid(getattr(self, self.gate_name).reshape(1, -1, 1, 1))
        attn = (1.0 - gating) * patch_score + gating * pos_score
        attn = attn / attn.sum(axis=-1, keepdims=True)
        v = self._heads(self.v(x))
        return self.proj(ops.matmul(attn, v).transpose(0, 2, 1, 3).reshape(b, n, c))


class MsConvitNet(msnn.Cell):
    def __init__(self, gate_name="gating_param"):
        super().__init__()
        self.embed = msnn.Dense(4, DIM)
        self.attn = MsGPSA(gate_name=gate_name)
        self.head = msnn.Dense(DIM, CLASSES)

    def construct(self, x):
        x = self.embed(x)
        x = x + self.attn(x)
        return self.head(x.mean(axis=1))


def convit_torch(gate=1.0, gate_name="gating_param"):
    """`gate_name`: the gate's parameter name on both sides; one without a gate word ("mix") is not known as one."""
    return ConvitNet(gate, gate_name)


def convit_mindspore(gate_name="gating_param"):
    return MsConvitNet(gate_name)


CONVIT_REFERENCE = {"attn.q.weight": {"torch": "attn.qk.weight", "transform": "chunk(2, 0, 0)"},
                    "attn.k.weight": {"torch": "attn.qk.weight", "transform": "chunk(2, 0, 1)"},
                    "attn.v.weight": "attn.v.weight"}
CONVIT_INPUTS = f"[verify]\ninputs = [[2, {TOKENS}, 4]]\n"
