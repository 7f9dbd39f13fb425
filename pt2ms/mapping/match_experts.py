"""Mixture-of-Experts weights: many experts' tensors stacked into one MindSpore parameter.

mindformers' grouped experts (GroupedMLP) hold all of a layer's experts in two matrices: `experts.weight1`
[E*H, 2F], per expert its gate and up rows concatenated then transposed, and `experts.weight2` [E*F, H], per
expert its down_proj transposed. The PyTorch side has them one tensor per expert on disk
(`mlp.experts.N.gate_proj.weight` [F, H], what `save_pretrained` writes and the Hub holds) or fused in memory
by transformers 5 (`mlp.experts.gate_up_proj` [E, 2F, H], `down_proj` [E, H, F]). Both are said in the
transform language, e.g. for E=4 experts, F=8, H=16 from per-expert files:

    weight1 <- [e0.gate_proj, e0.up_proj, e1.gate_proj, ...]
               "cat(0) | reshape(4, 16, 16) | transpose(1, 2) | reshape(64, 16)"
    weight1 <- experts.gate_up_proj   "transpose(1, 2) | reshape(64, 16)"

The expert count comes from the layers: how many experts the files hold, or the fused tensor's first dim.
Whether gate and up rows are concatenated or interleaved per expert is the port family's layout
(GROUPED below: mindformers concatenates); stage 2's probe settles it where the models run (`candidates`).
The router (`mlp.router.weight`) is the PyTorch block's `mlp.gate.weight`; counters MindSpore keeps with no
PyTorch source (`router.fi_accu`) are null with method NO_SOURCE, which stage 3 accepts: nothing exists to find.
The tables are data: a new port's words go in them, not in code.
"""

import re

from pt2ms.mapping.match_layers import Match
from pt2ms.mapping.transforms import format_ops

# MindSpore grouped-experts leaf -> (the PyTorch roles each expert's rows join, in order; the family's layout).
GROUPED = {
    "weight1": (("gate", "up"), "concatenated"),
    "weight2": (("down",), "concatenated"),
}
EXPERTS_LAYER = "experts"
# PyTorch per-expert layer words -> role, and transformers 5's fused expert tensors -> the roles they join.
PER_EXPERT_ROLES = {"gate_proj": "gate", "w1": "gate", "up_proj": "up", "w3": "up", "down_proj": "down", "w2": "down"}
FUSED_ROLES = {"gate_up_proj": ("gate", "up"), "down_proj": ("down",)}
# MindSpore router layer -> the PyTorch layer words of the router in the same block.
ROUTERS = {"router": ("gate", "router")}
# MindSpore tensors that no PyTorch checkpoint holds: leaf -> why.
NO_SOURCE = {"fi_accu": "mindformers' running count of tokens per expert (load-balancing state): PyTorch keeps none"}
NO_SOURCE_METHOD = "no source"

EXPERTS_CONFIDENCE = 0.9     # roles and the expert count from the names, the row layout from the port's family
ROUTER_CONFIDENCE = 0.95

_PER_EXPERT = re.compile(r"^(?P<block>.*)\.experts\.(?P<index>\d+)\.(?P<word>[a-z0-9_]+)\.weight$")
_FUSED = re.compile(r"^(?P<block>.*)\.experts\.(?P<word>[a-z0-9_]+?)(?:\.weight)?$")
_GROUPED = re.compile(r"^(?P<block>.*)\.experts\.(?P<leaf>[a-z0-9_]+)$")


def place(block):
    """The container indices of a block path: model.layers.3.mlp -> (3,)."""
    return tuple(int(n) for n in re.findall(r"(?:^|\.)(\d+)(?=\.|$)", block))


def _torch_experts(torch_rows):
    """{place: (block, {role: [rows, one per expert]} or {role tuple: fused row})} of the PyTorch side."""
    per_expert, fused = {}, {}
    for row in torch_rows:
        found = _PER_EXPERT.match(row.name)
        if found and found["word"] in PER_EXPERT_ROLES:
            block = per_expert.setdefault(place(found["block"]), (found["block"], {}))[1]
            block.setdefault(PER_EXPERT_ROLES[found["word"]], {})[int(found["index"])] = row
            continue
        found = _FUSED.match(row.name)
        if found and found["word"] in FUSED_ROLES and len(row.shape) == 3:
            fused.setdefault(place(found["block"]), (found["block"], {}))[1][FUSED_ROLES[found["word"]]] = row
    return per_expert, fused


def stack_ops(per_expert, experts, rows, cols, ms_shape, pieces, layout):
    """Ops turning the experts' tensors into one MindSpore tensor of `ms_shape`, or None if it cannot hold them.

    Each expert's tensor is [rows, cols] (its pieces, e.g. gate and up, stacked: [2F, H]); `layout` says how
    the MindSpore rows lay the pieces out per expert: "concatenated" or "interleaved" (row by row)."""
    ops = [("cat", [0]), ("reshape", [experts, rows, cols])] if per_expert else []
    if layout == "interleaved":
        if pieces < 2 or rows % pieces:
            return None
        ops += [("reshape", [experts, pieces, rows // pieces, cols]), ("transpose", [1, 2]),
                ("reshape", [experts, rows, cols])]
    shape = (experts, rows, cols)
    if ms_shape[-1] == rows:  # the experts stored transposed (mindformers': x @ weight1[e]); square: its rule
        ops.append(("transpose", [1, 2]))
        shape = (experts, cols, rows)
    elif ms_shape[-1] != cols:
        return None
    total = experts * rows * cols
    if _numel(ms_shape) != total or (len(ms_shape) > 1 and ms_shape[0] % experts):
        return None
    if tuple(ms_shape) != shape:
        ops.append(("reshape", list(ms_shape)))
    return ops


def _numel(shape):
    count = 1
    for size in shape:
        count *= size
    return count


def _entry(ms_row, roles, per_expert, fused, layout):
    """(torch value, transform) for a grouped MindSpore tensor from one block's experts, or None."""
    if per_expert is not None:
        by_role = per_expert
        if any(role not in by_role for role in roles):
            return None
        indices = sorted(by_role[roles[0]])
        if indices != list(range(len(indices))) or any(sorted(by_role[role]) != indices for role in roles):
            return None
        shapes = {tuple(by_role[role][i].shape) for role in roles for i in indices}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            return None
        height, cols = next(iter(shapes))
        names = [by_role[role][i].name for i in indices for role in roles]
        ops = stack_ops(True, len(indices), height * len(roles), cols, tuple(ms_row.shape), len(roles), layout)
        return (names, format_ops(ops)) if ops else None
    row = fused.get(roles) if fused else None
    if row is None:
        return None
    experts, rows, cols = row.shape
    ops = stack_ops(False, experts, rows, cols, tuple(ms_row.shape), len(roles), layout)
    return (row.name, format_ops(ops)) if ops else None


def match_experts(ms, torch, matches, used):
    """Stacked experts, their routers and their source-less counters (methods "experts" and NO_SOURCE)."""
    for row in ms.rows:
        leaf = row.name.rpartition(".")[2]
        if row.name not in matches and leaf in NO_SOURCE:
            matches[row.name] = Match(row.name, None, method=NO_SOURCE_METHOD, confidence=1.0,
                                      note=f"no source: {NO_SOURCE[leaf]}")
    grouped = [(row, _GROUPED.match(row.name)) for row in ms.rows if row.name not in matches]
    grouped = [(row, found) for row, found in grouped if found and found["leaf"] in GROUPED]
    if not grouped:
        return
    per_expert, fused = _torch_experts([row for row in torch.rows if row.name not in used])
    torch_by_name = {row.name: row for row in torch.rows}
    for ms_row, found in grouped:
        roles, layout = GROUPED[found["leaf"]]
        at = place(found["block"])
        torch_block, by_role = per_expert.get(at, fused.get(at, (None, None)))
        if torch_block is None:
            continue
        entry = _entry(ms_row, roles, by_role if at in per_expert else None, by_role if at not in per_expert
                       else None, layout)
        if entry is None or any(name in used for name in ([entry[0]] if isinstance(entry[0], str) else entry[0])):
            continue
        count = len(entry[0]) // len(roles) if isinstance(entry[0], list) else torch_by_name[entry[0]].shape[0]
        source = "one tensor per expert" if isinstance(entry[0], list) else f"fused {entry[0].rpartition('.')[2]}"
        matches[ms_row.name] = Match(ms_row.name, entry[0], entry[1], method="experts", confidence=EXPERTS_CONFIDENCE,
                                     note=f"{count} experts of {torch_block} ({source}) stacked: {_how(roles, layout)}")
        used.update([entry[0]] if isinstance(entry[0], str) else entry[0])
        _router(ms_row.name, found["block"], torch_block, ms, torch_by_name, matches, used)


def _how(roles, layout):
    if len(roles) > 1:
        return f"{' and '.join(roles)} {layout} per expert (the port family's layout)"
    return f"each expert's {roles[0]}_proj in turn"


def _router(ms_experts_name, ms_block, torch_block, ms, torch_by_name, matches, used):
    ms_rows = {row.name: row for row in ms.rows}
    for ms_word, torch_words in ROUTERS.items():
        ms_name = f"{ms_block}.{ms_word}.weight"
        if ms_name not in ms_rows or ms_name in matches:
            continue
        for word in torch_words:
            torch_row = torch_by_name.get(f"{torch_block}.{word}.weight")
            if torch_row is not None and torch_row.name not in used and \
                    tuple(torch_row.shape) == tuple(ms_rows[ms_name].shape):
                matches[ms_name] = Match(ms_name, torch_row.name, method="experts", confidence=ROUTER_CONFIDENCE,
                                         note=f"router of the experts in {ms_experts_name.rpartition('.')[0]}: "
                                              f"{torch_row.name}")
                used.add(torch_row.name)
                break


def candidates(item, ms_shape, torch_shapes):
    """The probe's choices for a grouped entry joining several pieces per expert: [(label, (torch, transform))],
    concatenated and interleaved; [] when there is nothing to choose (one piece, e.g. down_proj)."""
    leaf = item.ms_name.rpartition(".")[2]
    if item.method != "experts" or leaf not in GROUPED or len(GROUPED[leaf][0]) < 2:
        return []
    pieces = len(GROUPED[leaf][0])
    if isinstance(item.torch, list):
        height, cols = torch_shapes[item.torch[0]]
        experts, rows, per_expert = len(item.torch) // pieces, height * pieces, True
    else:
        (experts, rows, cols), per_expert = torch_shapes[item.torch], False
    found = []
    for layout in ("concatenated", "interleaved"):
        ops = stack_ops(per_expert, experts, rows, cols, tuple(ms_shape), pieces, layout)
        if ops:
            found.append((layout, (item.torch, format_ops(ops))))
    return found
