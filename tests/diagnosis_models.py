"""Pairs that differ in one thing each, for stage 4's diagnosis (tests/verify/test_diagnosis.py).

Importable by configs as tests.diagnosis_models:<factory>. Each MindSpore factory builds a correct port by
default; one keyword plants the one difference the test is about. The shapes follow real code where there
is some: timm's Mlp (fc1, act, drop, fc2) against mindcv's Mlp, whose act defaults to nn.GELU() (tanh);
timm's BatchNormAct2d (a BatchNorm2d subclass that applies self.drop and self.act after the norm) against a
port with a separate ReLU; timm's Attention (a fused qkv Linear and proj) against a port with separate
q, k, v projections.
"""

import torch
import torch.nn.functional as F
from mindspore import mint, ops
from mindspore import nn as msnn
from torch import nn

# --- an MLP: the GELU approximation --------------------------------------------------------------------

class TorchMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.drop, self.fc2 = nn.Linear(8, 16), nn.GELU(), nn.Dropout(0.0), nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(self.drop(self.act(self.fc1(x))))


class MsMlp(msnn.Cell):
    def __init__(self, tanh_gelu=False, drop_p=0.0):
        super().__init__()
        self.fc1, self.fc2 = msnn.Dense(8, 16), msnn.Dense(16, 4)
        self.act = msnn.GELU(approximate=tanh_gelu)  # mindcv keeps nn.GELU()'s default: tanh
        self.drop = msnn.Dropout(p=drop_p)  # a dropout rate copied wrong acts only in training

    def construct(self, x):
        return self.fc2(self.drop(self.act(self.fc1(x))))


def torch_mlp():
    return TorchMlp()


def ms_mlp(tanh_gelu=False, drop_p=0.0):
    return MsMlp(tanh_gelu, drop_p)


# --- a conv stem: padding, pooling, resizing, normalisation settings ------------------------------------

class TorchStem(nn.Module):
    """conv (stride 2, padding 1), BatchNorm, ReLU, a pooling or resize chosen by `middle`, conv, mean, linear."""

    def __init__(self, middle="avg", momentum=0.1):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4, momentum=momentum)
        self.act = nn.ReLU()
        self.middle = {"avg": lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False),
                       "up": lambda: nn.Upsample(size=(8, 8), mode="bilinear")}[middle]()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.conv2(self.middle(self.act(self.bn(self.conv(x)))))
        return self.fc(x.mean(dim=(2, 3)))


class MsStem(msnn.Cell):
    def __init__(self, middle="avg", same_padding=False, include_pad=False, align_corners=False, momentum=0.9):
        super().__init__()
        self.conv = msnn.Conv2d(3, 4, 3, stride=2) if same_padding else \
            msnn.Conv2d(3, 4, 3, stride=2, pad_mode="pad", padding=1)
        self.bn = msnn.BatchNorm2d(4, momentum=momentum)
        self.act = msnn.ReLU()
        if middle == "avg":
            self.middle = msnn.AvgPool2d(3, 1, pad_mode="pad", padding=1, count_include_pad=include_pad)
        else:
            self.middle = msnn.Upsample(size=(8, 8), mode="bilinear", align_corners=True) if align_corners else \
                msnn.Upsample(size=(8, 8), mode="bilinear")
        self.conv2 = msnn.Conv2d(4, 4, 3, pad_mode="pad", padding=1, has_bias=True)
        self.fc = msnn.Dense(4, 3)

    def construct(self, x):
        x = self.conv2(self.middle(self.act(self.bn(self.conv(x)))))
        return self.fc(x.mean(axis=(2, 3)))


def torch_stem(middle="avg", momentum=0.1):
    return TorchStem(middle, momentum)


def ms_stem(middle="avg", same_padding=False, include_pad=False, align_corners=False, momentum=0.9):
    """same_padding: MindSpore's pad_mode='same' default; include_pad: count_include_pad=True; align_corners;
    momentum=0.1: PyTorch's value copied across conventions."""
    return MsStem(middle, same_padding, include_pad, align_corners, momentum)


# --- two branches, one resized by a functional call ----------------------------------------------------

class TorchTwoBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.right = nn.Conv2d(4, 4, 3, padding=1)
        self.left = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.stem(x)
        # The right branch runs first: the layer after it in execution order belongs to the other branch.
        right = self.right(F.interpolate(x, size=(12, 12), mode="bilinear", align_corners=False))
        left = self.left(x)
        return self.head(torch.cat([left.mean(dim=(2, 3)), right.mean(dim=(2, 3))], dim=1))


class MsTwoBranch(msnn.Cell):
    def __init__(self, resize_mode="bilinear"):
        super().__init__()
        self.stem = msnn.Conv2d(3, 4, 3, pad_mode="pad", padding=1, has_bias=True)
        self.right = msnn.Conv2d(4, 4, 3, pad_mode="pad", padding=1, has_bias=True)
        self.left = msnn.Conv2d(4, 4, 1, has_bias=True)
        self.head = msnn.Dense(8, 3)
        self.resize_mode = resize_mode

    def construct(self, x):
        x = self.stem(x)
        if self.resize_mode == "bilinear":
            resized = ops.interpolate(x, size=(12, 12), mode="bilinear", align_corners=False)
        else:
            resized = ops.interpolate(x, size=(12, 12), mode=self.resize_mode)
        right = self.right(resized)
        left = self.left(x)
        return self.head(ops.cat([left.mean(axis=(2, 3)), right.mean(axis=(2, 3))], axis=1))


def torch_two_branch():
    return TorchTwoBranch()


def ms_two_branch(resize_mode="bilinear"):
    return MsTwoBranch(resize_mode)


# --- two same-shaped branches that a correct port runs in the other order ------------------------------

class TorchBranches(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.conv_a, self.act_a = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()
        self.conv_b, self.act_b = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.stem(x)
        a = self.act_a(self.conv_a(x))
        b = self.act_b(self.conv_b(x))
        return self.head(torch.cat([a.mean(dim=(2, 3)), b.mean(dim=(2, 3))], dim=1))


class MsBranchesOtherOrder(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.stem = msnn.Conv2d(3, 4, 3, pad_mode="pad", padding=1, has_bias=True)
        self.conv_a, self.act_a = msnn.Conv2d(4, 4, 3, pad_mode="pad", padding=1, has_bias=True), msnn.ReLU()
        self.conv_b, self.act_b = msnn.Conv2d(4, 4, 3, pad_mode="pad", padding=1, has_bias=True), msnn.ReLU()
        self.head = msnn.Dense(8, 3)

    def construct(self, x):
        x = self.stem(x)
        b = self.act_b(self.conv_b(x))  # branch b first: same result, another execution order
        a = self.act_a(self.conv_a(x))
        return self.head(ops.cat([a.mean(axis=(2, 3)), b.mean(axis=(2, 3))], axis=1))


def torch_branches():
    return TorchBranches()


def ms_branches_other_order():
    return MsBranchesOtherOrder()


# --- norm then pool, or pool then norm ---------------------------------------------------------------

class TorchNormPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.pool(self.bn(self.conv(x))).mean(dim=(2, 3)))


class MsNormPool(msnn.Cell):
    def __init__(self, pool_first=False):
        super().__init__()
        self.conv = msnn.Conv2d(3, 4, 3, pad_mode="pad", padding=1, has_bias=True)
        self.bn = msnn.BatchNorm2d(4, momentum=0.9)
        self.pool = msnn.MaxPool2d(2, 2)
        self.fc = msnn.Dense(4, 3)
        self.pool_first = pool_first

    def construct(self, x):
        x = self.conv(x)
        # A max pool does not commute with a BatchNorm whose scale is negative: the order shows.
        x = self.bn(self.pool(x)) if self.pool_first else self.pool(self.bn(x))
        return self.fc(x.mean(axis=(2, 3)))


def torch_norm_pool():
    return TorchNormPool()


def ms_norm_pool(pool_first=False):
    return MsNormPool(pool_first)


# --- a norm with its activation built in (timm's BatchNormAct2d) ----------------------------------------

class BatchNormAct2d(nn.BatchNorm2d):
    """As timm's: a BatchNorm2d (same parameter names) that applies drop and act after normalising."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.drop = nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return self.act(self.drop(x))


class TorchNormAct(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = BatchNormAct2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.conv2(self.bn1(self.conv(x))).mean(dim=(2, 3)))


class MsNormAct(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.conv = msnn.Conv2d(3, 4, 3, pad_mode="pad", padding=1)
        self.bn1 = msnn.BatchNorm2d(4, momentum=0.9)
        self.act1 = msnn.ReLU()
        self.conv2 = msnn.Conv2d(4, 4, 3, pad_mode="pad", padding=1, has_bias=True)
        self.fc = msnn.Dense(4, 3)

    def construct(self, x):
        return self.fc(self.conv2(self.act1(self.bn1(self.conv(x)))).mean(axis=(2, 3)))


def torch_norm_act():
    return TorchNormAct()


def ms_norm_act():
    return MsNormAct()


# --- two same-shaped layers in a row ------------------------------------------------------------------

class TorchTwinLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2, self.head = nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.fc2(self.act(self.fc1(x))))


class MsTwinLinear(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2, self.head = msnn.Dense(8, 8), msnn.ReLU(), msnn.Dense(8, 8), msnn.Dense(8, 3)

    def construct(self, x):
        return self.head(self.fc2(self.act(self.fc1(x))))


def torch_twin_linear():
    return TorchTwinLinear()


def ms_twin_linear():
    return MsTwinLinear()


# --- a stack of same-shaped blocks --------------------------------------------------------------------

class TorchStack(nn.Module):
    def __init__(self, depth=3):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(8, 8), nn.ReLU()) for _ in range(depth)])
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class MsStack(msnn.Cell):
    def __init__(self, depth=3):
        super().__init__()
        self.blocks = msnn.CellList([msnn.SequentialCell([msnn.Dense(8, 8), msnn.ReLU()]) for _ in range(depth)])
        self.head = msnn.Dense(8, 3)

    def construct(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def torch_stack():
    return TorchStack()


def ms_stack():
    return MsStack()


# --- attention: a fused qkv against separate projections -------------------------------------------------

class TorchAttention(nn.Module):
    """timm's Attention, without its norms: qkv = Linear(d, 3d), softmax(q k^T / sqrt(hd)) v, proj."""

    def __init__(self, dim=8, heads=2):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)

    def forward(self, x):
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(batch, tokens, dim))


class TorchAttentionNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.attn, self.head = nn.Linear(4, 8), TorchAttention(), nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.attn(self.embed(x)).mean(dim=1))


class MsAttention(msnn.Cell):
    def __init__(self, dim=8, heads=2):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q, self.k, self.v = msnn.Dense(dim, dim), msnn.Dense(dim, dim), msnn.Dense(dim, dim)
        self.proj = msnn.Dense(dim, dim)

    def _split(self, x, batch, tokens, dim):
        return x.reshape(batch, tokens, self.heads, dim // self.heads).transpose(0, 2, 1, 3)

    def construct(self, x):
        batch, tokens, dim = x.shape
        q, k, v = (self._split(layer(x), batch, tokens, dim) for layer in (self.q, self.k, self.v))
        attn = ops.softmax(ops.matmul(q, k.transpose(0, 1, 3, 2)) * self.scale, axis=-1)
        return self.proj(ops.matmul(attn, v).transpose(0, 2, 1, 3).reshape(batch, tokens, dim))


class MsAttentionNet(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.embed, self.attn, self.head = msnn.Dense(4, 8), MsAttention(), msnn.Dense(8, 3)

    def construct(self, x):
        return self.head(self.attn(self.embed(x)).mean(axis=1))


def torch_attention_net():
    return TorchAttentionNet()


def ms_attention_net():
    return MsAttentionNet()


# --- a port that cannot run here: mint layers need kernels MindSpore 2.10's CPU backend lacks -----------

class TorchConvHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3)))


class MsMintConvHead(msnn.Cell):
    """mindone-style: mint.nn.Conv2d (PyTorch's names), which runs Conv2DExt."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = mint.nn.Conv2d(3, 4, 3), msnn.Dense(4, 3)

    def construct(self, x):
        return self.fc(self.conv(x).mean(axis=(2, 3)))


def torch_conv_head():
    return TorchConvHead()


def ms_mint_conv_head():
    return MsMintConvHead()


# --- outputs that do not line up: a dict with a cache against a tuple ---------------------------------------

class KeyValueCache:
    """Not a tensor: what a decoder hands back for the next step (as Hugging Face's DynamicCache)."""

    def __init__(self, keys):
        self.keys = keys


class TorchCachedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        logits = self.fc(x)
        return {"logits": logits, "past_key_values": KeyValueCache([logits])}


class MsTupleNet(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.fc = msnn.Dense(4, 3)

    def construct(self, x):
        logits = self.fc(x)
        return logits, logits * 2


def torch_cached_net():
    return TorchCachedNet()


def ms_tuple_net():
    return MsTupleNet()


# --- zoo-shaped ports (tests/zoo_*_pairs.py) with mindcv's GELU default --------------------------------

def _tanh_gelu(net):
    """Every GELU as nn.GELU() builds it by default: the tanh approximation (what mindcv's ports keep)."""
    for _, cell in net.cells_and_names():
        if isinstance(cell, msnn.GELU):
            cell.approximate = "tanh"
    return net


def torch_convnext():
    from tests.zoo_cnn2_pairs import zoo_convnext_pair
    return zoo_convnext_pair().torch_model


def ms_convnext(tanh_gelu=False):
    from tests.zoo_cnn2_pairs import zoo_convnext_pair
    net = zoo_convnext_pair().ms_model
    return _tanh_gelu(net) if tanh_gelu else net


def torch_vit():
    from tests.zoo_transformer_pairs import vit_timm_vs_model_zoo_pair
    return vit_timm_vs_model_zoo_pair().torch_model


def ms_vit(tanh_gelu=False):
    from tests.zoo_transformer_pairs import vit_timm_vs_model_zoo_pair
    net = vit_timm_vs_model_zoo_pair().ms_model
    return _tanh_gelu(net) if tanh_gelu else net


# --- a detector head: same-shaped branches run in another order on each side ---------------------------
# ultralytics' Detect runs every level's box branch (cv2) and then every level's class branch (cv3); mindyolo's
# head runs box and class level by level. The map is right; only the order of the calls differs.

class TorchTwoBranchHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.down = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.box = nn.ModuleList([nn.Conv2d(4, 4, 1) for _ in range(2)])
        self.cls = nn.ModuleList([nn.Conv2d(4, 4, 1) for _ in range(2)])

    def forward(self, x):
        levels = [self.stem(x)]
        levels.append(self.down(levels[0]))
        boxes = [conv(level) for conv, level in zip(self.box, levels)]
        classes = [conv(level) for conv, level in zip(self.cls, levels)]
        return torch.cat([torch.cat([b, c], 1).flatten(2) for b, c in zip(boxes, classes)], 2)


class MsTwoBranchHead(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.stem = msnn.Conv2d(3, 4, 3, pad_mode="pad", padding=1, has_bias=True)
        self.down = msnn.Conv2d(4, 4, 3, stride=2, pad_mode="pad", padding=1, has_bias=True)
        self.box = msnn.CellList([msnn.Conv2d(4, 4, 1, has_bias=True) for _ in range(2)])
        self.cls = msnn.CellList([msnn.Conv2d(4, 4, 1, has_bias=True) for _ in range(2)])

    def construct(self, x):
        levels = [self.stem(x)]
        levels.append(self.down(levels[0]))
        out = []
        for index in range(2):
            both = ops.cat([self.box[index](levels[index]), self.cls[index](levels[index])], 1)
            out.append(both.reshape(both.shape[0], both.shape[1], -1))
        return ops.cat(out, 2)


def torch_two_branch_head():
    return TorchTwoBranchHead()


def ms_two_branch_head():
    return MsTwoBranchHead()
