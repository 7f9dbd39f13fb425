"""Transform strings: parsing, shape rules and data, including their refusals."""

import numpy as np
import pytest

from pt2ms.errors import Pt2MsError
from pt2ms.mapping import transforms


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


def test_interleave_lays_out_gqa_groups_as_mindformers_reads_them():
    """4 query heads, 2 key/value heads, head_dim 2: q 8 rows, k 4, v 4 -> [q of group 0, k_0, v_0, q of group 1, ...]."""
    q, k, v = np.arange(8)[:, None] * np.ones(3), 100 + np.arange(4)[:, None] * np.ones(3), 200 + np.arange(4)[:, None] * np.ones(3)
    fused = transforms.apply(transforms.parse("cat(0) | interleave(2, 0, 8, 4, 4)"), [q, k, v])
    assert fused[:, 0].tolist() == [0, 1, 2, 3, 100, 101, 200, 201, 4, 5, 6, 7, 102, 103, 202, 203]
    # mindformers: reshape to (n_kv_heads, (n_rep + 2) * head_dim), split (n_rep * head_dim, head_dim, head_dim)
    grouped = fused[:, 0].reshape(2, 8)
    assert grouped[:, :4].reshape(-1).tolist() == q[:, 0].tolist()
    assert grouped[:, 4:6].reshape(-1).tolist() == k[:, 0].tolist()
    assert grouped[:, 6:].reshape(-1).tolist() == v[:, 0].tolist()


def test_interleave_row_by_row_and_its_inverse():
    gate, up = np.arange(5), 10 + np.arange(5)
    ops = transforms.parse("cat(0) | interleave(5, 0, 5, 5)")
    fused = transforms.apply(ops, [gate, up])
    assert fused.tolist() == [0, 10, 1, 11, 2, 12, 3, 13, 4, 14]
    assert fused.reshape(5, 2)[:, 0].tolist() == gate.tolist()  # mindformers: reshape (intermediate, 2)
    back = transforms.undo("interleave", ops[1][1], fused, fused.shape)
    assert back.tolist() == np.concatenate([gate, up]).tolist()


def test_interleave_along_another_dim_undoes_exactly():
    array = np.random.default_rng(0).standard_normal((3, 12, 2))
    args = [2, 1, 6, 4, 2]
    out = transforms.apply([("interleave", args)], [array])
    assert out.shape == array.shape and not np.array_equal(out, array)
    assert np.array_equal(transforms.undo("interleave", args, out, array.shape), array)


def test_slice_keeps_uneven_rows():
    kernel = np.arange(288 * 4).reshape(288, 4, 1, 1)
    low = transforms.apply(transforms.parse("slice(0, 0, 256)"), [kernel])
    high = transforms.apply(transforms.parse("slice(0, 256, 288)"), [kernel])
    assert low.shape == (256, 4, 1, 1) and high.shape == (32, 4, 1, 1)
    assert np.array_equal(np.concatenate([low, high]), kernel)
    assert transforms.output_shape(transforms.parse("slice(0, 256, 288)"), [kernel.shape]) == (32, 4, 1, 1)
    assert transforms.takes_a_piece(transforms.parse("slice(0, 256, 288)"))


@pytest.mark.parametrize("text, shapes, message", [
    ("slice(0, 250, 300)", [(288, 4)], "does not fit"),
    ("slice(0, 5, 5)", [(288, 4)], "does not fit"),
    ("interleave(2, 0, 16, 8, 8)", [(30, 4)], "sum to 32"),
    ("interleave(3, 0, 16, 8, 8)", [(32, 4)], "multiple"),
    ("interleave(2, 0)", [(32, 4)], "at least 3"),
    ("slice(0, 1)", [(32, 4)], "takes 3 numbers"),
])
def test_bad_new_transforms_are_refused(text, shapes, message):
    with pytest.raises(Pt2MsError, match=message):
        transforms.output_shape(transforms.parse(text), shapes)
