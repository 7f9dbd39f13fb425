"""Guessing which PyTorch tensor feeds each MindSpore parameter, from names, shapes, layer types and order.

Passes, most certain first; each claims tensors the later ones no longer see:
  1. exact      same name after wrapper prefixes are dropped and MindSpore's leaf names are translated
                (RENAMES below, applied by owning layer, never as a blanket rule)
  2. structural layers matched by shape signature, name-token similarity, relative position and the shape
                of their parent container, solved as one assignment problem (so ties are broken by
                structure, not by luck); tensors are then paired inside each matched layer. Fused
                projections (qkv) also compete as their pieces, so q, k, v pair with them in the same step
  3. loose      the structural pass again with size-1 dims dropped (1x1 conv vs dense, Conv1d's 4-D kernel)
  4. joined     a MindSpore layer as tall as a run of sibling PyTorch layers stacked: cat(0) of them
  5. order      what is left, paired by unique shape, or tied to a tensor already used when names agree
Anything still unpaired is left null (kept at its initial value) and reported.
"""

import difflib
import functools
import re
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import linear_sum_assignment

from . import transforms
from .inventory import WRAPPER_PREFIXES

NORM_LAYERS = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm", "InstanceNorm1d",
               "InstanceNorm2d", "InstanceNorm3d", "SyncBatchNorm", "_BatchNorm", "RMSNorm")
# (owning MindSpore layer types, MindSpore leaf, PyTorch leaf). mint.* layers keep PyTorch's names and never match.
RENAMES = [
    (NORM_LAYERS, "gamma", "weight"),
    (NORM_LAYERS, "beta", "bias"),
    (NORM_LAYERS, "moving_mean", "running_mean"),
    (NORM_LAYERS, "moving_variance", "running_var"),
    (("Embedding", "EmbeddingLookup"), "embedding_table", "weight"),
    (("PReLU",), "w", "weight"),
    (("PReLU",), "a", "weight"),   # a bare top-level nn.PReLU names its parameter `a`
]
# When no model tells the layer type: leaves that only MindSpore's own layers use. gamma/beta count only
# when both sit in one layer (a lone `gamma` is often a layer-scale parameter, named alike on both sides).
UNTYPED_RENAMES = {"moving_mean": "running_mean", "moving_variance": "running_var", "embedding_table": "weight"}
PAIR_RENAMES = {"gamma": "weight", "beta": "bias"}

TORCH_IGNORED = re.compile(r"(^|\.)num_batches_tracked$")
# Optimizer state that a template saved from a training wrapper carries: per-parameter slots mirror a
# parameter's name behind one of these prefixes; the scalars have fixed names.
OPTIMIZER_SLOTS = ("moments.", "moment1.", "moment2.", "adam_m.", "adam_v.", "accum.", "mean_grad.",
                   "mean_square.", "momentum.", "vhat.", "moment3.")
OPTIMIZER_SCALARS = {"global_step", "learning_rate", "beta1_power", "beta2_power", "current_iterator_step",
                     "epoch_num", "step_num", "scale_sense", "loss_scale", "last_overflow_iterator_step"}
LAYER_LEAVES = {"weight", "bias", "running_mean", "running_var"}
TYPE_FAMILIES = {"Dense": "Linear", "Conv2dTranspose": "ConvTranspose2d", "Conv1dTranspose": "ConvTranspose1d",
                 "EmbeddingLookup": "Embedding"}


@dataclass
class Match:
    ms_name: str
    torch: object = None          # a PyTorch name, a list of names, or None
    transform: str = ""
    tied: bool = False
    method: str = "none"          # exact, rule, structural, transform, order, manual, none
    confidence: float = 0.0
    note: str = ""


@dataclass
class Side:
    """One side's tensors with the normalised names the passes compare."""
    rows: list
    key: dict = field(default_factory=dict)      # name -> normalised path (wrappers dropped, leaves translated)
    position: dict = field(default_factory=dict)  # name -> relative position in definition order (0..1)


def ignored_reason(row, ms_names, ms_side):
    """Why a tensor takes no part in the map (num_batches_tracked, optimizer state), or ""."""
    if not ms_side:
        return "BatchNorm step counter: MindSpore has no counterpart" if TORCH_IGNORED.search(row.name) else ""
    name = strip_wrappers(row.name)  # a train-step cell may prefix its optimizer's state too
    if name in OPTIMIZER_SCALARS:
        return "optimizer state"
    for slot in OPTIMIZER_SLOTS:
        if name.startswith(slot):
            rest = name[len(slot):]
            if rest in ms_names or any(f"{prefix}{rest}" in ms_names for prefix in WRAPPER_PREFIXES):
                return f"optimizer state for {rest}"
    return ""


def strip_wrappers(name):
    for prefix in WRAPPER_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _common_wrapper(names):
    """A wrapper prefix every name carries (stripped for comparison), or ""."""
    for prefix in WRAPPER_PREFIXES:
        if names and all(name.startswith(prefix) for name in names):
            return prefix
    return ""


def ms_leaf(row, siblings):
    """The PyTorch leaf name a MindSpore leaf corresponds to, judged by its owning layer."""
    parent, _, leaf = (row.path or row.name).rpartition(".")
    layer_type = row.layer_type
    if layer_type.startswith("mint."):
        return leaf
    for types, ms_name, torch_name in RENAMES:
        if leaf == ms_name and layer_type in types:
            return torch_name
    # A layer of a type we do not know (a zoo's own LayerNorm cell) is judged as if untyped.
    if leaf in UNTYPED_RENAMES:
        return UNTYPED_RENAMES[leaf]
    if leaf in PAIR_RENAMES and {"gamma", "beta"} <= siblings.get(parent, set()):
        return PAIR_RENAMES[leaf]
    return leaf


def _prepare(rows, ms_side):
    names = [row.name for row in rows]
    wrapper = _common_wrapper(names)
    side = Side(rows)
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
    return side


# --- pass 1: exact names -------------------------------------------------------------------------------

def _exact(ms, torch, matches, used):
    # Equal names count only where the container positions agree too: a torch Sequential that counts its
    # ReLUs and a SequentialCell that does not share names like features.2 for different layers.
    ms_ranked, torch_ranked = rank_numbers(list(ms.key.values())), rank_numbers(list(torch.key.values()))
    torch_by_key = {}
    for row in torch.rows:
        torch_by_key.setdefault(torch.key[row.name], row)
        torch_by_key.setdefault(strip_wrappers(row.name), row)
    for row in ms.rows:
        candidates = [ms.key[row.name], strip_wrappers(ms.key[row.name]), row.name]
        partner = next((torch_by_key[c] for c in candidates if c in torch_by_key), None)
        if partner is None or partner.name in used or tuple(partner.shape) != tuple(row.shape):
            continue
        if strip_wrappers(ms_ranked[ms.key[row.name]]) != strip_wrappers(torch_ranked[torch.key[partner.name]]):
            continue
        same = partner.name == row.name
        matches[row.name] = Match(row.name, partner.name, method="exact" if same else "rule",
                                  confidence=1.0 if same else 0.99,
                                  note="" if same else f"renamed by rule: {ms.key[row.name]}")
        used.add(partner.name)


# --- pass 2: layers by signature, names and order --------------------------------------------------------

_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


# Names whose words mislead: Hugging Face decoders call the norm before the MLP "post_attention_layernorm"
# (mindformers: ffn_norm) and the one before attention "input_layernorm" (mindformers: attention_norm).
CONVENTIONS = {"post_attention_layernorm": "ffn_layernorm", "input_layernorm": "attention_layernorm"}


@functools.lru_cache(maxsize=None)
def tokens(path):
    """Word tokens and numbers of a dotted path: 'encoder.layer.3.attention' -> ({encoder, layer, attention}, [3])."""
    words, numbers = set(), []  # cached: the assignment compares each path with hundreds of others
    path = ".".join(CONVENTIONS.get(part, part) for part in path.split("."))
    for part in re.split(r"[._\-]|(?<=[a-zA-Z])(?=\d)|(?<=\d)(?=[a-zA-Z])", _CAMEL.sub("_", path)):
        if not part:
            continue
        if part.isdigit():
            numbers.append(int(part))
            continue
        word = part.lower()
        for ending in ("layers", "blocks", "stages", "heads"):
            if word == ending:
                word = word[:-1]
        words.add(word)
    return frozenset(words), tuple(numbers)


def rank_numbers(paths):
    """Replace each container index by its rank among its siblings: with features.0/2/4/7, features.7 -> features.3.

    Two ports rarely number containers alike (a torch Sequential counts its ReLUs, a SequentialCell may not),
    but the n-th block is the n-th block on both sides.
    """
    siblings, parts_of = {}, {}
    for path in paths:
        parts = parts_of[path] = re.split(r"(\d+)", path)
        for index in range(1, len(parts), 2):
            siblings.setdefault("".join(parts[:index]), set()).add(int(parts[index]))
    ranks = {prefix: {n: rank for rank, n in enumerate(sorted(numbers))} for prefix, numbers in siblings.items()}
    ranked = {}
    for path, parts in parts_of.items():
        ranked[path] = "".join(str(ranks["".join(parts[:i])][int(part)]) if i % 2 else part
                               for i, part in enumerate(parts))
    return ranked


def name_similarity(a, b):
    """0..1: shared word tokens (abbreviations count: proj ~ projection) and agreeing numbers (container indices)."""
    words_a, numbers_a = tokens(a)
    words_b, numbers_b = tokens(b)
    return 0.6 * _word_similarity(words_a, words_b) + 0.4 * _number_similarity(numbers_a, numbers_b)


@functools.lru_cache(maxsize=None)
def _word_similarity(words_a, words_b):
    """Dice coefficient of two word sets, where a word also matches its abbreviation."""
    if not words_a and not words_b:
        return 1.0
    matched_a = sum(any(_same_word(word, other) for other in words_b) for word in words_a)
    matched_b = sum(any(_same_word(word, other) for other in words_a) for word in words_b)
    return (matched_a + matched_b) / (len(words_a) + len(words_b))


@functools.lru_cache(maxsize=None)
def _same_word(a, b):
    """Equal, or the shorter (3+ letters) abbreviates the longer: proj/projection, attn/attention, emb/embed."""
    short, long = sorted((a, b), key=len)
    if short == long:
        return True
    if len(short) < 3 or short[0] != long[0]:
        return False
    letters = iter(long)
    return all(letter in letters for letter in short)  # a subsequence of the longer word


@functools.lru_cache(maxsize=None)
def _number_similarity(numbers_a, numbers_b):
    if numbers_a == numbers_b:
        return 1.0
    return difflib.SequenceMatcher(a=numbers_a, b=numbers_b, autojunk=False).ratio()


def flat_shape(shape):
    """Shape with size-1 dims dropped and trailing dims merged: (o, i, 1, 1), (o, i, k) and (o, i*k) all agree.

    This is how the same numbers look in a 1x1 conv and a dense layer, a Conv1d and MindSpore's 4-D Conv1d
    kernel, a patch-embedding conv and a dense layer, or a (1, n, d) and an (n, d) position table.
    """
    dims = [d for d in shape if d != 1]
    return tuple(dims) if len(dims) < 2 else (dims[0], int(np.prod(dims[1:])))


def orientation(ms_row, torch_row):
    """A transform that turns the torch tensor's layout into the MindSpore one, judged by shape and layer."""
    ms_shape, torch_shape = tuple(ms_row.shape), tuple(torch_row.shape)
    if len(ms_shape) == 2 and ms_shape == torch_shape[::-1] and ms_shape != torch_shape:
        return "transpose(0, 1)"
    # A bare 2-D parameter used as x @ W is stored (in, out); a Dense weight is (out, in). Shape alone cannot
    # tell when the matrix is square, so this rule says so through a lower confidence.
    if len(ms_shape) == 2 and ms_shape == torch_shape and ms_row.layer_type == "Dense" and \
            ms_row.name.endswith(".weight") and torch_row.layer_type not in ("", "Linear") and \
            not torch_row.name.endswith("weight"):
        return "transpose(0, 1)"
    if ms_shape != torch_shape:
        return f"reshape({', '.join(map(str, ms_shape))})"
    return ""


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

    def signature(self, loose=False):
        return tuple(sorted(flat_shape(row.shape) if loose else tuple(row.shape) for row in self.rows))


def _layers(side, names):
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
            layer = groups[group] = Layer(group, [], [], row.layer_type, side.position[row.name])
        layer.rows.append(row)
        layer.leaves.append(leaf)
    ranked = rank_numbers(list(groups))
    children = {}
    for layer in groups.values():
        layer.ranked = ranked[layer.path]
        children.setdefault(layer.path.rpartition(".")[0], []).append(layer.signature(loose=True))
    for layer in groups.values():
        layer.siblings = tuple(children[layer.path.rpartition(".")[0]])
    return list(groups.values())


def _type_family(layer_type):
    name = layer_type.removeprefix("mint.")
    return TYPE_FAMILIES.get(name, name)


def _pair_score(ms_layer, torch_layer):
    similarity = name_similarity(ms_layer.ranked, torch_layer.ranked)
    distance = abs(ms_layer.position - torch_layer.position)
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
    return score, similarity


def _assign_layers(ms_layers, torch_layers, loose):
    """Best one-to-one layer pairing; returns [(ms_layer, torch_layer, similarity, margin)]."""
    if not ms_layers or not torch_layers:
        return []
    scores = np.full((len(ms_layers), len(torch_layers)), -np.inf)
    similarity = np.zeros_like(scores)
    by_signature = {}
    for j, torch_layer in enumerate(torch_layers):
        by_signature.setdefault(torch_layer.signature(loose), []).append(j)
    for i, ms_layer in enumerate(ms_layers):
        for j in by_signature.get(ms_layer.signature(loose), ()):  # only layers of one signature compete
            if ms_layer.piece and torch_layers[j].piece:
                continue  # two fused layers pair whole or not at all
            scores[i, j], similarity[i, j] = _pair_score(ms_layer, torch_layers[j])
    if not np.isfinite(scores).any():
        return []
    chosen = _solve(scores)
    bonus = _follow_bonus(ms_layers, torch_layers, dict(chosen), scores)
    if bonus.any():
        scores = scores + bonus
        chosen = _solve(scores)
    pairs = []
    for i, j in chosen:
        others = np.concatenate([np.delete(scores[i], j), np.delete(scores[:, j], i)])
        others = others[np.isfinite(others)]
        margin = scores[i, j] - others.max() if others.size else 1.0
        pairs.append((ms_layers[i], torch_layers[j], similarity[i, j], margin))
    return pairs


def _solve(scores):
    """The allowed (i, j) pairs of the best assignment of a score matrix (-inf: not allowed)."""
    allowed = np.isfinite(scores)
    rows, cols = linear_sum_assignment(np.where(allowed, -scores, 1e6))
    return [(i, j) for i, j in zip(rows, cols) if allowed[i, j]]


def _follow_bonus(ms_layers, torch_layers, partner, scores):
    """+0.3 where a norm layer's predecessor in its container (the conv it follows) is paired with the
    other norm's predecessor: two BatchNorms of one shape in a block go with their convs, not crosswise."""
    bonus = np.zeros_like(scores)
    torch_after = {}
    for j, before in _norm_predecessors(torch_layers).items():
        torch_after.setdefault(before, []).append(j)
    for i, before in _norm_predecessors(ms_layers).items():
        for j in torch_after.get(partner.get(before), ()):
            if np.isfinite(scores[i, j]):
                bonus[i, j] = 0.3
    return bonus


def _norm_predecessors(layers):
    """Index of each layer of only 1-D tensors (a norm) -> index of the layer declared before it in its parent."""
    predecessors, last = {}, {}
    for index, layer in enumerate(layers):
        if layer.piece:
            continue
        parent = layer.path.rpartition(".")[0]
        if all(len(row.shape) == 1 for row in layer.rows) and parent in last:
            predecessors[index] = last[parent]
        last[parent] = index
    return predecessors


def _pair_tensors(ms_layer, torch_layer, loose):
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


def _structural(ms, torch, matches, used, loose):
    ms_layers = _layers(ms, {row.name for row in ms.rows if row.name not in matches})
    torch_layers = _layers(torch, {row.name for row in torch.rows if row.name not in used})
    pairs = _assign_with_pieces(ms_layers, torch_layers, loose)
    for ms_layer, torch_layer, similarity, margin in pairs:
        if ms_layer.piece or torch_layer.piece:
            continue
        confidence = round(min(0.95, 0.45 + 0.3 * similarity + 0.25 * min(1.0, margin / 0.5)), 2)
        for ms_row, torch_row in _pair_tensors(ms_layer, torch_layer, loose):
            transform = orientation(ms_row, torch_row)
            how = "transform" if transform else "structural"
            matches[ms_row.name] = Match(ms_row.name, torch_row.name, transform, method=how,
                                         confidence=round(confidence * (0.9 if transform else 1.0), 2),
                                         note=f"layer {ms_layer.path or '(top)'} ~ {torch_layer.path or '(top)'}")
            used.add(torch_row.name)
    for group in _piece_groups(pairs).values():
        _record_fused(group, matches, used)


# --- fused projections (one qkv tensor on one side, q, k, v on the other) -----------------------------------
# A fused layer also enters the assignment as its pieces, each a layer of its own, so that q, k and v compete
# with every other layer of their signature at once. Its pieces count only when all of them pair with
# sibling layers of one parent on the other side; otherwise the assignment runs again without them.

FUSED = {"qkv": ("q", "k", "v"), "kv": ("k", "v"), "in_proj": ("q", "k", "v"), "c_attn": ("q", "k", "v"),
         "query_key_value": ("q", "k", "v")}
PART_WORDS = {"q": ("q", "query"), "k": ("k", "key"), "v": ("v", "value")}


def _fused_parts(layer):
    """The parts a layer's name says it fuses ('blocks.0.attn.qkv' -> q, k, v), or ()."""
    word = layer.path.rpartition(".")[2].lower()
    return next((parts for fused, parts in FUSED.items() if word.endswith(fused) or word.startswith(fused + "_")), ())


def _split_dims(layer, count):
    """Row name -> the dim its tensor splits along (0, or 1 for an (in, out) matrix), or None if it cannot."""
    sizes = {row.shape[0] for row in layer.rows if len(row.shape) == 1}
    out_size = sizes.pop() if len(sizes) == 1 else None
    dims = {}
    for row in layer.rows:
        shape = tuple(row.shape)
        if shape and shape[0] % count == 0 and out_size in (None, shape[0]):
            dims[row.name] = 0
        elif len(shape) == 2 and shape[1] % count == 0 and out_size in (None, shape[1]):
            dims[row.name] = 1
        else:
            return None
    return dims


def _piece_shape(shape, count, dim):
    """A piece's shape, an (in, out) matrix's piece given as (out, in) like the layers it competes with."""
    if dim == 1:
        return (shape[1] // count, shape[0])
    return (shape[0] // count,) + tuple(shape[1:])


def _pieces(layer):
    parts = _fused_parts(layer)
    dims = _split_dims(layer, len(parts)) if parts and not layer.piece else None
    if not dims:
        return []
    count = len(parts)
    return [Layer(f"{layer.path}.{part}", [replace(row, shape=_piece_shape(row.shape, count, dims[row.name]))
                                           for row in layer.rows],
                  list(layer.leaves), layer.layer_type, layer.position + index * 1e-6,
                  f"{layer.ranked}.{part}", (layer, index, count, dims))
            for index, part in enumerate(parts)]


def _piece_groups(pairs):
    """Fused layer path -> [(piece layer, partner layer)] for the pieces the assignment paired."""
    groups = {}
    for ms_layer, torch_layer, _, _ in pairs:
        piece_layer, partner = (ms_layer, torch_layer) if ms_layer.piece else (torch_layer, ms_layer)
        if piece_layer.piece:
            groups.setdefault(id(piece_layer.piece[0]), []).append((piece_layer, partner, ms_layer is piece_layer))
    return groups


def _broken_groups(pairs):
    """Fused layers whose pieces do not all pair with siblings, or that also paired whole."""
    whole = {id(layer) for ms_layer, torch_layer, _, _ in pairs for layer in (ms_layer, torch_layer)}
    broken = set()
    for key, group in _piece_groups(pairs).items():
        count = group[0][0].piece[2]
        parents = {partner.path.rpartition(".")[0] for _, partner, _ in group}
        if key in whole or len(group) != count or len(parents) != 1:
            broken.add(key)
    return broken


def _assign_with_pieces(ms_layers, torch_layers, loose):
    """The layer assignment, with fused layers' pieces as candidates where they pair as a whole."""
    if loose:
        return _assign_layers(ms_layers, torch_layers, loose)
    excluded = set()
    while True:
        ms_all = ms_layers + [p for layer in ms_layers if id(layer) not in excluded for p in _pieces(layer)]
        torch_all = torch_layers + [p for layer in torch_layers if id(layer) not in excluded for p in _pieces(layer)]
        pairs = _assign_layers(ms_all, torch_all, loose)
        broken = _broken_groups(pairs) - excluded
        if not broken:
            return pairs  # excluded layers entered without pieces, so every piece here is of a whole group
        excluded |= broken


def _ordered_partners(group):
    """The partner layers in piece order: by their q/k/v words where every one has one, else as declared."""
    parts = _fused_parts(group[0][0].piece[0])
    partners = [partner for _, partner, _ in group]
    by_word = {part: [p for p in partners if _part_of(p.path + ".w", part)] for part in parts}
    if all(len(found) == 1 for found in by_word.values()) and \
            len({id(found[0]) for found in by_word.values()}) == len(parts):
        return [by_word[part][0] for part in parts]
    return sorted(partners, key=lambda partner: partner.position)


def _record_fused(group, matches, used):
    fused, _, count, dims = group[0][0].piece
    pieces = sorted((piece for piece, _, _ in group), key=lambda piece: piece.piece[1])
    partners = _ordered_partners(group)
    ms_is_fused = group[0][2]
    if ms_is_fused:
        # One MindSpore parameter from several PyTorch tensors: cat(0) of the partners' tensors, in order.
        sources = {}
        for piece, partner in zip(pieces, partners):
            for ms_row, torch_row in _pair_tensors(piece, partner, False):
                sources.setdefault(ms_row.name, []).append(torch_row.name)
        for name, torch_names in sources.items():
            if len(torch_names) != count:
                continue
            transform = "cat(0)" + (" | transpose(0, 1)" if dims[name] == 1 else "")
            matches[name] = Match(name, torch_names, transform, method="transform", confidence=0.8,
                                  note=f"separate projections joined into {fused.path}")
            used.update(torch_names)
        return
    # One PyTorch tensor into several MindSpore parameters: piece i of the fused tensor each.
    for index, (piece, partner) in enumerate(zip(pieces, partners)):
        for ms_row, torch_row in _pair_tensors(partner, piece, False):
            turn = "transpose(0, 1) | " if dims[torch_row.name] == 1 else ""
            matches[ms_row.name] = Match(ms_row.name, torch_row.name, f"{turn}chunk({count}, 0, {index})",
                                         method="transform", confidence=0.8,
                                         note=f"piece {index} of fused {torch_row.name}")
            used.add(torch_row.name)


def _part_of(path, part):
    """Whether the layer owning `path` is the q, k or v projection ('query_layer', 'q_proj', 'to_q', 'wq')."""
    layer = path.rpartition(".")[0].rpartition(".")[2].lower()
    words = layer.split("_")
    return any(word in PART_WORDS[part] or word == "w" + part for word in words)


# --- pass 4: leftovers -----------------------------------------------------------------------------------

def _joined(ms, torch, matches, used):
    """A MindSpore layer as tall as a run of sibling PyTorch layers stacked (w_qkv with GQA's unequal q, k, v;
    w_gate_hidden = gate and up): cat(0) of that run, in declaration order, where exactly one run fits best."""
    runs = _sibling_runs(_layers(torch, {row.name for row in torch.rows if row.name not in used}))
    for ms_layer in _layers(ms, {row.name for row in ms.rows if row.name not in matches}):
        shapes = {leaf: tuple(row.shape) for leaf, row in zip(ms_layer.leaves, ms_layer.rows)}
        if not set(shapes) <= LAYER_LEAVES or not all(shapes.values()):
            continue
        fits = [(name_similarity(ms_layer.ranked.rpartition(".")[0], run[0].ranked.rpartition(".")[0]), run)
                for run in runs if _stacks_into(run, shapes)]
        fits.sort(key=lambda fit: -fit[0])
        if not fits or (len(fits) > 1 and fits[1][0] == fits[0][0]):
            continue  # nothing fits, or two runs fit equally well
        run = fits[0][1]
        if any(row.name in used for layer in run for row in layer.rows):
            continue
        for leaf, row in zip(ms_layer.leaves, ms_layer.rows):
            names = [layer.rows[layer.leaves.index(leaf)].name for layer in run]
            matches[row.name] = Match(row.name, names, "cat(0)", method="transform", confidence=0.7,
                                      note=f"sibling layers {', '.join(layer.path for layer in run)} joined")
            used.update(names)


def _sibling_runs(layers):
    """Every run of two or more consecutive sibling layers (same parent, in declaration order)."""
    by_parent = {}
    for layer in sorted(layers, key=lambda layer: layer.position):
        if set(layer.leaves) <= LAYER_LEAVES:
            by_parent.setdefault(layer.path.rpartition(".")[0], []).append(layer)
    return [group[start:stop] for group in by_parent.values()
            for start in range(len(group)) for stop in range(start + 2, len(group) + 1)]


def _stacks_into(run, shapes):
    """Whether the run's tensors, stacked along dim 0 leaf by leaf, have exactly `shapes`."""
    if any(sorted(layer.leaves) != sorted(shapes) for layer in run):
        return False
    for leaf, target in shapes.items():
        parts = [tuple(layer.rows[layer.leaves.index(leaf)].shape) for layer in run]
        if any(len(part) != len(target) or part[1:] != target[1:] for part in parts) or \
                sum(part[0] for part in parts) != target[0]:
            return False
    return True


def _leftovers(ms, torch, matches, used):
    for row in ms.rows:
        if row.name in matches:
            continue
        shapes = {tuple(row.shape), tuple(row.shape)[::-1]}
        free = [t for t in torch.rows if t.name not in used and tuple(t.shape) in shapes]
        rivals = [r for r in ms.rows if r.name not in matches and tuple(r.shape) in shapes]
        if len(free) == 1 and len(rivals) == 1:
            similarity = name_similarity(ms.key[row.name], torch.key[free[0].name])
            matches[row.name] = Match(row.name, free[0].name, orientation(row, free[0]), method="order",
                                      confidence=round(0.3 + 0.3 * similarity, 2),
                                      note="the only unpaired tensor of this shape on both sides")
            used.add(free[0].name)
    # What is still unpaired may be fed by a tensor already in use (tied or shared weights): a layer whose
    # whole signature equals a used torch layer's, or a single tensor whose name says so.
    taken = {row.name for row in torch.rows if row.name in used}
    ms_left = {row.name for row in ms.rows if row.name not in matches}
    for ms_layer, torch_layer, similarity, _ in _assign_layers(_layers(ms, ms_left), _layers(torch, taken), False):
        if len(ms_layer.rows) > 1 or similarity >= 0.7:
            for ms_row, torch_row in _pair_tensors(ms_layer, torch_layer, False):
                matches[ms_row.name] = Match(ms_row.name, torch_row.name, tied=True, method="order", confidence=0.4,
                                             note=f"tied: {torch_row.name} already feeds another parameter")


def match(ms_rows, torch_rows):
    """Suggest a Match for every MindSpore row (ignored rows excluded by the caller)."""
    ms, torch = _prepare(ms_rows, ms_side=True), _prepare(torch_rows, ms_side=False)
    matches, used = {}, set()
    _exact(ms, torch, matches, used)
    _structural(ms, torch, matches, used, loose=False)
    _structural(ms, torch, matches, used, loose=True)
    _joined(ms, torch, matches, used)
    _leftovers(ms, torch, matches, used)
    tied_sources = {}
    for item in matches.values():
        if isinstance(item.torch, str) and not transforms.takes_a_piece(transforms.parse(item.transform)):
            tied_sources.setdefault(item.torch, []).append(item)
    for group in tied_sources.values():
        if len(group) > 1:
            for item in group:
                item.tied = True
    return [matches.get(row.name) or Match(row.name, None, note="no PyTorch tensor fits") for row in ms_rows]
