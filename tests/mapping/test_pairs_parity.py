"""Checks the paired model zoo in tests/pairs.py: every reference map is complete and right.

Structure: each map lists every MindSpore parameter once, in the port's order, names existing torch
keys, and its transforms give the port's shapes. Parity: for each pair marked `same_function`, torch
gets seeded random weights, the MindSpore tensors are built through the map and loaded with
`load_param_into_net`, and both models must give the same outputs in eval mode.
"""
import re

import mindspore as ms
import numpy as np
import pytest
import torch

from tests.pairs import ALL_PAIRS

TOLERANCE = 1e-4


def apply_transform(tensors, transform):
    """Apply a map entry's " | "-separated ops, left to right, to the PyTorch tensor(s)."""
    array = tensors[0]
    for op in transform.split(" | "):
        name, args = re.fullmatch(r"(\w+)\((.*)\)", op.strip()).groups()
        args = [int(arg) for arg in args.split(",")]
        if name == "cat":
            array = np.concatenate(tensors, axis=args[0])
        elif name == "reshape":
            array = array.reshape(args)
        elif name == "transpose":
            array = np.swapaxes(array, *args)
        elif name == "chunk":
            count, dim, index = args
            array = np.split(array, count, axis=dim)[index]
        elif name == "slice":
            dim, start, stop = args
            array = np.take(array, np.arange(start, stop), axis=dim)
        elif name == "interleave":  # pieces of sizes args[2:], each cut in args[0] parts, laid out part by part
            groups, dim, sizes = args[0], args[1], args[2:]
            pieces = np.split(array, np.cumsum(sizes)[:-1], axis=dim)
            parts = [np.split(piece, groups, axis=dim) for piece in pieces]
            array = np.concatenate([piece_parts[g] for g in range(groups) for piece_parts in parts], axis=dim)
        else:
            raise ValueError(f"unknown transform op {op!r}")
    return np.ascontiguousarray(array)


def ms_tensor_for(entry, torch_state, own_value):
    """The NumPy array a reference entry gives one MindSpore parameter."""
    if entry is None:
        return own_value  # deliberately unmapped: the port keeps its own value
    if isinstance(entry, str):
        return torch_state[entry]
    keys = [entry["torch"]] if isinstance(entry["torch"], str) else entry["torch"]
    tensors = [torch_state[key] for key in keys]
    return apply_transform(tensors, entry["transform"]) if "transform" in entry else tensors[0]


def torch_keys_of(entry):
    """The PyTorch keys one reference entry reads."""
    if entry is None:
        return []
    if isinstance(entry, str):
        return [entry]
    return [entry["torch"]] if isinstance(entry["torch"], str) else list(entry["torch"])


def fill_torch_weights(model, seed):
    """Overwrite every float tensor of the state dict with seeded random values (running_var > 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, tensor in model.state_dict(keep_vars=True).items():
            if not tensor.is_floating_point():
                continue  # position ids, num_batches_tracked
            values = 0.5 * torch.randn(tensor.shape, generator=generator)
            if key.endswith("running_var"):
                values = values.abs() + 0.5
            tensor.copy_(values)


@pytest.fixture(params=ALL_PAIRS, ids=lambda make_pair: make_pair.__name__)
def pair(request):
    return request.param()


def test_reference_is_complete(pair):
    ms_params = {param.name: param for param in pair.ms_model.get_parameters()}
    assert list(pair.reference) == list(ms_params), "keys must be every Parameter.name, in the port's order"

    torch_state = {key: value.detach().numpy() for key, value in pair.torch_model.state_dict().items()}
    used = {key for entry in pair.reference.values() for key in torch_keys_of(entry)}
    assert used <= set(torch_state)
    assert not any(key.endswith("num_batches_tracked") for key in used)
    unused = {key for key in set(torch_state) - used if not key.endswith("num_batches_tracked")}
    assert unused == {*pair.torch_unmapped}

    for name, entry in pair.reference.items():
        own = ms_params[name].asnumpy()
        assert ms_tensor_for(entry, torch_state, own).shape == own.shape, name


def test_outputs_agree(pair):
    if not pair.same_function:
        pytest.skip("this pair's models are not meant to compute the same function")
    fill_torch_weights(pair.torch_model, seed=0)
    torch_state = {key: value.detach().numpy() for key, value in pair.torch_model.state_dict().items()}
    ms_params = {param.name: param for param in pair.ms_model.get_parameters()}

    to_load = {}
    for name, entry in pair.reference.items():
        own = ms_params[name].asnumpy()
        array = ms_tensor_for(entry, torch_state, own)
        assert array.dtype == own.dtype, name  # load_param_into_net would cast silently
        to_load[name] = ms.Parameter(ms.Tensor(array), name=name)
    not_loaded, not_used = ms.load_param_into_net(pair.ms_model, to_load, strict_load=True)
    assert not_loaded == [] and not_used == []
    for name, param in ms_params.items():
        np.testing.assert_array_equal(param.asnumpy(), to_load[name].asnumpy(), err_msg=name)

    pair.torch_model.eval()
    pair.ms_model.set_train(False)
    inputs = pair.make_inputs(seed=1)
    with torch.no_grad():
        expected = pair.torch_model(*[torch.from_numpy(x) for x in inputs]).numpy()
    actual = pair.ms_model(*[ms.Tensor(x) for x in inputs]).asnumpy()

    assert actual.shape == expected.shape
    error, magnitude = np.abs(actual - expected).max(), np.abs(expected).max()
    print(f"{pair.name}: max abs error {error:.2e}, output max abs {magnitude:.2e}")
    assert magnitude > 1e-2, "a near-zero output would make the comparison vacuous"
    assert error < TOLERANCE


def test_every_mapped_tensor_matters(pair):
    # parity proves a map right only for tensors that reach the output: a dead one could be mis-mapped
    if not pair.same_function:
        pytest.skip("this pair's models are not meant to compute the same function")
    fill_torch_weights(pair.torch_model, seed=0)
    pair.torch_model.eval()
    inputs = [torch.from_numpy(x) for x in pair.make_inputs(seed=1)]
    state = pair.torch_model.state_dict(keep_vars=True)
    used = {key for entry in pair.reference.values() for key in torch_keys_of(entry)}
    with torch.no_grad():
        baseline = pair.torch_model(*inputs)
        for key in sorted(used):
            saved = state[key].clone()
            state[key].add_(0.5 + saved.abs())  # nudge every element, away from zero
            changed = (pair.torch_model(*inputs) - baseline).abs().max().item()
            state[key].copy_(saved)
            assert changed > 1e-4, f"{key} does not reach the output"
