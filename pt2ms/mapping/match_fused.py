"""Fused and joined layers: one qkv tensor on one side against q, k, v on the other (pieces that compete in the
layer assignment, chunk or cat entries), and a tall MindSpore layer fed by a run of sibling PyTorch layers."""

from dataclasses import replace

from pt2ms.mapping.match_layers import LAYER_LEAVES, Layer, Match, assign_layers, layers_of, pair_tensors
from pt2ms.mapping.match_names import name_similarity, stored_in_out

# --- fused projections (one qkv tensor on one side, q, k, v on the other) -----------------------------------
# A fused layer also enters the assignment as its pieces, each a layer of its own, so that q, k and v compete
# with every other layer of their signature at once. Its pieces count only when all of them pair with
# sibling layers of one parent on the other side; otherwise the assignment runs again without them.

FUSED = {"qkv": ("q", "k", "v"), "kv": ("k", "v"), "qk": ("q", "k"), "in_proj": ("q", "k", "v"), "c_attn": ("q", "k", "v"),
         "query_key_value": ("q", "k", "v")}
PART_WORDS = {"q": ("q", "query"), "k": ("k", "key"), "v": ("v", "value")}
# Layer names that say one matrix holds several projections. Two such layers can pair whole, yet their rows
# may be stacked on one side and interleaved on the other (mindformers 2.x's w_qkv, w_gate_hidden): only a
# numeric check can tell, so such a pairing is never reported as sure.
FUSED_WORDS = ("qkv", "kv_proj", "in_proj", "c_attn", "query_key_value", "gate_up", "gate_hidden", "linear_fc1",
               "linear_qkv", "w13")


def holds_several(layer):
    """Whether a layer's name says it fuses several projections into one matrix."""
    word = layer.path.rpartition(".")[2].lower()
    return bool(_fused_parts(layer)) or any(fused in word for fused in FUSED_WORDS)


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
    stored = layer
    if layer.flipped:  # split as stored: an (in, 3*out) matrix splits along dim 1 and says so in its transform
        stored = replace(layer, rows=[replace(row, shape=tuple(row.shape)[::-1]) if stored_in_out(row) else row
                                      for row in layer.rows], flipped=False)
    parts = _fused_parts(layer)
    dims = _split_dims(stored, len(parts)) if parts and not layer.piece else None
    if not dims:
        return []
    count = len(parts)
    return [Layer(f"{layer.path}.{part}", [replace(row, shape=_piece_shape(row.shape, count, dims[row.name]))
                                           for row in stored.rows],
                  list(layer.leaves), layer.layer_type, layer.position + index * 1e-6,
                  f"{layer.ranked}.{part}", (layer, index, count, dims), declared=layer.declared,
                  ordered=layer.ordered)
            for index, part in enumerate(parts)]


def piece_groups(pairs):
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
    for key, group in piece_groups(pairs).items():
        count = group[0][0].piece[2]
        parents = {partner.path.rpartition(".")[0] for _, partner, _ in group}
        if key in whole or len(group) != count or len(parents) != 1:
            broken.add(key)
    return broken


def assign_with_pieces(ms_layers, torch_layers, loose):
    """The layer assignment, with fused layers' pieces as candidates where they pair as a whole."""
    if loose:
        return assign_layers(ms_layers, torch_layers, loose)
    excluded = set()
    while True:
        ms_all = ms_layers + [p for layer in ms_layers if id(layer) not in excluded for p in _pieces(layer)]
        torch_all = torch_layers + [p for layer in torch_layers if id(layer) not in excluded for p in _pieces(layer)]
        pairs = assign_layers(ms_all, torch_all, loose)
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


def record_fused(group, matches, used):
    fused, _, count, dims = group[0][0].piece
    pieces = sorted((piece for piece, _, _ in group), key=lambda piece: piece.piece[1])
    partners = _ordered_partners(group)
    ms_is_fused = group[0][2]
    if ms_is_fused:
        # One MindSpore parameter from several PyTorch tensors: cat(0) of the partners' tensors, in order.
        sources = {}
        for piece, partner in zip(pieces, partners):
            for ms_row, torch_row in pair_tensors(piece, partner, False):
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
        for ms_row, torch_row in pair_tensors(partner, piece, False):
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

def join_runs(ms, torch, matches, used):
    """A MindSpore layer as tall as a run of sibling PyTorch layers stacked (w_qkv with GQA's unequal q, k, v;
    w_gate_hidden = gate and up): cat(0) of that run, in model order (q, k, v by their words), where exactly
    one run fits best."""
    runs = _sibling_runs(layers_of(torch, {row.name for row in torch.rows if row.name not in used}))
    for ms_layer in layers_of(ms, {row.name for row in ms.rows if row.name not in matches}):
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
    """Every run of two or more consecutive sibling layers (same parent, in model order); a run of q, k, v
    projections in the order their words give (q, k, v), whatever order the file or declaration has."""
    by_parent = {}
    for layer in sorted(layers, key=lambda layer: layer.position):
        if set(layer.leaves) <= LAYER_LEAVES:
            by_parent.setdefault(layer.path.rpartition(".")[0], []).append(layer)
    runs, seen = [], set()
    for group in by_parent.values():
        consecutive = [group[start:stop] for start in range(len(group)) for stop in range(start + 2, len(group) + 1)]
        for run in _role_runs(group) + consecutive:
            ordered = _by_role(run)
            key = frozenset(id(layer) for layer in ordered)
            if key not in seen:
                seen.add(key)
                runs.append(ordered)
    return runs


def _role(layer):
    return next((part for part in ("q", "k", "v") if _part_of(layer.path + ".w", part)), None)


def _role_runs(group):
    """The q, k, v run and the k, v run among one parent's layers, by their words, if each is there once."""
    roles = {}
    for layer in group:
        role = _role(layer)
        if role:
            roles.setdefault(role, []).append(layer)
    if any(len(found) != 1 for found in roles.values()):
        return []
    return [[roles[part][0] for part in parts] for parts in (("q", "k", "v"), ("k", "v")) if set(parts) <= set(roles)]


def _by_role(run):
    """A run whose layers are q, k, v projections (each once) in q, k, v order; any other run unchanged."""
    roles = [_role(layer) for layer in run]
    if None in roles or len(set(roles)) != len(roles):
        return run
    return sorted(run, key=lambda layer: "qkv".index(_role(layer)))


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

