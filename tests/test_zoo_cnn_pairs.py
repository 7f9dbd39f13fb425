"""The zoo-named CNN pairs of tests/zoo_cnn_pairs.py: the ports are right (reference complete, same function,
every mapped tensor matters), and what stage 2's matcher makes of them, with layer types and from bare
names and shapes. Matcher cases it gets wrong today are strict xfails whose reason says why.
"""
import dataclasses

import pytest

from pt2ms.inventory import from_ms_model, torch_model_rows
from tests import test_pairs_parity as parity
from tests.test_matching import suggested, wrong_entries
from tests.zoo_cnn_pairs import ZOO_CNN_PAIRS


def _id(make_pair):
    return make_pair.__name__.removesuffix("_pair")


@pytest.fixture(params=ZOO_CNN_PAIRS, ids=_id)
def pair(request):
    return request.param()


def test_reference_is_complete(pair):
    parity.test_reference_is_complete(pair)


def test_outputs_agree(pair):
    parity.test_outputs_agree(pair)


def test_every_mapped_tensor_matters(pair):
    parity.test_every_mapped_tensor_matters(pair)


# pair name -> why the matcher gets it wrong today (both with layer types and bare: layer types do not help,
# every confusion is between layers of one type and one signature). Diagnosed against pt2ms/matching.py.
_MOBILENET_V3 = (
    "structural pass mispairs same-signature layers (the expand and depthwise BNs of one block, project BNs "
    "of neighbouring blocks: 42 of 96 entries). Names share no word (expand/conv1/conv2 vs block.K.0/1), the "
    "zoo's flat stem (features.0-2) offsets every ranked block index from torchvision's, and rank_numbers "
    "turns the digits of `conv1`/`conv2` into sibling ranks 0/1 that coincide with torchvision's `block.0`/"
    "`block.1`: a spurious +0.16 name similarity that outweighs the 0.5-weighted position term (position is "
    "right here: with weight 2 instead of 0.5 all 96 entries map right)")
_SHUFFLENET_V2 = (
    "structural pass swaps branches in stride-2 blocks (52 of 147 entries): the zoo's `branch_main` "
    "(torchvision `branch2`) and `branch_proj` (`branch1`) hold layers of equal signature when a stage's input "
    "width equals its branch width (stages 3-4 of every real width, stage 2 too at x0.5); the names share "
    "no token and ranked indices tie, so position decides, and the zoo defines branch_main before "
    "branch_proj while torchvision defines branch1 first. Nothing checks that a layer's container matches "
    "as a whole (6 layers vs 4)")
KNOWN_WRONG_WITH_TYPES = {"zoo_mobilenet_v3": _MOBILENET_V3, "zoo_shufflenet_v2": _SHUFFLENET_V2}
KNOWN_WRONG_BARE = {"zoo_mobilenet_v3": _MOBILENET_V3, "zoo_shufflenet_v2": _SHUFFLENET_V2}


def _params(known):
    return [pytest.param(make_pair, id=_id(make_pair),
                         marks=[pytest.mark.xfail(strict=True, reason=f"matcher: {known[_id(make_pair)]}")]
                         if _id(make_pair) in known else [])
            for make_pair in ZOO_CNN_PAIRS]


@pytest.mark.parametrize("make_pair", _params(KNOWN_WRONG_WITH_TYPES))
def test_zoo_pair_mapped_right_with_layer_types(make_pair):
    pair = make_pair()
    got, _ = suggested(from_ms_model(pair.ms_model), torch_model_rows(pair.torch_model))
    assert wrong_entries(got, pair.reference) == []
    assert set(got) == set(pair.reference)


@pytest.mark.parametrize("make_pair", _params(KNOWN_WRONG_BARE))
def test_zoo_pair_mapped_right_from_names_and_shapes_alone(make_pair):
    pair = make_pair()
    bare = lambda rows: [dataclasses.replace(row, layer_type="", path="") for row in rows]  # noqa: E731
    got, _ = suggested(bare(from_ms_model(pair.ms_model)), bare(torch_model_rows(pair.torch_model)))
    assert wrong_entries(got, pair.reference) == []
