"""Tiny PyTorch models and MindSpore ports, some deliberately broken, for stage 4's tests.

Importable by configs as tests.broken_models:<factory>. Each MindSpore factory builds a correct port by
default; its keyword arguments plant one bug (a pooling padding, a normalisation epsilon, an output
that is off) so that a test can check the report names the right place.
"""

import mindspore as ms
import numpy as np
import torch
from mindspore import nn as msnn
from mindspore import ops
from torch import nn

# --- a conv net: conv, BN, ReLU, max pool, conv, BN, mean, LayerNorm, linear ---------------------------

class TorchConvNet(nn.Module):
    def __init__(self, classes=3, bn_eps=1e-3):
        super().__init__()
        # kernel 3, stride 2, padding 1: the pooling whose padding MindSpore's pad_mode must reproduce
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4, eps=bn_eps),
                                      nn.ReLU(), nn.MaxPool2d(3, 2, padding=1),
                                      nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4, eps=bn_eps))
        self.norm = nn.LayerNorm(4)
        self.fc = nn.Linear(4, classes)

    def forward(self, x):
        return self.fc(self.norm(self.features(x).mean(dim=(2, 3))))


class MsConvNet(msnn.Cell):
    def __init__(self, classes=3, pool_pad_mode="pad", bn_eps=1e-3, with_features=False):
        super().__init__()
        self.with_features = with_features  # a port that also returns its pooled features
        # "same" pads only after (TF style) and "valid" not at all: both part from PyTorch's padding=1.
        pool = msnn.MaxPool2d(3, 2, pad_mode="pad", padding=1) if pool_pad_mode == "pad" else \
            msnn.MaxPool2d(3, 2, pad_mode=pool_pad_mode)
        self.features = msnn.SequentialCell([
            msnn.Conv2d(3, 4, 3, pad_mode="pad", padding=1), msnn.BatchNorm2d(4, eps=bn_eps, momentum=0.9),
            msnn.ReLU(), pool,
            msnn.Conv2d(4, 4, 3, pad_mode="pad", padding=1, has_bias=True),
            msnn.BatchNorm2d(4, eps=bn_eps, momentum=0.9)])
        self.norm = msnn.LayerNorm((4,), epsilon=1e-5)
        self.classifier = msnn.Dense(4, classes)

    def construct(self, x):
        pooled = self.features(x).mean(axis=(2, 3))
        logits = self.classifier(self.norm(pooled))
        return (logits, pooled) if self.with_features else logits


def torch_conv_net(classes=3, bn_eps=1e-3):
    """PyTorch conv net whose BatchNorms use eps 1e-3 (as EfficientNet's do)."""
    return TorchConvNet(classes, bn_eps)


def ms_conv_net(classes=3, pool_pad_mode="pad", bn_eps=1e-3, with_features=False):
    """MindSpore port; pool_pad_mode="same"/"valid" or bn_eps=1e-5 (MindSpore's default) break it;
    with_features returns (logits, features) where PyTorch returns the logits alone."""
    return MsConvNet(classes, pool_pad_mode, bn_eps, with_features)


# --- an embedding model: integer token ids in ------------------------------------------------------------

class TorchEmbedNet(nn.Module):
    def __init__(self, vocab=10, dim=4, classes=3):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.fc = nn.Linear(dim, classes)

    def forward(self, ids):
        return self.fc(self.embed(ids).mean(dim=1))


class MsEmbedNet(msnn.Cell):
    def __init__(self, vocab=10, dim=4, classes=3):
        super().__init__()
        self.embed = msnn.Embedding(vocab, dim)
        self.fc = msnn.Dense(dim, classes)

    def construct(self, ids):
        return self.fc(self.embed(ids).mean(axis=1))


def torch_embed_net(vocab=10, dim=4, classes=3):
    """Embedding, mean over the sequence, linear."""
    return TorchEmbedNet(vocab, dim, classes)


def ms_embed_net(vocab=10, dim=4, classes=3):
    """MindSpore port of torch_embed_net."""
    return MsEmbedNet(vocab, dim, classes)


# --- two positional inputs, a tuple out -----------------------------------------------------------------

class TorchTwoInputNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.left = nn.Linear(4, 3)
        self.right = nn.Linear(6, 3)

    def forward(self, x, y):
        return self.left(x) + self.right(y), self.right(y)


class MsTwoInputNet(msnn.Cell):
    def __init__(self, reuse_right=False):
        super().__init__()
        self.left = msnn.Dense(4, 3)
        self.right = msnn.Dense(6, 3)
        self.reuse_right = reuse_right

    def construct(self, x, y):
        right = self.right(y)
        # the bug: the sum uses the right branch twice, so only output[0] parts from PyTorch
        return (right + right if self.reuse_right else self.left(x) + right), right


def torch_two_input_net():
    """forward(x [N, 4], y [N, 6]) -> (left(x) + right(y), right(y))."""
    return TorchTwoInputNet()


def ms_two_input_net(reuse_right=False):
    """MindSpore port of torch_two_input_net; reuse_right=True breaks its first output only."""
    return MsTwoInputNet(reuse_right)


# --- a dict out, holding a tuple ------------------------------------------------------------------------

class TorchDictNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 5)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        hidden = torch.relu(self.body(x))
        return {"logits": self.head(hidden), "hidden": (hidden, hidden.sum(dim=1))}


class MsDictNet(msnn.Cell):
    def __init__(self, hidden_offset=0.0, drop_sum=False, keep_dims=False, extra=False):
        super().__init__()
        self.body = msnn.Dense(4, 5)
        self.head = msnn.Dense(5, 3)
        self.hidden_offset = hidden_offset
        self.drop_sum = drop_sum
        self.keep_dims = keep_dims
        self.extra = extra

    def construct(self, x):
        hidden = ops.relu(self.body(x))
        if self.drop_sum:  # the bug: an output PyTorch gives is missing
            return {"logits": self.head(hidden), "hidden": hidden}
        # the bugs: the sum keeps its summed axis ([N, 1] where PyTorch gives [N]), or is offset
        summed = hidden.sum(axis=1, keepdims=self.keep_dims) + self.hidden_offset
        if self.extra:  # the bug: an output PyTorch does not give
            return {"logits": self.head(hidden), "hidden": (hidden, summed), "extra": hidden}
        return {"logits": self.head(hidden), "hidden": (hidden, summed)}


def torch_dict_net():
    """forward(x) -> {"logits": ..., "hidden": (hidden, hidden summed per sample)}."""
    return TorchDictNet()


def ms_dict_net(hidden_offset=0.0, drop_sum=False, keep_dims=False, extra=False):
    """MindSpore port of torch_dict_net; hidden_offset breaks output['hidden'][1], drop_sum leaves it out,
    keep_dims gives it shape [N, 1], extra adds an output PyTorch lacks."""
    return MsDictNet(hidden_offset, drop_sum, keep_dims, extra)


# --- a MindSpore port whose cells cannot be paired with PyTorch's modules -------------------------------

class TorchLinearNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)


class MsBareNet(msnn.Cell):
    """The same computation with its parameters on the top cell itself: no sub-cell owns them."""

    def __init__(self):
        super().__init__()
        self.weight = ms.Parameter(ms.Tensor(np.zeros((3, 4), np.float32)), name="weight")
        self.bias = ms.Parameter(ms.Tensor(np.zeros(3, np.float32)), name="bias")

    def construct(self, x):
        return ops.matmul(x, self.weight.T) + self.bias


def torch_linear_net():
    """One nn.Linear(4, 3) in a module."""
    return TorchLinearNet()


def ms_bare_net():
    """A correct port of torch_linear_net with no layer cells (weight and bias on the root)."""
    return MsBareNet()


# --- a pair whose output holds no value, whatever the input --------------------------------------------

class TorchNoRowsNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)[:0]


class MsNoRowsNet(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.fc = msnn.Dense(4, 3)

    def construct(self, x):
        return self.fc(x)[:0]


def torch_no_rows_net():
    """nn.Linear(4, 3) whose output keeps no row of the batch: shape [0, 3]."""
    return TorchNoRowsNet()


def ms_no_rows_net():
    """A correct port of torch_no_rows_net: its layer agrees, its output holds no value to compare."""
    return MsNoRowsNet()


# --- a pair that splits the work differently: MindSpore fuses the activation into the Dense ------------

class TorchMlpNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.up, self.act, self.down = nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)

    def forward(self, x):
        return self.down(self.act(self.up(x)))


class MsFusedMlpNet(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.up, self.down = msnn.Dense(4, 8, activation="relu"), msnn.Dense(8, 3)

    def construct(self, x):
        return self.down(self.up(x))


def torch_mlp_net():
    """Linear, ReLU, Linear as three modules."""
    return TorchMlpNet()


def ms_fused_mlp_net():
    """A correct port of torch_mlp_net whose first Dense applies the ReLU itself."""
    return MsFusedMlpNet()


# --- a user's map-style dataset -------------------------------------------------------------------------

class MyDataset:
    """Seeded samples (image float32 [3, 8, 8], label int64), read by index like a torch map-style dataset."""

    reads = []  # every index read, by any instance: shows which pipelines read the samples

    def __init__(self, length=7, seed=0):
        rng = np.random.default_rng(seed)
        self.images = rng.standard_normal((length, 3, 8, 8)).astype(np.float32)
        self.labels = rng.integers(0, 3, size=length).astype(np.int64)

    def __getitem__(self, index):
        if index >= len(self):
            raise IndexError(index)
        self.reads.append(int(index))
        return self.images[index], self.labels[index]

    def __len__(self):
        return len(self.images)
