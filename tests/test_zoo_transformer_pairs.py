"""Transformer pairs named after public model zoos (tests/zoo_transformer_pairs.py): each port is right,
and stage 2's matcher maps it the way the reference does.

The port checks reuse tests/test_pairs_parity.py; the matcher checks follow tests/test_matching.py, except
that an entry also counts as right when it reads the same PyTorch tensors and its transform puts the same
numbers in the same places (e.g. "transpose(0, 1) | chunk(3, 0, 1)" and "chunk(3, 1, 1) | transpose(0, 1)").
Known matcher failures are strict xfails whose reason says which pass goes wrong.
"""
import dataclasses

import numpy as np
import pytest

from pt2ms.inventory import from_ms_model, torch_model_rows
from tests.test_matching import suggested
from tests.test_pairs_parity import ms_tensor_for, torch_keys_of
from tests.test_pairs_parity import test_every_mapped_tensor_matters as check_every_mapped_tensor_matters
from tests.test_pairs_parity import test_outputs_agree as check_outputs_agree
from tests.test_pairs_parity import test_reference_is_complete as check_reference_complete
from tests.zoo_transformer_pairs import ZOO_TRANSFORMER_PAIRS


def _pair_id(make_pair):
    return make_pair.__name__.removesuffix("_pair")


# Known matcher failures, per pair id, as strict xfails with the reason (none at present).
XFAIL_WITH_TYPES = {}
XFAIL_BARE = {}


def _params(xfails):
    return [pytest.param(make_pair, id=_pair_id(make_pair),
                         marks=[pytest.mark.xfail(strict=True, reason=xfails[_pair_id(make_pair)])]
                         if _pair_id(make_pair) in xfails else [])
            for make_pair in ZOO_TRANSFORMER_PAIRS]


PAIRS = [pytest.param(make_pair, id=_pair_id(make_pair)) for make_pair in ZOO_TRANSFORMER_PAIRS]


# ---------------------------------------------------------------- the ports and their reference maps

@pytest.mark.parametrize("make_pair", PAIRS)
def test_reference_is_complete(make_pair):
    check_reference_complete(make_pair())


@pytest.mark.parametrize("make_pair", PAIRS)
def test_outputs_agree(make_pair):
    check_outputs_agree(make_pair())


@pytest.mark.parametrize("make_pair", PAIRS)
def test_every_mapped_tensor_matters(make_pair):
    check_every_mapped_tensor_matters(make_pair())


# ---------------------------------------------------------------- the matcher

def _probe_state(torch_model):
    """Distinct numbers in every torch tensor, so equal results mean equal layouts."""
    state, start = {}, 0
    for key, tensor in torch_model.state_dict().items():
        size = int(np.prod(tensor.shape))
        state[key] = np.arange(start, start + size, dtype=np.float64).reshape(tuple(tensor.shape))
        start += size
    return state


def _same_entry(got, expected, probe):
    if got == expected:
        return True
    if got is None or expected is None or torch_keys_of(got) != torch_keys_of(expected):
        return False
    if isinstance(got, dict) and got.get("tied") != (isinstance(expected, dict) and expected.get("tied")):
        return False
    try:
        a, b = ms_tensor_for(got, probe, None), ms_tensor_for(expected, probe, None)
    except Exception:  # noqa: BLE001 - a transform that does not apply is simply wrong
        return False
    return a.shape == b.shape and np.array_equal(a, b)


def wrong_entries(got, pair):
    probe = _probe_state(pair.torch_model)
    return [(name, got.get(name), value) for name, value in pair.reference.items()
            if not _same_entry(got.get(name), value, probe)]


@pytest.mark.parametrize("make_pair", _params(XFAIL_WITH_TYPES))
def test_matcher_with_layer_types(make_pair):
    pair = make_pair()
    got, _ = suggested(from_ms_model(pair.ms_model), torch_model_rows(pair.torch_model))
    assert wrong_entries(got, pair) == []
    assert set(got) == set(pair.reference)


@pytest.mark.parametrize("make_pair", _params(XFAIL_BARE))
def test_matcher_from_names_and_shapes_alone(make_pair):
    """As with a template .ckpt or a bare checkpoint: no layer types, no attribute paths."""
    pair = make_pair()
    bare = lambda rows: [dataclasses.replace(row, layer_type="", path="") for row in rows]  # noqa: E731
    got, _ = suggested(bare(from_ms_model(pair.ms_model)), bare(torch_model_rows(pair.torch_model)))
    assert wrong_entries(got, pair) == []
