"""Tiny paired models (PyTorch vs a MindSpore port) for testing stage 2, the name matcher.

Each `*_pair()` function returns a `Pair`: a PyTorch model, its MindSpore port and a hand-checked
reference map (MindSpore `Parameter.name` -> PyTorch state-dict key, `None`, or a transform object as
in the project's map format), for one kind of naming difference a real matcher meets. Models are a
few layers with 2-16 channels; where a case needs several layers with one shape signature they are
there on purpose, since ambiguity is what the matcher has to survive.

With weights moved per the reference map, both models compute the same function in eval mode for
every pair whose `same_function` is True (tests/mapping/test_pairs_parity.py checks it). Entries mapped to
`None` are deliberately unmapped: the port keeps its own initial value there.

MindSpore 2.10 quirks these models rely on (probed on CPU):
- cells appended to a `CellList` created empty, as a top-level attribute, get `Parameter.name`s
  without the list's attribute name (`0._bn1.gamma`, not `_blocks.0._bn1.gamma`); a `CellList`
  built from a list, or one nested inside another cell, keeps the full path;
- `mint.nn` BatchNorm2d / Conv1d (and Conv2d, LayerNorm, Embedding) have no CPU kernel, so the mixed
  port computes those layers with CPU ops reading the mint cells' own parameters;
- a stacked LSTM lists its parameters grouped by kind (all weight_ih, then weight_hh, ...), PyTorch
  by layer and direction.
"""
import math
from dataclasses import dataclass

import mindspore as ms
import numpy as np
import torch
from mindspore import mint, ops
from mindspore import nn as msnn
from torch import nn as tnn


@dataclass
class Pair:
    """A PyTorch model, its MindSpore port and the reference map between their tensors."""

    name: str
    torch_model: tnn.Module
    ms_model: msnn.Cell
    reference: dict
    example_inputs: list  # one shape per forward argument
    token_vocab: int = 0  # > 0: inputs are int64 token ids below this, not floats
    same_function: bool = True  # (F): the models agree once weights follow `reference`
    torch_unmapped: tuple = ()  # torch keys (besides num_batches_tracked) no MindSpore tensor uses

    def make_inputs(self, seed=0):
        """Seeded NumPy inputs of `example_inputs` shapes, fed alike to both models."""
        rng = np.random.default_rng(seed)
        if self.token_vocab:
            return [rng.integers(0, self.token_vocab, shape).astype(np.int64) for shape in self.example_inputs]
        return [rng.standard_normal(shape).astype(np.float32) for shape in self.example_inputs]


# ---------------------------------------------------------------- shared building blocks

def _ms_conv2d(cin, cout, kernel, stride=1, padding=0, group=1, bias=True):
    """A MindSpore Conv2d set up like torch's (explicit padding; bias as asked, not off by default)."""
    return msnn.Conv2d(cin, cout, kernel, stride=stride, pad_mode="pad", padding=padding,
                       group=group, has_bias=bias)


def _ms_layer_norm(dim):
    """A MindSpore LayerNorm with torch's epsilon (MindSpore's default is 1e-7)."""
    return msnn.LayerNorm((dim,), epsilon=1e-5)


def _bn(ms_prefix, torch_prefix):
    """Map entries of one mindspore.nn BatchNorm, in MindSpore's parameter order."""
    return {f"{ms_prefix}.moving_mean": f"{torch_prefix}.running_mean",
            f"{ms_prefix}.moving_variance": f"{torch_prefix}.running_var",
            f"{ms_prefix}.gamma": f"{torch_prefix}.weight",
            f"{ms_prefix}.beta": f"{torch_prefix}.bias"}


def _norm(ms_prefix, torch_prefix):
    """Map entries of a mindspore.nn LayerNorm or GroupNorm (gamma, beta)."""
    return {f"{ms_prefix}.gamma": f"{torch_prefix}.weight", f"{ms_prefix}.beta": f"{torch_prefix}.bias"}


def _same(ms_prefix, torch_prefix, *names):
    """Map entries whose tensor names agree, only the owning layer's path differs."""
    return {f"{ms_prefix}{name}": f"{torch_prefix}{name}" for name in names}


class _TorchSmallCNN(tnn.Module):
    def __init__(self, channels=8, num_classes=5):
        super().__init__()
        self.conv = tnn.Conv2d(3, channels, 3, padding=1)
        self.bn = tnn.BatchNorm2d(channels)
        self.fc = tnn.Linear(channels, num_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


class _MsSmallCNN(msnn.Cell):
    def __init__(self, channels=8, num_classes=5):
        super().__init__()
        self.conv = _ms_conv2d(3, channels, 3, padding=1)
        self.bn = msnn.BatchNorm2d(channels)
        self.fc = msnn.Dense(channels, num_classes)

    def construct(self, x):
        return self.fc(ops.relu(self.bn(self.conv(x))).mean(axis=(2, 3)))


def _small_cnn_reference(ms_prefix="", torch_prefix=""):
    return {**_same(ms_prefix, torch_prefix, "conv.weight", "conv.bias"),
            **_bn(f"{ms_prefix}bn", f"{torch_prefix}bn"),
            **_same(ms_prefix, torch_prefix, "fc.weight", "fc.bias")}


# Sigmoid, not softmax, attention: softmax ignores a bias added to every key, so a key bias mapped
# to the wrong tensor would pass a parity check.
def _torch_attention(q, k, v):
    return torch.sigmoid(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])) @ v


def _ms_attention(q, k, v):
    return ops.matmul(ops.sigmoid(ops.matmul(q, k.swapaxes(1, 2)) / math.sqrt(q.shape[-1])), v)


# ---------------------------------------------------------------- 1. renumbered containers

class _TorchConvBNReLU(tnn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(tnn.Conv2d(cin, cout, 3, padding=1, bias=False), tnn.BatchNorm2d(cout), tnn.ReLU())


class _TorchNestedFeatures(tnn.Module):
    def __init__(self, channels=8, num_classes=5):
        super().__init__()
        self.features = tnn.Sequential(_TorchConvBNReLU(3, channels), _TorchConvBNReLU(channels, channels),
                                       _TorchConvBNReLU(channels, channels))
        self.classifier = tnn.Linear(channels, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


class _MsFlatFeatures(msnn.Cell):
    def __init__(self, channels=8, num_classes=5):
        super().__init__()
        layers = []
        for cin in (3, channels, channels):
            layers += [_ms_conv2d(cin, channels, 3, padding=1, bias=False), msnn.BatchNorm2d(channels), msnn.ReLU()]
        self.features = msnn.SequentialCell(layers)
        self.classifier = msnn.Dense(channels, num_classes)

    def construct(self, x):
        return self.classifier(self.features(x).mean(axis=(2, 3)))


def renumbered_containers_pair():
    """Torch `features.1.0.weight` (nested Sequential) vs MindSpore `features.3.weight` (flat)."""
    reference = {"features.0.weight": "features.0.0.weight", **_bn("features.1", "features.0.1"),
                 "features.3.weight": "features.1.0.weight", **_bn("features.4", "features.1.1"),
                 "features.6.weight": "features.2.0.weight", **_bn("features.7", "features.2.1"),
                 "classifier.weight": "classifier.weight", "classifier.bias": "classifier.bias"}
    return Pair("renumbered_containers", _TorchNestedFeatures(), _MsFlatFeatures(), reference, [(2, 3, 6, 6)])


# ---------------------------------------------------------------- 2. an inserted container level

class _TorchDenseLayer(tnn.Module):
    def __init__(self, cin, growth, bottleneck):
        super().__init__()
        self.norm1 = tnn.BatchNorm2d(cin)
        self.conv1 = tnn.Conv2d(cin, bottleneck, 1, bias=False)
        self.norm2 = tnn.BatchNorm2d(bottleneck)
        self.conv2 = tnn.Conv2d(bottleneck, growth, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.conv1(torch.relu(self.norm1(x)))
        return torch.cat([x, self.conv2(torch.relu(self.norm2(y)))], 1)


class _TorchDenseBlock(tnn.ModuleDict):
    # torchvision's layout: layers are named denselayer1, denselayer2, ... directly in the block
    def __init__(self, num_layers, cin, growth, bottleneck):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}", _TorchDenseLayer(cin + i * growth, growth, bottleneck))

    def forward(self, x):
        for layer in self.values():
            x = layer(x)
        return x


class _TorchDenseNet(tnn.Module):
    def __init__(self, stem=8, growth=4, num_layers=3, num_classes=5):
        super().__init__()
        self.conv0 = tnn.Conv2d(3, stem, 3, padding=1, bias=False)
        self.norm0 = tnn.BatchNorm2d(stem)
        self.denseblock1 = _TorchDenseBlock(num_layers, stem, growth, 2 * growth)
        self.norm5 = tnn.BatchNorm2d(stem + num_layers * growth)
        self.classifier = tnn.Linear(stem + num_layers * growth, num_classes)

    def forward(self, x):
        x = self.denseblock1(torch.relu(self.norm0(self.conv0(x))))
        return self.classifier(torch.relu(self.norm5(x)).mean((2, 3)))


class _MsDenseLayer(msnn.Cell):
    def __init__(self, cin, growth, bottleneck):
        super().__init__()
        self.norm1 = msnn.BatchNorm2d(cin)
        self.conv1 = _ms_conv2d(cin, bottleneck, 1, bias=False)
        self.norm2 = msnn.BatchNorm2d(bottleneck)
        self.conv2 = _ms_conv2d(bottleneck, growth, 3, padding=1, bias=False)

    def construct(self, x):
        y = self.conv1(ops.relu(self.norm1(x)))
        return ops.concat((x, self.conv2(ops.relu(self.norm2(y)))), axis=1)


class _MsDenseBlock(msnn.Cell):
    def __init__(self, num_layers, cin, growth, bottleneck):
        super().__init__()
        self.cell_list = msnn.CellList([_MsDenseLayer(cin + i * growth, growth, bottleneck)
                                        for i in range(num_layers)])

    def construct(self, x):
        for layer in self.cell_list:
            x = layer(x)
        return x


class _MsDenseNet(msnn.Cell):
    def __init__(self, stem=8, growth=4, num_layers=3, num_classes=5):
        super().__init__()
        self.conv0 = _ms_conv2d(3, stem, 3, padding=1, bias=False)
        self.norm0 = msnn.BatchNorm2d(stem)
        self.denseblock1 = _MsDenseBlock(num_layers, stem, growth, 2 * growth)
        self.norm5 = msnn.BatchNorm2d(stem + num_layers * growth)
        self.classifier = msnn.Dense(stem + num_layers * growth, num_classes)

    def construct(self, x):
        x = self.denseblock1(ops.relu(self.norm0(self.conv0(x))))
        return self.classifier(ops.relu(self.norm5(x)).mean(axis=(2, 3)))


def inserted_container_level_pair():
    """Torch `denseblock1.denselayer1.conv1` vs MindSpore `denseblock1.cell_list.0.conv1`."""
    reference = {"conv0.weight": "conv0.weight", **_bn("norm0", "norm0")}
    for i in range(3):
        ms_layer, torch_layer = f"denseblock1.cell_list.{i}", f"denseblock1.denselayer{i + 1}"
        reference |= {**_bn(f"{ms_layer}.norm1", f"{torch_layer}.norm1"),
                      f"{ms_layer}.conv1.weight": f"{torch_layer}.conv1.weight",
                      **_bn(f"{ms_layer}.norm2", f"{torch_layer}.norm2"),
                      f"{ms_layer}.conv2.weight": f"{torch_layer}.conv2.weight"}
    reference |= {**_bn("norm5", "norm5"), **_same("", "", "classifier.weight", "classifier.bias")}
    return Pair("inserted_container_level", _TorchDenseNet(), _MsDenseNet(), reference, [(2, 3, 5, 5)])


# ---------------------------------------------------------------- 3. renamed heads

class _TorchBasicBlock(tnn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = tnn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = tnn.BatchNorm2d(channels)
        self.conv2 = tnn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = tnn.BatchNorm2d(channels)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class _TorchTinyResNet(tnn.Module):
    def __init__(self, channels=8, num_classes=5):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, channels, 3, padding=1, bias=False)
        self.bn1 = tnn.BatchNorm2d(channels)
        self.layer1 = tnn.Sequential(_TorchBasicBlock(channels), _TorchBasicBlock(channels))
        self.fc = tnn.Linear(channels, num_classes)

    def forward(self, x):
        return self.fc(self.layer1(torch.relu(self.bn1(self.conv1(x)))).mean((2, 3)))


class _MsBasicBlock(msnn.Cell):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = _ms_conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = msnn.BatchNorm2d(channels)
        self.conv2 = _ms_conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = msnn.BatchNorm2d(channels)

    def construct(self, x):
        return ops.relu(x + self.bn2(self.conv2(ops.relu(self.bn1(self.conv1(x))))))


class _MsTinyResNet(msnn.Cell):
    def __init__(self, channels=8, num_classes=5):
        super().__init__()
        self.conv1 = _ms_conv2d(3, channels, 3, padding=1, bias=False)
        self.bn1 = msnn.BatchNorm2d(channels)
        self.layer1 = msnn.SequentialCell([_MsBasicBlock(channels), _MsBasicBlock(channels)])
        self.classifier = msnn.Dense(channels, num_classes)

    def construct(self, x):
        return self.classifier(self.layer1(ops.relu(self.bn1(self.conv1(x)))).mean(axis=(2, 3)))


def renamed_head_fc_classifier_pair():
    """Torch ResNet head `fc` vs MindSpore `classifier`; the backbone's names agree."""
    reference = {"conv1.weight": "conv1.weight", **_bn("bn1", "bn1")}
    for i in range(2):
        block = f"layer1.{i}"
        reference |= {f"{block}.conv1.weight": f"{block}.conv1.weight", **_bn(f"{block}.bn1", f"{block}.bn1"),
                      f"{block}.conv2.weight": f"{block}.conv2.weight", **_bn(f"{block}.bn2", f"{block}.bn2")}
    reference |= {"classifier.weight": "fc.weight", "classifier.bias": "fc.bias"}
    return Pair("renamed_head_fc_classifier", _TorchTinyResNet(), _MsTinyResNet(), reference, [(2, 3, 5, 5)])


class _TorchMlpWithClassifier(tnn.Module):
    def __init__(self, in_features=12, width=8):
        super().__init__()
        self.stem = tnn.Linear(in_features, width)
        self.blocks = tnn.Sequential(tnn.Linear(width, width), tnn.ReLU(), tnn.Linear(width, width), tnn.ReLU())
        # the head has the blocks' shape signature: only names and position tell it apart
        self.classifier = tnn.Sequential(tnn.Dropout(0.1), tnn.Linear(width, width))

    def forward(self, x):
        return self.classifier(self.blocks(torch.relu(self.stem(x))))


class _MsMlpWithHead(msnn.Cell):
    def __init__(self, in_features=12, width=8):
        super().__init__()
        self.stem = msnn.Dense(in_features, width)
        self.blocks = msnn.SequentialCell([msnn.Dense(width, width), msnn.ReLU(),
                                           msnn.Dense(width, width), msnn.ReLU()])
        self.head = msnn.Dense(width, width)

    def construct(self, x):
        return self.head(self.blocks(ops.relu(self.stem(x))))


def renamed_head_classifier_head_pair():
    """Torch `classifier.1` (after a Dropout) vs MindSpore `head`, same shape as the hidden layers."""
    reference = {**_same("", "", "stem.weight", "stem.bias", "blocks.0.weight", "blocks.0.bias",
                         "blocks.2.weight", "blocks.2.bias"),
                 "head.weight": "classifier.1.weight", "head.bias": "classifier.1.bias"}
    return Pair("renamed_head_classifier_head", _TorchMlpWithClassifier(), _MsMlpWithHead(), reference, [(2, 12)])


# ---------------------------------------------------------------- 4. private-prefix style (EfficientNet)

class _TorchMBBlock(tnn.Module):
    def __init__(self, channels):
        super().__init__()
        self._depthwise_conv = tnn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self._bn1 = tnn.BatchNorm2d(channels)
        self._project_conv = tnn.Conv2d(channels, channels, 1, bias=False)
        self._bn2 = tnn.BatchNorm2d(channels)

    def forward(self, x):
        return x + self._bn2(self._project_conv(torch.relu(self._bn1(self._depthwise_conv(x)))))


class _TorchTinyEfficientNet(tnn.Module):
    def __init__(self, channels=8, head=16, num_classes=5):
        super().__init__()
        self._conv_stem = tnn.Conv2d(3, channels, 3, padding=1, bias=False)
        self._bn0 = tnn.BatchNorm2d(channels)
        self._blocks = tnn.ModuleList([_TorchMBBlock(channels), _TorchMBBlock(channels)])
        self._conv_head = tnn.Conv2d(channels, head, 1, bias=False)
        self._bn1 = tnn.BatchNorm2d(head)
        self._fc = tnn.Linear(head, num_classes)

    def forward(self, x):
        x = torch.relu(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self._fc(torch.relu(self._bn1(self._conv_head(x))).mean((2, 3)))


class _MsMBBlock(msnn.Cell):
    def __init__(self, channels):
        super().__init__()
        self._depthwise_conv = _ms_conv2d(channels, channels, 3, padding=1, group=channels, bias=False)
        self._bn1 = msnn.BatchNorm2d(channels)
        self._project_conv = _ms_conv2d(channels, channels, 1, bias=False)
        self._bn2 = msnn.BatchNorm2d(channels)

    def construct(self, x):
        return x + self._bn2(self._project_conv(ops.relu(self._bn1(self._depthwise_conv(x)))))


class _MsTinyEfficientNet(msnn.Cell):
    def __init__(self, channels=8, head=16, num_classes=5):
        super().__init__()
        self._conv_stem = _ms_conv2d(3, channels, 3, padding=1, bias=False)
        self._bn0 = msnn.BatchNorm2d(channels)
        # created empty, then appended: MindSpore names these `0._bn1.gamma`, without `_blocks.`
        self._blocks = msnn.CellList()
        for _ in range(2):
            self._blocks.append(_MsMBBlock(channels))
        self._conv_head = _ms_conv2d(channels, head, 1, bias=False)
        self._bn1 = msnn.BatchNorm2d(head)
        self._fc = msnn.Dense(head, num_classes)

    def construct(self, x):
        x = ops.relu(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self._fc(ops.relu(self._bn1(self._conv_head(x))).mean(axis=(2, 3)))


def private_prefix_celllist_pair():
    """Torch `_blocks.0._bn1` vs MindSpore Parameter.name `0._bn1` (top-level `_bn1` exists on both)."""
    reference = {"_conv_stem.weight": "_conv_stem.weight", **_bn("_bn0", "_bn0")}
    for i in range(2):
        reference |= {f"{i}._depthwise_conv.weight": f"_blocks.{i}._depthwise_conv.weight",
                      **_bn(f"{i}._bn1", f"_blocks.{i}._bn1"),
                      f"{i}._project_conv.weight": f"_blocks.{i}._project_conv.weight",
                      **_bn(f"{i}._bn2", f"_blocks.{i}._bn2")}
    reference |= {"_conv_head.weight": "_conv_head.weight", **_bn("_bn1", "_bn1"),
                  "_fc.weight": "_fc.weight", "_fc.bias": "_fc.bias"}
    return Pair("private_prefix_celllist", _TorchTinyEfficientNet(), _MsTinyEfficientNet(), reference,
                [(2, 3, 5, 5)])


# ---------------------------------------------------------------- 5. mindspore.nn mixed with mindspore.mint.nn

class _TorchMixedNet(tnn.Module):
    def __init__(self, channels=8, num_classes=5):
        super().__init__()
        self.conv = tnn.Conv2d(3, channels, 3, padding=1)
        self.bn_a = tnn.BatchNorm2d(channels)
        self.conv_b = tnn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn_b = tnn.BatchNorm2d(channels)
        self.seq_conv = tnn.Conv1d(channels, channels, 3, padding=1)
        self.seq_bn = tnn.BatchNorm1d(channels)
        self.act = tnn.PReLU(channels)
        self.fc = tnn.Linear(channels, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn_b(self.conv_b(torch.relu(self.bn_a(self.conv(x))))))
        x = self.act(self.seq_bn(self.seq_conv(x.flatten(2))))
        return self.fc(x.mean(2))


class _MsMixedNet(msnn.Cell):
    def __init__(self, channels=8, num_classes=5):
        super().__init__()
        self.conv = _ms_conv2d(3, channels, 3, padding=1)
        self.bn_a = mint.nn.BatchNorm2d(channels)  # weight, bias, running_mean, running_var, num_batches_tracked
        self.conv_b = _ms_conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn_b = msnn.BatchNorm2d(channels)  # moving_mean, moving_variance, gamma, beta
        self.seq_conv = mint.nn.Conv1d(channels, channels, 3, padding=1)  # 3-D weight, like torch
        self.seq_bn = msnn.BatchNorm1d(channels)
        self.act = mint.nn.PReLU(channels)  # `weight`, where mindspore.nn.PReLU says `w`
        self.fc = mint.nn.Linear(channels, num_classes)

    def construct(self, x):
        # mint's BatchNorm2d and Conv1d kernels are not registered on CPU in MindSpore 2.10: compute
        # them with CPU ops over the mint cells' own parameters, so names and layouts stay mint's
        bn_a = self.bn_a
        x = ops.batch_norm(self.conv(x), bn_a.running_mean, bn_a.running_var, bn_a.weight, bn_a.bias,
                           False, 0.1, bn_a.eps)
        x = ops.relu(self.bn_b(self.conv_b(ops.relu(x))))
        x = ops.conv1d(x.reshape(x.shape[0], x.shape[1], -1), self.seq_conv.weight, self.seq_conv.bias,
                       1, "pad", 1)
        x = self.act(self.seq_bn(x))
        return self.fc(x.mean(axis=2))


def mixed_nn_and_mint_pair():
    """A port mixing mindspore.nn (renamed tensors) with mint.nn (PyTorch's names and layouts)."""
    reference = {"conv.weight": "conv.weight", "conv.bias": "conv.bias",
                 **_same("", "", "bn_a.weight", "bn_a.bias", "bn_a.running_mean", "bn_a.running_var"),
                 "bn_a.num_batches_tracked": None,  # torch's counter is never mapped
                 "conv_b.weight": "conv_b.weight", **_bn("bn_b", "bn_b"),
                 "seq_conv.weight": "seq_conv.weight", "seq_conv.bias": "seq_conv.bias",
                 **_bn("seq_bn", "seq_bn"),
                 "act.weight": "act.weight", "fc.weight": "fc.weight", "fc.bias": "fc.bias"}
    return Pair("mixed_nn_and_mint", _TorchMixedNet(), _MsMixedNet(), reference, [(2, 3, 4, 4)])


# ---------------------------------------------------------------- 6. a wrapper prefix on one side

class _TorchDataParallelLike(tnn.Module):
    """Stands in for nn.DataParallel / DistributedDataParallel: the model sits under `module`."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *inputs):
        return self.module(*inputs)


class _MsNetworkWrapper(msnn.Cell):
    """Stands in for a MindSpore training wrapper built with auto_prefix on: names gain `network.`."""

    def __init__(self, network):
        super().__init__()
        self.network = network

    def construct(self, *inputs):
        return self.network(*inputs)


def wrapper_prefix_torch_module_pair():
    """Torch keys under `module.` (saved from a DataParallel-like wrapper) vs a bare MindSpore port."""
    return Pair("wrapper_prefix_torch_module", _TorchDataParallelLike(_TorchSmallCNN()), _MsSmallCNN(),
                _small_cnn_reference(torch_prefix="module."), [(2, 3, 4, 4)])


def wrapper_prefix_ms_network_pair():
    """A bare torch model vs MindSpore names under `network.`."""
    return Pair("wrapper_prefix_ms_network", _TorchSmallCNN(), _MsNetworkWrapper(_MsSmallCNN()),
                _small_cnn_reference(ms_prefix="network."), [(2, 3, 4, 4)])


# ---------------------------------------------------------------- 7. tied weights

class _TorchTiedLM(tnn.Module):
    def __init__(self, vocab=12, width=8):
        super().__init__()
        self.embed = tnn.Embedding(vocab, width)
        self.proj = tnn.Linear(width, width)
        self.lm_head = tnn.Linear(width, vocab, bias=False)
        self.lm_head.weight = self.embed.weight  # both keys land in the state dict, one storage

    def forward(self, ids):
        return self.lm_head(torch.tanh(self.proj(self.embed(ids))))


class _MsUntiedLM(msnn.Cell):
    def __init__(self, vocab=12, width=8):
        super().__init__()
        self.embed = msnn.Embedding(vocab, width)
        self.proj = msnn.Dense(width, width)
        self.lm_head = msnn.Dense(width, vocab, has_bias=False)

    def construct(self, ids):
        return self.lm_head(ops.tanh(self.proj(self.embed(ids))))


def tied_embedding_output_pair():
    """Torch output layer sharing the embedding's storage (two keys) vs two MindSpore parameters.

    `lm_head.weight` may equally be filled from `embed.weight`: the two torch keys are one tensor.
    """
    reference = {"embed.embedding_table": "embed.weight", "proj.weight": "proj.weight",
                 "proj.bias": "proj.bias", "lm_head.weight": "lm_head.weight"}
    return Pair("tied_embedding_output", _TorchTiedLM(), _MsUntiedLM(), reference, [(2, 5)], token_vocab=12)


class _TorchSharedLayerTwice(tnn.Module):
    def __init__(self, width=8, out=4):
        super().__init__()
        self.shared = tnn.Linear(width, width)
        self.out = tnn.Linear(width, out)

    def forward(self, x):
        return self.out(torch.tanh(self.shared(torch.tanh(self.shared(x)))))


class _MsTwoLayers(msnn.Cell):
    def __init__(self, width=8, out=4):
        super().__init__()
        self.first = msnn.Dense(width, width)
        self.second = msnn.Dense(width, width)
        self.out = msnn.Dense(width, out)

    def construct(self, x):
        return self.out(ops.tanh(self.second(ops.tanh(self.first(x)))))


def shared_weight_used_twice_pair():
    """One torch Linear applied twice (one key) feeding two MindSpore Dense layers ("tied")."""
    reference = {"first.weight": {"torch": "shared.weight", "tied": True},
                 "first.bias": {"torch": "shared.bias", "tied": True},
                 "second.weight": {"torch": "shared.weight", "tied": True},
                 "second.bias": {"torch": "shared.bias", "tied": True},
                 "out.weight": "out.weight", "out.bias": "out.bias"}
    return Pair("shared_weight_used_twice", _TorchSharedLayerTwice(), _MsTwoLayers(), reference, [(2, 8)])


# ---------------------------------------------------------------- 8. tensors on one side only

class _TorchWithExtras(tnn.Module):
    def __init__(self, vocab=10, max_len=6, width=8, out=4):
        super().__init__()
        self.embed = tnn.Embedding(vocab, width)
        self.pos_embed = tnn.Embedding(max_len, width)
        self.register_buffer("position_ids", torch.arange(max_len).unsqueeze(0))  # persistent: saved
        self.register_buffer("scale", torch.ones(1), persistent=False)  # not saved
        self.mask_token = tnn.Parameter(torch.zeros(1, 1, width))  # used only in pre-training
        self.norm = tnn.LayerNorm(width)
        self.fc = tnn.Linear(width, out)

    def forward(self, ids):
        h = self.embed(ids) + self.pos_embed(self.position_ids[:, :ids.shape[1]])
        return self.fc(self.norm(h).mean(1)) * self.scale


class _MsWithExtras(msnn.Cell):
    def __init__(self, vocab=10, max_len=6, width=8, out=4):
        super().__init__()
        self.embed = msnn.Embedding(vocab, width)
        self.pos_embed = msnn.Embedding(max_len, width)
        self.norm = _ms_layer_norm(width)
        self.fc = msnn.Dense(width, out)
        # a port-only learnable scale, 1 at init: same function while it keeps its own value
        self.logit_scale = ms.Parameter(ms.Tensor(np.ones(1, np.float32)), name="logit_scale")

    def construct(self, ids):
        h = self.embed(ids) + self.pos_embed(ops.arange(0, ids.shape[1], dtype=ms.int32))
        return self.fc(self.norm(h).mean(axis=1)) * self.logit_scale


def one_sided_tensors_pair():
    """Torch-only `position_ids` buffer and `mask_token`, a MindSpore-only `logit_scale` (null)."""
    reference = {"logit_scale": None,  # a cell's own parameters come before its children's
                 "embed.embedding_table": "embed.weight", "pos_embed.embedding_table": "pos_embed.weight",
                 **_norm("norm", "norm"), "fc.weight": "fc.weight", "fc.bias": "fc.bias"}
    return Pair("one_sided_tensors", _TorchWithExtras(), _MsWithExtras(), reference, [(2, 5)], token_vocab=10,
                torch_unmapped=("position_ids", "mask_token"))


# ---------------------------------------------------------------- 9. different definition order

class _TorchMlp(tnn.Module):
    def __init__(self, width, hidden):
        super().__init__()
        self.fc1 = tnn.Linear(width, hidden)
        self.act = tnn.GELU()
        self.fc2 = tnn.Linear(hidden, width)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class _MsMlp(msnn.Cell):
    def __init__(self, width, hidden):
        super().__init__()
        self.fc1 = msnn.Dense(width, hidden)
        self.act = msnn.GELU(approximate=False)  # MindSpore's default is the tanh approximation
        self.fc2 = msnn.Dense(hidden, width)

    def construct(self, x):
        return self.fc2(self.act(self.fc1(x)))


class _TorchNormLastBlock(tnn.Module):
    def __init__(self, width):
        super().__init__()
        self.mlp = _TorchMlp(width, 2 * width)
        self.norm = tnn.LayerNorm(width)  # declared after the MLP, applied before it

    def forward(self, x):
        return x + self.mlp(self.norm(x))


class _MsNormFirstBlock(msnn.Cell):
    def __init__(self, width):
        super().__init__()
        self.norm = _ms_layer_norm(width)
        self.mlp = _MsMlp(width, 2 * width)

    def construct(self, x):
        return x + self.mlp(self.norm(x))


class _TorchNormLastNet(tnn.Module):
    def __init__(self, width=8, depth=2, out=4):
        super().__init__()
        self.blocks = tnn.ModuleList([_TorchNormLastBlock(width) for _ in range(depth)])
        self.head = tnn.Linear(width, out)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(1))


class _MsNormFirstNet(msnn.Cell):
    def __init__(self, width=8, depth=2, out=4):
        super().__init__()
        self.blocks = msnn.CellList([_MsNormFirstBlock(width) for _ in range(depth)])
        self.head = msnn.Dense(width, out)

    def construct(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(axis=1))


def norm_declared_after_mlp_pair():
    """Torch declares `norm` after the MLP, MindSpore before it (norm weight and fc2 bias share a shape)."""
    reference = {}
    for i in range(2):
        block = f"blocks.{i}"
        reference |= {**_norm(f"{block}.norm", f"{block}.norm"),
                      **_same(f"{block}.mlp.", f"{block}.mlp.", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")}
    reference |= {"head.weight": "head.weight", "head.bias": "head.bias"}
    return Pair("norm_declared_after_mlp", _TorchNormLastNet(), _MsNormFirstNet(), reference, [(2, 5, 8)])


class _TorchConvNeXtBlock(tnn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dwconv = tnn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm = tnn.LayerNorm(dim)
        self.pwconv1 = tnn.Linear(dim, 2 * dim)
        self.act = tnn.GELU()
        self.pwconv2 = tnn.Linear(2 * dim, dim)
        self.gamma = tnn.Parameter(0.1 * torch.ones(dim))  # layer scale

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class _MsConvNeXtBlock(msnn.Cell):
    def __init__(self, dim):
        super().__init__()
        self.dwconv = _ms_conv2d(dim, dim, 3, padding=1, group=dim)
        self.norm = _ms_layer_norm(dim)  # its `gamma` is not the block's `gamma` below
        self.pwconv1 = msnn.Dense(dim, 2 * dim)
        self.act = msnn.GELU(approximate=False)
        self.pwconv2 = msnn.Dense(2 * dim, dim)
        self.gamma = ms.Parameter(ms.Tensor(0.1 * np.ones(dim, np.float32)), name="gamma")

    def construct(self, x):
        y = self.dwconv(x).transpose(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + y.transpose(0, 3, 1, 2)


_CONVNEXT_DIMS, _CONVNEXT_DEPTHS = (4, 8, 16), (1, 2, 1)


class _TorchConvNeXt(tnn.Module):
    """Official ConvNeXt layout: all downsampling layers (stem included) in `downsample_layers`."""

    def __init__(self, num_classes=5):
        super().__init__()
        dims = _CONVNEXT_DIMS
        self.downsample_layers = tnn.ModuleList(
            [tnn.Sequential(tnn.Conv2d(3, dims[0], 2, stride=2), tnn.GroupNorm(1, dims[0]))]
            + [tnn.Sequential(tnn.GroupNorm(1, dims[i - 1]), tnn.Conv2d(dims[i - 1], dims[i], 2, stride=2))
               for i in range(1, len(dims))])
        self.stages = tnn.ModuleList([tnn.Sequential(*[_TorchConvNeXtBlock(dim) for _ in range(depth)])
                                      for dim, depth in zip(dims, _CONVNEXT_DEPTHS)])
        self.norm = tnn.LayerNorm(dims[-1])
        self.head = tnn.Linear(dims[-1], num_classes)

    def forward(self, x):
        for downsample, stage in zip(self.downsample_layers, self.stages):
            x = stage(downsample(x))
        return self.head(self.norm(x.mean((2, 3))))


class _MsConvNeXtStage(msnn.Cell):
    def __init__(self, downsample, dim, depth):
        super().__init__()
        self.downsample = downsample
        self.blocks = msnn.SequentialCell([_MsConvNeXtBlock(dim) for _ in range(depth)])

    def construct(self, x):
        return self.blocks(self.downsample(x))


class _MsConvNeXt(msnn.Cell):
    """Stage-major layout: each stage owns its downsampling layer as `stages.N.downsample`."""

    def __init__(self, num_classes=5):
        super().__init__()
        dims = _CONVNEXT_DIMS
        stem = msnn.SequentialCell([_ms_conv2d(3, dims[0], 2, stride=2), msnn.GroupNorm(1, dims[0])])
        downsamples = [stem] + [msnn.SequentialCell([msnn.GroupNorm(1, dims[i - 1]),
                                                     _ms_conv2d(dims[i - 1], dims[i], 2, stride=2)])
                                for i in range(1, len(dims))]
        self.stages = msnn.CellList([_MsConvNeXtStage(downsample, dim, depth)
                                     for downsample, dim, depth in zip(downsamples, dims, _CONVNEXT_DEPTHS)])
        self.norm = _ms_layer_norm(dims[-1])
        self.head = msnn.Dense(dims[-1], num_classes)

    def construct(self, x):
        for stage in self.stages:
            x = stage(x)
        return self.head(self.norm(x.mean(axis=(2, 3))))


def convnext_downsample_layout_pair():
    """Torch `downsample_layers.N` + `stages.N.M` vs MindSpore `stages.N.downsample` + `stages.N.blocks.M`."""
    reference = {}
    for n, depth in enumerate(_CONVNEXT_DEPTHS):
        ms_ds, torch_ds = f"stages.{n}.downsample", f"downsample_layers.{n}"
        conv_at, norm_at = (0, 1) if n == 0 else (1, 0)  # the stem convolves first, later ones normalize first
        conv = _same(f"{ms_ds}.{conv_at}.", f"{torch_ds}.{conv_at}.", "weight", "bias")
        norm = _norm(f"{ms_ds}.{norm_at}", f"{torch_ds}.{norm_at}")
        reference |= {**conv, **norm} if n == 0 else {**norm, **conv}  # MindSpore's order: `.0.` first
        for m in range(depth):
            ms_block, torch_block = f"stages.{n}.blocks.{m}", f"stages.{n}.{m}"
            reference |= {f"{ms_block}.gamma": f"{torch_block}.gamma",
                          **_same(f"{ms_block}.", f"{torch_block}.", "dwconv.weight", "dwconv.bias"),
                          **_norm(f"{ms_block}.norm", f"{torch_block}.norm"),
                          **_same(f"{ms_block}.", f"{torch_block}.", "pwconv1.weight", "pwconv1.bias",
                                  "pwconv2.weight", "pwconv2.bias")}
    reference |= {**_norm("norm", "norm"), "head.weight": "head.weight", "head.bias": "head.bias"}
    return Pair("convnext_downsample_layout", _TorchConvNeXt(), _MsConvNeXt(), reference, [(2, 3, 16, 16)])


# ---------------------------------------------------------------- 10. layout transforms

class _TorchPointwiseConvNet(tnn.Module):
    def __init__(self, channels=8, num_classes=5):
        super().__init__()
        self.stem = tnn.Conv2d(3, channels, 3, padding=1)
        self.pw = tnn.Conv2d(channels, channels, 1)
        self.head = tnn.Conv2d(channels, num_classes, 1)  # a classifier as a 1x1 conv on pooled features

    def forward(self, x):
        x = torch.relu(self.pw(torch.relu(self.stem(x))))
        return self.head(x.mean((2, 3), keepdim=True)).flatten(1)


class _MsPointwiseDenseNet(msnn.Cell):
    def __init__(self, channels=8, num_classes=5):
        super().__init__()
        self.stem = _ms_conv2d(3, channels, 3, padding=1)
        self.pw = msnn.Dense(channels, channels)  # applied channels-last
        self.head = msnn.Dense(channels, num_classes)

    def construct(self, x):
        x = ops.relu(self.stem(x)).transpose(0, 2, 3, 1)
        x = ops.relu(self.pw(x)).transpose(0, 3, 1, 2)
        return self.head(x.mean(axis=(2, 3)))


def conv1x1_vs_dense_pair():
    """Torch 1x1 Conv2d weights (out, in, 1, 1) vs MindSpore Dense (out, in): reshape."""
    reference = {"stem.weight": "stem.weight", "stem.bias": "stem.bias",
                 "pw.weight": {"torch": "pw.weight", "transform": "reshape(8, 8)"}, "pw.bias": "pw.bias",
                 "head.weight": {"torch": "head.weight", "transform": "reshape(5, 8)"}, "head.bias": "head.bias"}
    return Pair("conv1x1_vs_dense", _TorchPointwiseConvNet(), _MsPointwiseDenseNet(), reference, [(2, 3, 4, 4)])


class _TorchConv1dNet(tnn.Module):
    def __init__(self, cin=4, channels=8, num_classes=5):
        super().__init__()
        self.conv_a = tnn.Conv1d(cin, channels, 3, padding=1)
        self.conv_b = tnn.Conv1d(channels, channels, 3, padding=1)
        self.fc = tnn.Linear(channels, num_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.conv_b(torch.relu(self.conv_a(x)))).mean(2))


class _MsConv1dNet(msnn.Cell):
    def __init__(self, cin=4, channels=8, num_classes=5):
        super().__init__()
        self.conv_a = msnn.Conv1d(cin, channels, 3, pad_mode="pad", padding=1, has_bias=True)
        self.conv_b = msnn.Conv1d(channels, channels, 3, pad_mode="pad", padding=1, has_bias=True)
        self.fc = msnn.Dense(channels, num_classes)

    def construct(self, x):
        return self.fc(ops.relu(self.conv_b(ops.relu(self.conv_a(x)))).mean(axis=2))


def conv1d_4d_weight_pair():
    """Torch Conv1d weight (out, in, k) vs mindspore.nn.Conv1d (out, in, 1, k): reshape."""
    reference = {"conv_a.weight": {"torch": "conv_a.weight", "transform": "reshape(8, 4, 1, 3)"},
                 "conv_a.bias": "conv_a.bias",
                 "conv_b.weight": {"torch": "conv_b.weight", "transform": "reshape(8, 8, 1, 3)"},
                 "conv_b.bias": "conv_b.bias", "fc.weight": "fc.weight", "fc.bias": "fc.bias"}
    return Pair("conv1d_4d_weight", _TorchConv1dNet(), _MsConv1dNet(), reference, [(2, 4, 7)])


class _TorchFusedQKV(tnn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.qkv = tnn.Linear(width, 3 * width)
        self.proj = tnn.Linear(width, width)

    def forward(self, x):
        return self.proj(_torch_attention(*self.qkv(x).chunk(3, dim=-1)))


class _MsSplitQKV(msnn.Cell):
    def __init__(self, width=8):
        super().__init__()
        self.q = msnn.Dense(width, width)
        self.k = msnn.Dense(width, width)
        self.v = msnn.Dense(width, width)
        self.proj = msnn.Dense(width, width)

    def construct(self, x):
        return self.proj(_ms_attention(self.q(x), self.k(x), self.v(x)))


def fused_qkv_to_split_pair():
    """One torch `qkv` Linear vs MindSpore `q`, `k`, `v` Dense layers: chunk."""
    reference = {}
    for index, part in enumerate("qkv"):
        for tensor in ("weight", "bias"):
            reference[f"{part}.{tensor}"] = {"torch": f"qkv.{tensor}", "transform": f"chunk(3, 0, {index})"}
    reference |= {"proj.weight": "proj.weight", "proj.bias": "proj.bias"}
    return Pair("fused_qkv_to_split", _TorchFusedQKV(), _MsSplitQKV(), reference, [(2, 5, 8)])


class _TorchSplitQKV(tnn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.q_proj = tnn.Linear(width, width)
        self.k_proj = tnn.Linear(width, width)
        self.v_proj = tnn.Linear(width, width)
        self.o_proj = tnn.Linear(width, width)

    def forward(self, x):
        return self.o_proj(_torch_attention(self.q_proj(x), self.k_proj(x), self.v_proj(x)))


class _MsFusedQKV(msnn.Cell):
    def __init__(self, width=8):
        super().__init__()
        self.qkv = msnn.Dense(width, 3 * width)
        self.o_proj = msnn.Dense(width, width)

    def construct(self, x):
        q, k, v = ops.split(self.qkv(x), x.shape[-1], axis=-1)
        return self.o_proj(_ms_attention(q, k, v))


def split_qkv_to_fused_pair():
    """Torch `q_proj`, `k_proj`, `v_proj` vs one MindSpore `qkv` Dense: cat."""
    reference = {f"qkv.{tensor}": {"torch": [f"{part}_proj.{tensor}" for part in "qkv"], "transform": "cat(0)"}
                 for tensor in ("weight", "bias")}
    reference |= {"o_proj.weight": "o_proj.weight", "o_proj.bias": "o_proj.bias"}
    return Pair("split_qkv_to_fused", _TorchSplitQKV(), _MsFusedQKV(), reference, [(2, 5, 8)])


class _TorchRawMatrices(tnn.Module):
    def __init__(self, width=8, out=6):
        super().__init__()
        # stored (in, out) and used as x @ W; the square one's shape cannot reveal the transpose
        self.w_in = tnn.Parameter(torch.randn(width, width))
        self.b_in = tnn.Parameter(torch.zeros(width))
        self.w_out = tnn.Parameter(torch.randn(width, out))
        self.b_out = tnn.Parameter(torch.zeros(out))

    def forward(self, x):
        return torch.relu(x @ self.w_in + self.b_in) @ self.w_out + self.b_out


class _MsDenseMatrices(msnn.Cell):
    def __init__(self, width=8, out=6):
        super().__init__()
        self.dense_in = msnn.Dense(width, width)
        self.dense_out = msnn.Dense(width, out)

    def construct(self, x):
        return self.dense_out(ops.relu(self.dense_in(x)))


def transposed_matrix_pair():
    """Torch raw (in, out) matrices used as x @ W vs MindSpore Dense (out, in): transpose."""
    reference = {"dense_in.weight": {"torch": "w_in", "transform": "transpose(0, 1)"}, "dense_in.bias": "b_in",
                 "dense_out.weight": {"torch": "w_out", "transform": "transpose(0, 1)"}, "dense_out.bias": "b_out"}
    return Pair("transposed_matrix", _TorchRawMatrices(), _MsDenseMatrices(), reference, [(2, 8)])


class _TorchPatchConvViT(tnn.Module):
    def __init__(self, patch=4, width=8, num_patches=4, num_classes=5):
        super().__init__()
        self.patch_embed = tnn.Conv2d(3, width, patch, stride=patch)
        self.cls_token = tnn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = tnn.Parameter(torch.zeros(1, num_patches + 1, width))
        self.norm = tnn.LayerNorm(width)
        self.head = tnn.Linear(width, num_classes)

    def forward(self, x):
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], 1) + self.pos_embed
        return self.head(self.norm(tokens).mean(1))  # every token counts, so patch weights are checked


class _MsPatchDenseViT(msnn.Cell):
    def __init__(self, patch=4, width=8, num_patches=4, num_classes=5):
        super().__init__()
        self.patch = patch
        self.patch_embed = msnn.Dense(3 * patch * patch, width)  # on patches flattened as (c, kh, kw)
        self.cls_token = ms.Parameter(ms.Tensor(np.zeros((1, 1, width), np.float32)), name="cls_token")
        self.pos_embed = ms.Parameter(ms.Tensor(np.zeros((num_patches + 1, width), np.float32)), name="pos_embed")
        self.norm = _ms_layer_norm(width)
        self.head = msnn.Dense(width, num_classes)

    def construct(self, x):
        n, c, h, w = x.shape
        p = self.patch
        patches = x.reshape(n, c, h // p, p, w // p, p).transpose(0, 2, 4, 1, 3, 5).reshape(n, -1, c * p * p)
        tokens = ops.concat((ops.broadcast_to(self.cls_token, (n, 1, -1)), self.patch_embed(patches)), axis=1)
        return self.head(self.norm(tokens + self.pos_embed).mean(axis=1))


def vit_patch_embed_pair():
    """Torch patch Conv2d (8, 3, 4, 4) vs a Dense (8, 48); torch pos_embed (1, 5, 8) vs (5, 8)."""
    reference = {"cls_token": "cls_token", "pos_embed": {"torch": "pos_embed", "transform": "reshape(5, 8)"},
                 "patch_embed.weight": {"torch": "patch_embed.weight", "transform": "reshape(8, 48)"},
                 "patch_embed.bias": "patch_embed.bias", **_norm("norm", "norm"),
                 "head.weight": "head.weight", "head.bias": "head.bias"}
    return Pair("vit_patch_embed", _TorchPatchConvViT(), _MsPatchDenseViT(), reference, [(2, 3, 8, 8)])


# ---------------------------------------------------------------- 11. same-signature layers in swapped order

class _TorchQKNormAttention(tnn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.to_q = tnn.Linear(width, width)
        self.to_k = tnn.Linear(width, width)
        self.to_v = tnn.Linear(width, width)
        self.norm_q = tnn.LayerNorm(width)
        self.norm_k = tnn.LayerNorm(width)
        self.to_out = tnn.Linear(width, width)

    def forward(self, x):
        q, k = self.norm_q(self.to_q(x)), self.norm_k(self.to_k(x))
        return self.to_out(_torch_attention(q, k, self.to_v(x)))


class _MsQKNormAttention(msnn.Cell):
    def __init__(self, width=8):
        super().__init__()
        self.k_norm = _ms_layer_norm(width)  # k before q: only the names say which is which
        self.q_norm = _ms_layer_norm(width)
        self.q_proj = msnn.Dense(width, width)
        self.k_proj = msnn.Dense(width, width)
        self.v_proj = msnn.Dense(width, width)
        self.out_proj = msnn.Dense(width, width)

    def construct(self, x):
        q, k = self.q_norm(self.q_proj(x)), self.k_norm(self.k_proj(x))
        return self.out_proj(_ms_attention(q, k, self.v_proj(x)))


def swapped_qk_norm_order_pair():
    """Torch `norm_q`, `norm_k` vs MindSpore `k_norm`, `q_norm` declared in the other order."""
    reference = {**_norm("k_norm", "norm_k"), **_norm("q_norm", "norm_q"),
                 "q_proj.weight": "to_q.weight", "q_proj.bias": "to_q.bias",
                 "k_proj.weight": "to_k.weight", "k_proj.bias": "to_k.bias",
                 "v_proj.weight": "to_v.weight", "v_proj.bias": "to_v.bias",
                 "out_proj.weight": "to_out.weight", "out_proj.bias": "to_out.bias"}
    return Pair("swapped_qk_norm_order", _TorchQKNormAttention(), _MsQKNormAttention(), reference, [(2, 5, 8)])


# ---------------------------------------------------------------- 12. per-layer renames in one net

class _TorchLayerZoo(tnn.Module):
    def __init__(self, vocab=10, width=8, out=4):
        super().__init__()
        self.embed = tnn.Embedding(vocab, width)
        self.lstm = tnn.LSTM(width, width // 2, num_layers=2, bidirectional=True, batch_first=True)
        self.ln = tnn.LayerNorm(width)
        self.bn = tnn.BatchNorm1d(width)
        self.act = tnn.PReLU(width)
        self.gn = tnn.GroupNorm(2, width)
        self.fc = tnn.Linear(width, out)

    def forward(self, ids):
        h = self.ln(self.lstm(self.embed(ids))[0]).transpose(1, 2)
        return self.fc(self.gn(self.act(self.bn(h))).mean(2))


class _MsLayerZoo(msnn.Cell):
    def __init__(self, vocab=10, width=8, out=4):
        super().__init__()
        self.embed = msnn.Embedding(vocab, width)
        self.lstm = msnn.LSTM(width, width // 2, num_layers=2, bidirectional=True, batch_first=True)
        self.ln = _ms_layer_norm(width)
        self.bn = msnn.BatchNorm1d(width)
        self.act = msnn.PReLU(width)
        self.gn = msnn.GroupNorm(2, width)
        self.fc = msnn.Dense(width, out)

    def construct(self, ids):
        h = self.ln(self.lstm(self.embed(ids))[0]).transpose(0, 2, 1)
        return self.fc(self.gn(self.act(self.bn(h))).mean(axis=2))


def renamed_layer_params_pair():
    """BatchNorm, LayerNorm, GroupNorm, Embedding, PReLU renames, and a stacked LSTM listed in another order."""
    # same LSTM names on both sides, but MindSpore lists them by kind, torch by layer and direction
    lstm = {f"lstm.{kind}_l{layer}{direction}": f"lstm.{kind}_l{layer}{direction}"
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            for layer in (0, 1) for direction in ("", "_reverse")}
    reference = {"embed.embedding_table": "embed.weight", **lstm, **_norm("ln", "ln"), **_bn("bn", "bn"),
                 "act.w": "act.weight", **_norm("gn", "gn"), "fc.weight": "fc.weight", "fc.bias": "fc.bias"}
    return Pair("renamed_layer_params", _TorchLayerZoo(), _MsLayerZoo(), reference, [(2, 6)], token_vocab=10)


class _TorchConv3dNet(tnn.Module):
    def __init__(self, cin=2, channels=4, out=3):
        super().__init__()
        self.conv = tnn.Conv3d(cin, channels, 3, padding=1)
        self.bn = tnn.BatchNorm3d(channels)
        self.fc = tnn.Linear(channels, out)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3, 4)))


class _MsConv3dNet(msnn.Cell):
    def __init__(self, cin=2, channels=4, out=3):
        super().__init__()
        self.conv = msnn.Conv3d(cin, channels, 3, pad_mode="pad", padding=1, has_bias=True)
        self.bn = msnn.BatchNorm3d(channels)  # wraps a BatchNorm2d: its tensors live under `bn.bn2d.`
        self.fc = msnn.Dense(channels, out)

    def construct(self, x):
        return self.fc(ops.relu(self.bn(self.conv(x))).mean(axis=(2, 3, 4)))


def batchnorm3d_inner_cell_pair():
    """Torch BatchNorm3d `bn.weight` vs MindSpore `bn.bn2d.gamma`: a level the port's layer adds."""
    reference = {"conv.weight": "conv.weight", "conv.bias": "conv.bias", **_bn("bn.bn2d", "bn"),
                 "fc.weight": "fc.weight", "fc.bias": "fc.bias"}
    return Pair("batchnorm3d_inner_cell", _TorchConv3dNet(), _MsConv3dNet(), reference, [(2, 2, 3, 3, 3)])


ALL_PAIRS = [
    renumbered_containers_pair,
    inserted_container_level_pair,
    renamed_head_fc_classifier_pair,
    renamed_head_classifier_head_pair,
    private_prefix_celllist_pair,
    mixed_nn_and_mint_pair,
    wrapper_prefix_torch_module_pair,
    wrapper_prefix_ms_network_pair,
    tied_embedding_output_pair,
    shared_weight_used_twice_pair,
    one_sided_tensors_pair,
    norm_declared_after_mlp_pair,
    convnext_downsample_layout_pair,
    conv1x1_vs_dense_pair,
    conv1d_4d_weight_pair,
    fused_qkv_to_split_pair,
    split_qkv_to_fused_pair,
    transposed_matrix_pair,
    vit_patch_embed_pair,
    swapped_qk_norm_order_pair,
    renamed_layer_params_pair,
    batchnorm3d_inner_cell_pair,
]
