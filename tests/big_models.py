"""A pair too big to hold twice: a stack of wide MLP layers in PyTorch and its MindSpore port, built from sizes.

Both sides compute embed -> N x (x + down(gelu(up(x)))) -> LayerNorm -> head with the same names except
where the frameworks differ (`embedding_table`, LayerNorm `gamma`/`beta`), so stage 2 maps it by name. The
PyTorch checkpoint is written tensor by tensor (`write_checkpoint`), never held whole: the memory-limit tests
(tests/stages/test_bounded_memory.py) run the stages in a child under a limit smaller than the two models.
"""

import math

import numpy as np

from pt2ms.formats.safetensors_file import write_safetensors
from pt2ms.formats.tensors import float32_to_bfloat16


def torch_model(hidden=64, layers=2, vocab=100):
    import torch
    from torch import nn

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.up, self.down = nn.Linear(hidden, 4 * hidden), nn.Linear(4 * hidden, hidden)

        def forward(self, x):
            return x + self.down(torch.nn.functional.gelu(self.up(x)))

    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab, hidden)
            self.layers = nn.ModuleList([Layer() for _ in range(layers)])
            self.norm, self.head = nn.LayerNorm(hidden), nn.Linear(hidden, vocab, bias=False)

        def forward(self, tokens):
            x = self.embed(tokens)
            for layer in self.layers:
                x = layer(x)
            return self.head(self.norm(x))

    return Stack().eval()


def ms_model(hidden=64, layers=2, vocab=100):
    from mindspore import nn

    class Layer(nn.Cell):
        def __init__(self):
            super().__init__()
            self.up, self.down = nn.Dense(hidden, 4 * hidden), nn.Dense(4 * hidden, hidden)
            self.gelu = nn.GELU(approximate=False)

        def construct(self, x):
            return x + self.down(self.gelu(self.up(x)))

    class Stack(nn.Cell):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab, hidden)
            self.layers = nn.CellList([Layer() for _ in range(layers)])
            self.norm = nn.LayerNorm((hidden,), epsilon=1e-5)
            self.head = nn.Dense(hidden, vocab, has_bias=False)

        def construct(self, tokens):
            x = self.embed(tokens)
            for layer in self.layers:
                x = layer(x)
            return self.head(self.norm(x))

    return Stack()


def torch_shapes(hidden=64, layers=2, vocab=100):
    """The PyTorch side's state-dict names and shapes, in module order, without building it."""
    shapes = {"embed.weight": (vocab, hidden)}
    for i in range(layers):
        shapes |= {f"layers.{i}.up.weight": (4 * hidden, hidden), f"layers.{i}.up.bias": (4 * hidden,),
                   f"layers.{i}.down.weight": (hidden, 4 * hidden), f"layers.{i}.down.bias": (hidden,)}
    return shapes | {"norm.weight": (hidden,), "norm.bias": (hidden,), "head.weight": (vocab, hidden)}


def write_checkpoint(path, hidden=64, layers=2, vocab=100, dtype="bfloat16", seed=0):
    """A .safetensors of seeded random weights (scaled so activations stay of order 1), one tensor at a time;
    returns the values it holds."""
    shapes = torch_shapes(hidden, layers, vocab)

    def arrays():
        rng = np.random.default_rng(seed)
        for name, shape in shapes.items():
            if name == "norm.weight":
                values = np.ones(shape, np.float32)
            else:
                values = rng.standard_normal(shape, dtype=np.float32) * (0.5 / math.sqrt(shape[-1]))
            yield float32_to_bfloat16(values) if dtype == "bfloat16" else values

    write_safetensors(path, [(name, dtype, shape) for name, shape in shapes.items()], arrays())
    return sum(math.prod(shape) for shape in shapes.values())
