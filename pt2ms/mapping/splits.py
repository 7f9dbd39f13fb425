"""Stage 2's uneven-split pass: one PyTorch tensor cut into MindSpore parameters of unequal height.

A dual-path network's port may split a fused 1x1 conv of 288 output channels into two convs of 256 and 32:
the matcher then finds no partner for either piece and reports the fused tensor unused. This pass looks at
what the matcher left: MindSpore parameters of one family (sibling layers, same leaf name, same trailing
dims) with no source, whose heights add up to the height of an unused PyTorch tensor with the same trailing
dims and leaf. Each piece becomes `slice(0, start, stop)` of it, in the port's declaration order; the
numeric probe (pt2ms.mapping.probe) checks that order when both models are given.
"""

from collections import defaultdict

from pt2ms.mapping.matching import Match, name_similarity, strip_wrappers

CONFIDENCE = 0.6   # the heights add up; which piece comes first is declaration order, not evidence


def _family(name):
    """(grandparent path, leaf): `blocks.3.conv_a.weight` and `blocks.3.conv_b.weight` share ('blocks.3', 'weight')."""
    parts = strip_wrappers(name).split(".")
    return ".".join(parts[:-2]), parts[-1]


def _layer(name):
    return name.rpartition(".")[0]


def _leaf_family(row):
    return _family(row.name)[1]


def _candidates(group, torch_rows, taken):
    """Unused PyTorch tensors that the group's pieces, stacked along dim 0, fill exactly."""
    height = sum(row.shape[0] for row in group)
    trailing, leaf = tuple(group[0].shape[1:]), _leaf_family(group[0])
    return [row for row in torch_rows if row.name not in taken and len(row.shape) == len(group[0].shape)
            and row.shape[0] == height and tuple(row.shape[1:]) == trailing and _leaf_family(row) == leaf]


def _pick(group, candidates):
    """The candidate whose layer name is most like the pieces' layers; None when two tie."""
    scored = sorted(((name_similarity(strip_wrappers(_layer(group[0].name)), strip_wrappers(_layer(row.name))), index)
                     for index, row in enumerate(candidates)), reverse=True)
    if len(scored) > 1 and scored[0][0] == scored[1][0]:
        return None
    return candidates[scored[0][1]] if scored else None


def propose_splits(matches, ms_rows, torch_rows):
    """Fill matcher entries left empty with slices of unused PyTorch tensors; returns the new matches list."""
    by_name = {item.ms_name: item for item in matches}
    used = {name for item in matches for name in ([item.torch] if isinstance(item.torch, str) else item.torch or [])}
    empty = [row for row in ms_rows if row.shape and by_name.get(row.name) and by_name[row.name].torch is None]
    families = defaultdict(list)
    for row in empty:
        families[(_family(row.name), tuple(row.shape[1:]))].append(row)
    for group in families.values():
        if len(group) < 2 or len({_layer(row.name) for row in group}) != len(group):
            continue
        source = _pick(group, _candidates(group, torch_rows, used))
        if source is None:
            continue
        used.add(source.name)
        start = 0
        for row in group:
            stop = start + row.shape[0]
            by_name[row.name] = Match(row.name, source.name, f"slice(0, {start}, {stop})", method="transform",
                                      confidence=CONFIDENCE,
                                      note=f"uneven split: rows {start}:{stop} of {source.name} {list(source.shape)} "
                                           f"(pieces {'+'.join(str(r.shape[0]) for r in group)}, in declaration order)")
            start = stop
    return [by_name[item.ms_name] for item in matches]
