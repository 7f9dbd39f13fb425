"""Stage 2's matcher on real model pairs: every naming difference it must handle, entry for entry."""

import dataclasses

import mindspore.nn as msnn
import pytest
import torch.nn as tnn

from pt2ms.formats.inventory import TensorInfo
from pt2ms.mapping.matching import flat_shape, match, name_similarity, rank_numbers
from pt2ms.running.model_rows import from_ms_model, torch_model_rows
from pt2ms.stages.build_map import split_ignored, to_value
from tests.pair_rows import ordered_rows
from tests.pairs import ALL_PAIRS


def suggested(ms_rows, torch_rows):
    ms_kept, torch_kept, ignored = split_ignored(ms_rows, torch_rows)
    return {item.ms_name: to_value(item) for item in match(ms_kept, torch_kept)}, ignored


def wrong_entries(got, reference):
    return [(name, got.get(name), value) for name, value in reference.items() if got.get(name) != value]


@pytest.mark.parametrize("make_pair", ALL_PAIRS, ids=lambda f: f.__name__.removesuffix("_pair"))
def test_pair_mapped_right_with_model_order(make_pair):
    pair = make_pair()
    got, _ = suggested(*ordered_rows(pair))
    assert wrong_entries(got, pair.reference) == []
    assert set(got) == set(pair.reference)


@pytest.mark.parametrize("make_pair", ALL_PAIRS, ids=lambda f: f.__name__.removesuffix("_pair"))
def test_pair_mapped_right_with_layer_types(make_pair):
    pair = make_pair()
    got, _ = suggested(from_ms_model(pair.ms_model), torch_model_rows(pair.torch_model))
    assert wrong_entries(got, pair.reference) == []
    assert set(got) == set(pair.reference)


# Only a layer type can say that a square bare matrix used as x @ W is stored transposed.
NEEDS_LAYER_TYPES = {"transposed_matrix"}


@pytest.mark.parametrize("make_pair", ALL_PAIRS, ids=lambda f: f.__name__.removesuffix("_pair"))
def test_pair_mapped_right_from_names_and_shapes_alone(make_pair):
    """As with a template .ckpt or a bare checkpoint: no layer types, no attribute paths."""
    pair = make_pair()
    if pair.name in NEEDS_LAYER_TYPES:
        pytest.skip("square transposed matrix: undecidable from names and shapes")
    bare = lambda rows: [dataclasses.replace(row, layer_type="", path="") for row in rows]  # noqa: E731
    got, _ = suggested(bare(from_ms_model(pair.ms_model)), bare(torch_model_rows(pair.torch_model)))
    assert wrong_entries(got, pair.reference) == []


class TorchVgg(tnn.Module):
    """A torchvision-style VGG: ReLUs and pools take indices in the Sequential, all convs share one shape."""

    def __init__(self):
        super().__init__()
        self.features = tnn.Sequential(tnn.Conv2d(8, 8, 3), tnn.ReLU(), tnn.Conv2d(8, 8, 3), tnn.BatchNorm2d(8),
                                       tnn.ReLU(), tnn.Conv2d(8, 8, 3), tnn.ReLU(), tnn.MaxPool2d(2),
                                       tnn.Conv2d(8, 8, 3), tnn.BatchNorm2d(8))
        self.classifier = tnn.Sequential(tnn.Linear(8, 8), tnn.ReLU(), tnn.Dropout(), tnn.Linear(8, 8),
                                         tnn.Linear(8, 4))


class MsVgg(msnn.Cell):
    """Its port: only parameterised cells in the SequentialCell, so the numbering differs everywhere."""

    def __init__(self):
        super().__init__()
        conv = lambda: msnn.Conv2d(8, 8, 3, has_bias=True)  # noqa: E731
        self.layers = msnn.SequentialCell([conv(), conv(), msnn.BatchNorm2d(8), conv(), conv(), msnn.BatchNorm2d(8)])
        self.head = msnn.SequentialCell([msnn.Dense(8, 8), msnn.Dense(8, 8), msnn.Dense(8, 4)])


def test_renumbered_same_shape_layers_follow_order_not_raw_indices():
    got, ignored = suggested(from_ms_model(MsVgg()), torch_model_rows(TorchVgg()))
    expected = {"layers.0.weight": "features.0.weight", "layers.1.weight": "features.2.weight",
                "layers.2.gamma": "features.3.weight", "layers.3.weight": "features.5.weight",
                "layers.4.weight": "features.8.weight", "layers.5.moving_variance": "features.9.running_var",
                "head.0.weight": "classifier.0.weight", "head.1.weight": "classifier.3.weight",
                "head.2.bias": "classifier.4.bias"}
    assert {name: got[name] for name in expected} == expected
    assert set(ignored["torch"]) == {"features.3.num_batches_tracked", "features.9.num_batches_tracked"}


def test_optimizer_state_in_a_template_is_ignored_not_mapped():
    row = lambda name, shape=(4,): TensorInfo(name, shape, "float32")  # noqa: E731
    ms_rows = [row("optimizer.fc.weight"), row("optimizer.moment1.fc.weight"), row("moment2.fc.weight"),
               row("global_step", (1,)), row("optimizer.learning_rate", ())]
    got, ignored = suggested(ms_rows, [row("fc.weight")])
    assert got == {"optimizer.fc.weight": "fc.weight"}
    assert set(ignored["mindspore"]) == {"optimizer.moment1.fc.weight", "moment2.fc.weight", "global_step",
                                         "optimizer.learning_rate"}


def test_rank_numbers_and_similarity():
    ranked = rank_numbers(["features.0", "features.2", "features.7", "head.3"])
    assert ranked == {"features.0": "features.0", "features.2": "features.1", "features.7": "features.2", "head.3": "head.0"}
    assert name_similarity("blocks.3.norm_q", "blocks.3.q_norm") > name_similarity("blocks.3.norm_q", "blocks.3.k_norm")
    assert flat_shape((8, 3, 4, 4)) == flat_shape((8, 48)) and flat_shape((4, 2, 1, 3)) == flat_shape((4, 2, 3))
