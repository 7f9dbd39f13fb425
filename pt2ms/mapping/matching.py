"""Guessing which PyTorch tensor feeds each MindSpore parameter, from names, shapes, layer types and order.

Passes, most certain first; each claims tensors the later ones no longer see:
  1. exact      same name after wrapper prefixes are dropped and MindSpore's leaf names are translated
                (match_names.RENAMES, applied by owning layer, never as a blanket rule)
  1b. role     Megatron / mcore layer words (linear_qkv, linear_proj = the output projection, linear_fc1/2,
                word_embeddings, output_layer, q/k_layernorm, pre_mlp_layernorm) paired with the PyTorch layers
                of the same role in the same block (match_roles.MEGATRON_LAYERS, MEGATRON_JOINED)
  1c. experts  Mixture-of-Experts tensors stacked into one MindSpore tensor (mindformers' experts.weight1/2),
                from per-expert or fused PyTorch tensors; their router; counters with no source
                (match_experts.GROUPED, ROUTERS, NO_SOURCE)
  2. structural layers matched by shape signature and geometry (stride, dilation, groups), name-token
                similarity, position in the models' execution order (then declaration order; file order
                only without a model), the n-th of a kind with the n-th, and the shape of their parent
                container, solved as an assignment problem per signature (so ties are broken by
                structure, not by luck); tensors are then paired inside each matched layer. Fused
                projections (qkv) also compete as their pieces, so q, k, v pair with them in the same step
  3. loose      the structural pass again with size-1 dims dropped (1x1 conv vs dense, Conv1d's 4-D kernel)
  4. joined     a MindSpore layer as tall as a run of sibling PyTorch layers stacked: cat(0) of them
  5. order      what is left, paired by unique shape, or tied to a tensor already used when names agree
Anything still unpaired is left null (kept at its initial value) and reported.

Modules: match_names (names and tokens), match_layers (layer grouping and assignment), match_fused (fused
pieces and joined runs), match_roles (Megatron role words), match_experts (MoE experts); this one runs the passes.
"""

from pt2ms.mapping import transforms
from pt2ms.mapping.match_experts import match_experts
from pt2ms.mapping.match_fused import assign_with_pieces, holds_several, join_runs, piece_groups, record_fused
from pt2ms.mapping.match_layers import Match, Side, assign_layers, layers_of, order_keys, pair_tensors, prepare
from pt2ms.mapping.match_names import (  # noqa: F401
    flat_shape,
    ignored_reason,
    name_similarity,
    orientation,
    rank_numbers,
    strip_wrappers,
)
from pt2ms.mapping.match_roles import match_roles

# The score gap to the next best partner above which a pairing both models' execution order agree on is
# reported as sure (>= 0.9); calibrated on every test pair (README, "How sure is sure").
SURE_MARGIN = 0.5

__all__ = ["Match", "Side", "match", "ignored_reason", "flat_shape", "name_similarity", "rank_numbers"]


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


FUSED_LAYOUT_CONFIDENCE = 0.7


def _structural(ms, torch, matches, used, loose):
    ms_layers = layers_of(ms, {row.name for row in ms.rows if row.name not in matches})
    torch_layers = layers_of(torch, {row.name for row in torch.rows if row.name not in used})
    pairs = assign_with_pieces(ms_layers, torch_layers, loose)
    for ms_layer, torch_layer, similarity, margin in pairs:
        if ms_layer.piece or torch_layer.piece:
            continue
        confidence = round(min(0.95, 0.45 + 0.3 * similarity + 0.25 * min(1.0, margin / 0.5)), 2)
        # Sure only where order, names and position agree: counting in execution order (agreed) picked this
        # partner, and without the count it is still the best (margin > 0). A count that overrules the names
        # (BiT's shortcut conv, run first in timm and last in MindCV, of one shape with the last conv) is not sure.
        if ms_layer.agreed and ms_layer.agreed_margin >= SURE_MARGIN and margin > 0:
            confidence = max(confidence, round(0.9 + 0.05 * min(1.0, ms_layer.agreed_margin / 2.0), 2))
        layout = holds_several(ms_layer) and holds_several(torch_layer)
        if layout:
            confidence = min(confidence, FUSED_LAYOUT_CONFIDENCE)
        for ms_row, torch_row in pair_tensors(ms_layer, torch_layer, loose):
            transform = orientation(ms_row, torch_row)
            how = "transform" if transform else "structural"
            matches[ms_row.name] = Match(ms_row.name, torch_row.name, transform, method=how,
                                         confidence=round(confidence * (0.9 if transform else 1.0), 2),
                                         note=f"layer {ms_layer.path or '(top)'} ~ {torch_layer.path or '(top)'}"
                                              + ("; both fuse several projections: their row layout (stacked or "
                                                 "interleaved) is unchecked" if layout else ""))
            used.add(torch_row.name)
    for group in piece_groups(pairs).values():
        record_fused(group, matches, used)


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
    for ms_layer, torch_layer, similarity, _ in assign_layers(layers_of(ms, ms_left), layers_of(torch, taken), False):
        if len(ms_layer.rows) > 1 or similarity >= 0.7:
            for ms_row, torch_row in pair_tensors(ms_layer, torch_layer, False):
                matches[ms_row.name] = Match(ms_row.name, torch_row.name, tied=True, method="order", confidence=0.4,
                                             note=f"tied: {torch_row.name} already feeds another parameter")


POSITION_SOURCES = {
    "execution": "the order its layers ran in (stage 1 ran the model on the [verify] inputs)",
    "definition": "the order its layers are declared in (no [verify] inputs, or the forward pass failed)",
    "file": "the checkpoint's key order, which may be alphabetical (no model given): positions are a guess",
}
FILE_ORDER_NOTE = "position from file order, no model order"


def position_note(ms_rows, torch_rows):
    """Where the matcher took each side's layer positions from, in words (the map's top-level "position")."""
    return {side: POSITION_SOURCES[order_keys(rows)[1]] for side, rows in (("torch", torch_rows),
                                                                          ("mindspore", ms_rows))}


def _file_order_doubts(matches):
    """Without a model's order on a side, what position decided is less sure, and says so."""
    for item in matches.values():
        if item.method in ("structural", "transform", "order"):
            item.confidence = round(item.confidence * 0.9, 2)
            item.note = f"{item.note}; {FILE_ORDER_NOTE}" if item.note else FILE_ORDER_NOTE


def match(ms_rows, torch_rows):
    """Suggest a Match for every MindSpore row (ignored rows excluded by the caller)."""
    ms, torch = prepare(ms_rows, ms_side=True), prepare(torch_rows, ms_side=False)
    matches, used = {}, set()
    _exact(ms, torch, matches, used)
    match_roles(ms, torch, matches, used)
    match_experts(ms, torch, matches, used)
    _structural(ms, torch, matches, used, loose=False)
    _structural(ms, torch, matches, used, loose=True)
    join_runs(ms, torch, matches, used)
    _leftovers(ms, torch, matches, used)
    tied_sources = {}
    for item in matches.values():
        if isinstance(item.torch, str) and not transforms.takes_a_piece(transforms.parse(item.transform)):
            tied_sources.setdefault(item.torch, []).append(item)
    for group in tied_sources.values():
        if len(group) > 1:
            for item in group:
                item.tied = True
    if "file" in (ms.order, torch.order):
        _file_order_doubts(matches)
    return [matches.get(row.name) or Match(row.name, None, note="no PyTorch tensor fits") for row in ms_rows]
