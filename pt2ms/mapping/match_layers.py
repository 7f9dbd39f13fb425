"""Layers as the matcher pairs them: tensors grouped by owning layer, each with a position and a shape
signature, paired one to one as an assignment problem; then tensors paired inside two matched layers."""

import functools
import json
from dataclasses import dataclass, field, replace

import numpy as np

from pt2ms.mapping.match_names import (
    LAYER_LEAVES,
    TYPE_FAMILIES,
    _common_wrapper,
    flat_shape,
    ms_leaf,
    name_similarity,
    rank_numbers,
    read_role_names,
    role,
    stored_in_out,
)


@dataclass
class Match:
    ms_name: str
    torch: object = None          # a PyTorch name, a list of names, or None
    transform: str = ""
    tied: bool = False
    method: str = "none"          # exact, rule, role, structural, transform, order, manual, none
    confidence: float = 0.0
    note: str = ""


@dataclass
class Side:
    """One side's tensors, in model order where a model gave one, with the normalised names the passes compare."""
    rows: list
    key: dict = field(default_factory=dict)      # name -> normalised path (wrappers dropped, leaves translated)
    position: dict = field(default_factory=dict)  # name -> relative position in model order (0..1)
    declared: dict = field(default_factory=dict)  # name -> relative position in definition order (0..1)
    order: str = "file"                           # where positions come from: execution, definition or file


def order_keys(rows):
    """(row name -> sort key, source): execution order, else definition order, else the file's key order.

    A layer that never ran (a weight read by its parent's forward, a head unused at inference) sorts right
    after the layer declared before it that did run. Rows without any model order keep their file position
    behind the row before them.
    """
    if any(row.execution_order >= 0 for row in rows):
        source, by_definition = "execution", sorted(range(len(rows)), key=lambda i: (rows[i].definition_order, i))
        keys, last = {}, (-1, -1)
        for index in by_definition:
            row = rows[index]
            if row.execution_order >= 0:
                last = (row.execution_order, row.definition_order)
            keys[row.name] = (*last, row.definition_order, index)
        return keys, source
    if any(row.definition_order >= 0 for row in rows):
        keys, last = {}, -1
        for index, row in enumerate(rows):
            last = row.definition_order if row.definition_order >= 0 else last
            keys[row.name] = (last, index)
        return keys, "definition"
    return {row.name: (index,) for index, row in enumerate(rows)}, "file"


def prepare(rows, ms_side):
    """A Side: rows in model order, normalised names, relative positions."""
    names = [row.name for row in rows]
    wrapper = _common_wrapper(names)
    keys, source = order_keys(rows)
    declared = order_keys([replace(row, execution_order=-1) for row in rows])[0] if source == "execution" else keys
    by_declaration = {row.name: index for index, row in enumerate(sorted(rows, key=lambda row: declared[row.name]))}
    rows = sorted(rows, key=lambda row: keys[row.name])
    side = Side(rows, order=source)
    siblings = {}
    for row in rows:
        parent, _, leaf = (row.path or row.name).rpartition(".")
        siblings.setdefault(parent, set()).add(leaf)
    for index, row in enumerate(rows):
        path = row.path or row.name
        if wrapper and path.startswith(wrapper):
            path = path[len(wrapper):]
        if ms_side:
            parent, _, _ = path.rpartition(".")
            leaf = ms_leaf(row, siblings)
            path = f"{parent}.{leaf}" if parent else leaf
        side.key[row.name] = path
        side.position[row.name] = index / max(len(rows) - 1, 1)
        side.declared[row.name] = by_declaration[row.name] / max(len(rows) - 1, 1)
    weights = {side.key[row.name].rpartition(".")[0]: tuple(row.shape) for row in rows
               if side.key[row.name].endswith(".weight")}
    side.key = read_role_names(side.key, weights)
    return side


@dataclass
class Layer:
    path: str                     # normalised layer path ("" for top-level tensors)
    rows: list                    # TensorInfo rows
    leaves: list                  # normalised leaf names, parallel to rows
    layer_type: str
    position: float
    ranked: str = ""              # path with container indices replaced by sibling ranks
    piece: tuple = ()             # (fused layer, index, count, split dims) for a piece of a fused layer
    siblings: tuple = ()          # signatures of the layers in its parent container, in order
    geometry: tuple = ()          # ((setting, value), ...) that shapes do not show but change them: stride, ...
    declared: float = 0.0         # relative position in definition order (= position without a model)
    ordered: bool = False         # whether position comes from a run of the model (execution order)
    flipped: bool = False         # its (in, out) weight is given here as (out, in), see stored_in_out
    agreed: bool = False          # paired where both models' orders agree (see assign_layers)
    agreed_margin: float = 0.0    # its score's margin over the next best partner, counting in model order
    rank: tuple = (0, 1, 0)       # (index, count, index in declaration order) among the layers of its
                                  # signature and geometry, in execution order

    def signature(self, loose=False):
        return tuple(sorted(flat_shape(row.shape) if loose else tuple(row.shape) for row in self.rows))


# Settings that change what a layer's output looks like, not just its numbers: two layers that differ in one
# never pair (a stride-2 conv is not a stride-1 conv of the same kernel). padding, eps, approximate and
# momentum are left out on purpose: a port that gets them wrong is still the partner, and stage 4 reports it.
GEOMETRY = ("stride", "dilation", "groups")


@functools.lru_cache(maxsize=None)
def geometry(settings):
    """The GEOMETRY part of a settings_text string, as a hashable tuple."""
    if not settings:
        return ()
    found = json.loads(settings)
    return tuple((key, json.dumps(found[key])) for key in GEOMETRY if key in found)


def same_geometry(a, b):
    """Whether two layers agree on every geometry setting both of them state."""
    if not a or not b:
        return True
    other = dict(b)
    return all(other.get(key, value) == value for key, value in a)


def layers_of(side, names):
    groups = {}
    for row in side.rows:
        if row.name not in names:
            continue
        parent, _, leaf = side.key[row.name].rpartition(".")
        # Loose tensors (cls_token, pos_embed, layer-scale gammas) are layers of their own: grouping them by
        # parent would glue unrelated tensors into one signature.
        group = parent if leaf in LAYER_LEAVES else side.key[row.name]
        layer = groups.get(group)
        if layer is None:
            layer = groups[group] = Layer(group, [], [], row.layer_type, side.position[row.name],
                                          geometry=geometry(row.settings), declared=side.declared[row.name],
                                          ordered=side.order == "execution")
        # A weight stored (in, out) competes in the (out, in) layout of the layers it may pair with.
        layer.rows.append(replace(row, shape=tuple(row.shape)[::-1]) if stored_in_out(row) else row)
        layer.flipped = layer.flipped or stored_in_out(row)
        layer.leaves.append(leaf)
    ranked = rank_numbers(list(groups))
    children = {}
    for layer in groups.values():
        layer.ranked = ranked[layer.path]
        children.setdefault(layer.path.rpartition(".")[0], []).append(layer.signature(loose=True))
    for layer in groups.values():
        layer.siblings = tuple(children[layer.path.rpartition(".")[0]])
    return list(groups.values())


@functools.lru_cache(maxsize=None)
def _type_family(layer_type):
    name = layer_type.removeprefix("mint.")
    return TYPE_FAMILIES.get(name, name)


ROLE_WEIGHT = 1.0  # two layers that name their roles (q, k, v, gate, up, down) agree or disagree


def _pair_score(ms_layer, torch_layer):
    similarity = name_similarity(ms_layer.ranked, torch_layer.ranked)
    # Execution order first, declaration order second: a port may declare its output projection first
    # (mindformers' T5) and still run it last. Both are the models' own; a file's key order is neither.
    distance = 0.75 * abs(ms_layer.position - torch_layer.position) + \
        0.25 * abs(ms_layer.declared - torch_layer.declared)
    # Strictly convex: of two pairings that cross and two that keep the order, equal in total distance,
    # the order-keeping one wins (w1/w3 vs gate/up, declared a few layers apart on the two sides).
    order = 1.0 - distance - 0.1 * distance ** 2
    score = 1.0 + similarity + order
    if ms_layer.layer_type and torch_layer.layer_type:
        score += 0.3 if _type_family(ms_layer.layer_type) == _type_family(torch_layer.layer_type) else -0.3
    # Containers built alike (a branch of conv, bn, conv, bn) pair as wholes even when their names share
    # nothing and the two ports declare them in another order.
    if ms_layer.siblings and ms_layer.siblings == torch_layer.siblings:
        score += 0.3
    ms_role, torch_role = role(ms_layer.path), role(torch_layer.path)
    if ms_role and torch_role:
        score += ROLE_WEIGHT if ms_role == torch_role else -ROLE_WEIGHT
    # A second name of a tensor (T5's encoder.embed_tokens for shared) is a partner only after the first.
    if torch_layer.rows and all(getattr(row, "tied_to", "") for row in torch_layer.rows):
        score -= 0.5
    return score, similarity


# Layers of one signature are paired in windows of at most this many per side (consecutive in model order,
# proportionally placed on the two sides): the work grows with n * WINDOW instead of n squared, so that a
# 200,000-tensor inventory whose thousands of blocks share one shape takes seconds (benchmarks/map_speed.py).
WINDOW = 32


def assign_layers(ms_layers, torch_layers, loose):
    """Best one-to-one layer pairing; returns [(ms_layer, torch_layer, similarity, margin)].

    Only layers of one shape signature (and no conflicting stride, dilation, groups) compete, so the
    assignment splits into one problem per signature, each solved in windows (WINDOW)."""
    if not ms_layers or not torch_layers:
        return []
    windows = [_Window(ms_layers, torch_layers, ms_group, torch_group, loose)
               for ms_group, torch_group in _windows(ms_layers, torch_layers, loose)]
    windows = [window for window in windows if window.allowed]
    partner = {i: j for window in windows for i, j in window.solve()}
    follows = _follow_pairs(ms_layers, torch_layers, partner)
    pairs = []
    for window in windows:
        if window.add_bonus(follows):
            window.solve()
        pairs += window.pairs()
    return pairs


def _windows(ms_layers, torch_layers, loose):
    """(ms indices, torch indices) of each window: per signature, in model order, split proportionally."""
    groups = {}
    for side, layers in enumerate((ms_layers, torch_layers)):
        for index in sorted(range(len(layers)), key=lambda k: layers[k].position):
            groups.setdefault(layers[index].signature(loose), ([], []))[side].append(index)
    for ms_group, torch_group in groups.values():
        if not ms_group or not torch_group:
            continue
        count = -(-max(len(ms_group), len(torch_group)) // WINDOW)
        for k in range(count):
            yield (ms_group[k * len(ms_group) // count:(k + 1) * len(ms_group) // count],
                   torch_group[k * len(torch_group) // count:(k + 1) * len(torch_group) // count])


class _Window:
    """One dense assignment problem: a few layers of one signature on each side."""

    def __init__(self, ms_all, torch_all, ms_index, torch_index, loose):
        self.ms_index, self.torch_index = ms_index, torch_index
        self.ms = [ms_all[i] for i in ms_index]
        self.torch = [torch_all[j] for j in torch_index]
        self.scores = np.full((len(self.ms), len(self.torch)), -np.inf)
        self.similarity = np.zeros_like(self.scores)
        for a, ms_layer in enumerate(self.ms):
            for b, torch_layer in enumerate(self.torch):
                if ms_layer.piece and torch_layer.piece:
                    continue  # two fused layers pair whole or not at all
                if not same_geometry(ms_layer.geometry, torch_layer.geometry):
                    continue
                self.scores[a, b], self.similarity[a, b] = _pair_score(ms_layer, torch_layer)
        self.allowed = bool(np.isfinite(self.scores).any())
        self.rank = _rank_term(self.ms, self.torch, loose, self.scores) if self.allowed else None
        self.bonus = np.zeros_like(self.scores)
        self.chosen = []

    def solve(self):
        """Solve; returns the chosen pairs as global (ms index, torch index)."""
        self.chosen = _solve(self.scores + self.rank + self.bonus)
        return [(self.ms_index[a], self.torch_index[b]) for a, b in self.chosen]

    def add_bonus(self, follows):
        for a, i in enumerate(self.ms_index):
            for b, j in enumerate(self.torch_index):
                if (i, j) in follows and np.isfinite(self.scores[a, b]):
                    self.bonus[a, b] = 0.3
        return self.bonus.any()

    def pairs(self):
        full = self.scores + self.rank + self.bonus
        found = []
        for a, b in self.chosen:
            ms_layer, torch_layer = self.ms[a], self.torch[b]
            # The margin over the next best partner, without the count in execution order: the confidence
            # formula was calibrated without it, and the count has its own say through `agreed`.
            margin = _margin(full - self.rank, a, b)
            ms_layer.agreed_margin = _margin(full, a, b)
            # Both models agree: the n-th of n layers of this kind on each side, in the order they run and in
            # the order they are declared, and a norm after the partner of the conv it follows. What stage 2
            # reports as sure (confidence >= 0.9) rests on this: where the two orders disagree (a branch
            # called later than declared), the pairing may be right but is not sure.
            ms_layer.agreed = self.rank[a, b] > 0 and ms_layer.rank[2] == torch_layer.rank[2] and \
                (not _is_norm(ms_layer) or self.bonus[a, b] > 0)
            found.append((ms_layer, torch_layer, self.similarity[a, b], margin))
        return found


# How much the n-th layer of a signature on one side wants the n-th of that signature on the other, when both
# sides' order comes from running their models: a run of blocks pairs with one consistent offset (dark3.1..8
# with 6.0..7) instead of each block with its neighbour of similar index. Not for declaration order: ports
# declare in other orders (mindformers' projection first, ShuffleNet's branch_main before branch_proj), and
# counting in it breaks more pairs than it mends (tests/mapping/test_zoo_pairs.py, declaration-order variant).
RANK_WEIGHT = 1.0
NORM_RANK_WEIGHT = 0.2


def _set_ranks(layers, loose):
    groups = {}
    for layer in sorted(layers, key=lambda layer: layer.position):
        groups.setdefault((layer.signature(loose), layer.geometry), []).append(layer)
    for members in groups.values():
        declared = {id(layer): index for index, layer in enumerate(sorted(members, key=lambda m: m.declared))}
        for index, layer in enumerate(members):
            layer.rank = (index, len(members), declared[id(layer)])


def _rank_term(ms_layers, torch_layers, loose, scores):
    """RANK_WEIGHT where two layers are the n-th of as many layers of their kind on each side.

    Only where both sides hold as many: with GQA's q and o of one shape against a port's lone wo, counting
    would pair wo with q."""
    term = np.zeros_like(scores)
    if not all(layer.ordered for layer in ms_layers + torch_layers):
        return term
    _set_ranks(ms_layers, loose)
    _set_ranks(torch_layers, loose)
    for i, j in zip(*np.nonzero(np.isfinite(scores))):
        (ms_index, ms_count, _), (torch_index, torch_count, _) = ms_layers[i].rank, torch_layers[j].rank
        if ms_count == torch_count and ms_index == torch_index:
            # A norm follows the conv it normalises (_follow_bonus, stronger) wherever its branch runs.
            term[i, j] = NORM_RANK_WEIGHT if _is_norm(ms_layers[i]) else RANK_WEIGHT
    return term


def _margin(scores, i, j):
    others = np.concatenate([np.delete(scores[i], j), np.delete(scores[:, j], i)])
    others = others[np.isfinite(others)]
    return scores[i, j] - others.max() if others.size else 1.0


def _solve(scores):
    """The allowed (i, j) pairs of the best assignment of a score matrix (-inf: not allowed)."""
    # Imported here: scipy.optimize takes 0.3-2 s to import, and a map that names and rules settle never needs it.
    from scipy.optimize import linear_sum_assignment

    allowed = np.isfinite(scores)
    rows, cols = linear_sum_assignment(np.where(allowed, -scores, 1e6))
    return [(i, j) for i, j in zip(rows, cols) if allowed[i, j]]


def _follow_pairs(ms_layers, torch_layers, partner):
    """(ms index, torch index) of norm layers whose predecessors in their containers (the convs they follow)
    are paired with each other: two BatchNorms of one shape in a block go with their convs, not crosswise."""
    torch_after = {}
    for j, before in _norm_predecessors(torch_layers).items():
        torch_after.setdefault(before, []).append(j)
    return {(i, j) for i, before in _norm_predecessors(ms_layers).items()
            for j in torch_after.get(partner.get(before), ())}


def _is_norm(layer):
    return all(len(row.shape) == 1 for row in layer.rows)


def _norm_predecessors(layers):
    """Index of each layer of only 1-D tensors (a norm) -> index of the layer declared before it in its parent."""
    predecessors, last = {}, {}
    for index, layer in enumerate(layers):
        if layer.piece:
            continue
        parent = layer.path.rpartition(".")[0]
        if _is_norm(layer) and parent in last:
            predecessors[index] = last[parent]
        last[parent] = index
    return predecessors


def pair_tensors(ms_layer, torch_layer, loose):
    """Pair tensors inside two matched layers: same leaf name first, then the only tensor of that shape."""
    def shape_of(row):
        return flat_shape(row.shape) if loose else tuple(row.shape)

    pairs, free = [], list(zip(torch_layer.leaves, torch_layer.rows))
    pending = []
    for leaf, row in zip(ms_layer.leaves, ms_layer.rows):
        hit = next((item for item in free if item[0] == leaf and shape_of(item[1]) == shape_of(row)), None)
        if hit:
            free.remove(hit)
            pairs.append((row, hit[1]))
        else:
            pending.append(row)
    for row in pending:
        hit = next((item for item in free if shape_of(item[1]) == shape_of(row)), None)
        if hit:
            free.remove(hit)
            pairs.append((row, hit[1]))
    return pairs

