"""Running one layer or block on its own: fed the inputs its PyTorch partner saw, optionally with other weights.

Stage 4 isolates each paired layer to tell "this layer computes something else" from "this layer inherits
a difference"; stage 2's probe isolates the smallest block around an uncertain map entry and tries each
candidate layout of its weights. Both go through here.
"""

import contextlib
import itertools

import numpy as np

from pt2ms.running import compare
from pt2ms.running.recording import is_array, ms_numpy, torch_numpy


def run_ms_cell(cell, inputs):
    """A MindSpore cell's output arrays on NumPy `inputs`, or None when it does not take them."""
    import mindspore as ms

    try:
        out = cell(*[ms.Tensor(np.asarray(x)) for x in inputs])
    except Exception:  # a cell that needs other arguments than its partner's is simply not isolated
        return None
    return [ms_numpy(x) for _, x in compare.flatten(out) if is_array(x)]


def run_torch_module(module, inputs):
    """A torch module's output arrays on NumPy `inputs`, or None when it does not take them."""
    import torch

    try:
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.asarray(x)) for x in inputs])
    except Exception:
        return None
    return [torch_numpy(x) for _, x in compare.flatten(out) if is_array(x)]


@contextlib.contextmanager
def ms_weights(net, values):
    """Temporarily set MindSpore parameters (Parameter.name -> NumPy array); the old values come back after."""
    import mindspore as ms

    parameters = {parameter.name: parameter for parameter in net.get_parameters()}
    saved = {}
    try:
        for name, array in values.items():
            parameter = parameters[name]
            saved[name] = parameter.asnumpy().copy()
            parameter.set_data(ms.Tensor(np.asarray(array).astype(saved[name].dtype)))
        yield net
    finally:
        for name, array in saved.items():
            parameters[name].set_data(ms.Tensor(array))


def same_shaped_layers(cell, limit):
    """What a map could pair crosswise inside `cell` without a shape error, as [((name, [parameter names]),
    (name, [parameter names]))], at most `limit`: pairs of layers whose parameters have the same shapes (swapped
    whole), then pairs of same-shaped parameters (one entry swapped: a weight read from the other layer)."""
    groups, shapes = {}, {}
    for parameter in cell.get_parameters():
        groups.setdefault(parameter.name.rpartition(".")[0], []).append((parameter.name, tuple(parameter.shape)))
        shapes.setdefault(tuple(parameter.shape), []).append(parameter.name)
    by_shapes = {}
    for layer, own in groups.items():
        by_shapes.setdefault(tuple(shape for _, shape in own), []).append((layer, [name for name, _ in own]))
    layers = (pair for members in by_shapes.values() for pair in itertools.combinations(members, 2))
    single = (((a, [a]), (b, [b])) for names in shapes.values() for a, b in itertools.combinations(names, 2)
              if a.rpartition(".")[0] != b.rpartition(".")[0])
    return list(itertools.islice(itertools.chain(layers, single), limit))


def swapped_runs(cell, inputs, limit):
    """[((layer, layer), output arrays)]: `cell` run on `inputs` with each pair of same-shaped layers inside it
    swapped (same_shaped_layers), the weights put back after each run; None outputs where it does not run."""
    values = {parameter.name: parameter.asnumpy() for parameter in cell.get_parameters()}
    runs = []
    for (first, first_names), (second, second_names) in same_shaped_layers(cell, limit):
        swap = {**{a: values[b] for a, b in zip(first_names, second_names)},
                **{b: values[a] for a, b in zip(first_names, second_names)}}
        with ms_weights(cell, swap):
            runs.append(((first, second), run_ms_cell(cell, inputs)))
    return runs
