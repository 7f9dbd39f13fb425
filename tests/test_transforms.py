"""Transform strings: parsing, shape rules and data, including their refusals."""

import numpy as np
import pytest

from pt2ms import transforms
from pt2ms.errors import Pt2MsError


def test_chunk_and_cat_are_inverse():
    qkv = np.arange(6 * 4).reshape(6, 4)
    pieces = [transforms.apply(transforms.parse(f"chunk(3, 0, {i})"), [qkv]) for i in range(3)]
    assert [p.shape for p in pieces] == [(2, 4)] * 3
    assert (transforms.apply(transforms.parse("cat(0)"), pieces) == qkv).all()


def test_shape_rules_match_data():
    ops = transforms.parse("reshape(8, 48) | transpose(0, 1)")
    array = np.zeros((8, 3, 4, 4))
    assert transforms.output_shape(ops, [array.shape]) == transforms.apply(ops, [array]).shape == (48, 8)


@pytest.mark.parametrize("text, shapes, message", [
    ("reshape(5)", [(2, 3)], "cannot hold"),
    ("chunk(4, 0, 0)", [(6, 2)], "does not fit"),
    ("transpose(0, 3)", [(2, 2)], "out of range"),
    ("flip(0)", [(2,)], "bad transform"),
    ("", [(2,), (2,)], "starting with cat"),
])
def test_bad_transforms_are_refused(text, shapes, message):
    with pytest.raises(Pt2MsError, match=message):
        transforms.output_shape(transforms.parse(text), shapes)
