"""Megatron / mcore role words: layers named for the role they play (mindformers' parallel_core ports such as
Qwen3 and its MoE, Megatron-Bridge), paired with Hugging Face's (and Meta LLaMA's) names from the role alone.

Such ports need Ascend kernels, so the probe usually cannot run them on a CPU, and their shapes mislead: with
q_proj and o_proj of one shape, names and shapes alone paired `linear_proj <- q_proj`. Here the role words
decide, within one block (the same container indices on both sides), before the structural pass runs.
The tables are data: a new port's words go in them, not in code.
"""

import re

from pt2ms.mapping.match_layers import Match, layers_of, pair_tensors
from pt2ms.mapping.match_names import orientation

# Megatron layer word -> the PyTorch layer words of the same role. Torch names are read after match_names'
# short-role renames (wq -> q, w1 -> gate, w2 -> down, w3 -> up), so those forms are listed too.
MEGATRON_LAYERS = {
    "linear_proj": ("o_proj", "out_proj", "wo", "o"),            # the OUTPUT projection, not a q/k/v one
    "linear_fc2": ("down_proj", "w2", "down"),
    "word_embeddings": ("embed_tokens", "tok_embeddings", "wte", "word_embeddings"),
    "output_layer": ("lm_head", "output", "output_layer"),
    "q_layernorm": ("q_norm", "q_layernorm"),
    "k_layernorm": ("k_norm", "k_layernorm"),
    "input_layernorm": ("input_layernorm", "attention_norm"),
    "pre_mlp_layernorm": ("post_attention_layernorm", "ffn_norm", "pre_mlp_layernorm"),
    "final_layernorm": ("norm", "final_layernorm", "final_norm", "ln_f"),
    "final_norm": ("norm", "final_layernorm", "final_norm", "ln_f"),
}
# Fused Megatron layers: the PyTorch layers they join, in row order, and how mindformers lays out their rows
# (facts.md): linear_qkv per key/value group [q heads of group 0, k_0, v_0, ...]; linear_fc1 row by row
# [gate_0, up_0, gate_1, ...].
MEGATRON_JOINED = {
    "linear_qkv": ((("q_proj", "wq", "q"), ("k_proj", "wk", "k"), ("v_proj", "wv", "v")), "kv_groups"),
    "linear_fc1": ((("gate_proj", "w1", "gate"), ("up_proj", "w3", "up")), "rows"),
}
# Per-head norms beside a linear_qkv (on either side): their size is the head dimension.
HEAD_DIM_LAYERS = ("q_layernorm", "k_layernorm", "q_norm", "k_norm")

ROLE_CONFIDENCE = 0.95      # one-to-one: the role words of both sides agree, in the same block
LAYOUT_CONFIDENCE = 0.9     # joined: the role words give the pieces, the port's documented layout their rows
UNKNOWN_GROUPS = 0.5        # joined q, k, v whose key/value group count nothing here tells


def _word(layer):
    return layer.path.rpartition(".")[2]


def _place(layer):
    """The container indices of a layer (ranked among siblings): decoder.layers.3.x -> (3,). Digits inside a
    word (linear_fc1) are no index."""
    return tuple(int(n) for n in re.findall(r"(?:^|\.)(\d+)(?=\.|$)", layer.ranked))


def _partner(layers, words, place, parent=None):
    """The one layer whose word is one of `words` at `place` (and under `parent` when given), or None."""
    found = [layer for layer in layers if _word(layer) in words and _place(layer) == place
             and (parent is None or layer.path.rpartition(".")[0] == parent)]
    return found[0] if len(found) == 1 else None


def match_roles(ms, torch, matches, used):
    """Pair Megatron-named MindSpore layers with the PyTorch layers of the same role (method "role")."""
    ms_layers = layers_of(ms, {row.name for row in ms.rows if row.name not in matches})
    if not any(_word(layer) in MEGATRON_LAYERS or _word(layer) in MEGATRON_JOINED for layer in ms_layers):
        return
    torch_layers = layers_of(torch, {row.name for row in torch.rows if row.name not in used})
    torch_rows = {row.name: row for row in torch.rows}
    for ms_layer in ms_layers:
        word = _word(ms_layer)
        if word in MEGATRON_LAYERS:
            _one_to_one(ms_layer, _partner(torch_layers, MEGATRON_LAYERS[word], _place(ms_layer)),
                        torch_rows, matches, used)
        elif word in MEGATRON_JOINED:
            _joined(ms_layer, ms_layers, torch_layers, matches, used)


def _one_to_one(ms_layer, torch_layer, torch_rows, matches, used):
    if torch_layer is None or len(torch_layer.rows) != len(ms_layer.rows):
        return
    pairs = pair_tensors(ms_layer, torch_layer, False)
    if len(pairs) != len(ms_layer.rows) or any(torch_row.name in used for _, torch_row in pairs):
        return
    for ms_row, torch_row in pairs:
        transform = orientation(ms_row, torch_rows[torch_row.name])
        matches[ms_row.name] = Match(ms_row.name, torch_row.name, transform, method="role",
                                     confidence=ROLE_CONFIDENCE,
                                     note=f"role words: {_word(ms_layer)} is {_word(torch_layer)} "
                                          f"({ms_layer.path} ~ {torch_layer.path})")
        used.add(torch_row.name)


def _joined(ms_layer, ms_layers, torch_layers, matches, used):
    parts, layout = MEGATRON_JOINED[_word(ms_layer)]
    first = _partner(torch_layers, parts[0], _place(ms_layer))
    if first is None:
        return
    parent = first.path.rpartition(".")[0]
    run = [_partner(torch_layers, words, _place(ms_layer), parent) for words in parts]
    if None in run or any(sorted(layer.leaves) != sorted(ms_layer.leaves) for layer in run) \
            or any(layer.flipped for layer in run) or ms_layer.flipped:
        return
    sources = {}
    for leaf, ms_row in zip(ms_layer.leaves, ms_layer.rows):
        rows = [layer.rows[layer.leaves.index(leaf)] for layer in run]
        shapes = [tuple(row.shape) for row in rows]
        if any(shape[1:] != tuple(ms_row.shape)[1:] for shape in shapes) or \
                sum(shape[0] for shape in shapes) != ms_row.shape[0] or any(row.name in used for row in rows):
            return
        sources[ms_row.name] = [row.name for row in rows]
    sizes = [tuple(layer.rows[0].shape)[0] for layer in run]
    groups, why = _groups(layout, sizes, ms_layer, ms_layers, torch_layers, parent)
    transform = "cat(0)" + (f" | interleave({groups}, 0, {', '.join(map(str, sizes))})" if groups and groups > 1 else "")
    confidence = LAYOUT_CONFIDENCE if groups else UNKNOWN_GROUPS
    for ms_name, names in sources.items():
        matches[ms_name] = Match(ms_name, names, transform, method="role", confidence=confidence,
                                 note=f"role words: {_word(ms_layer)} joins {', '.join(_word(layer) for layer in run)}; {why}")
        used.update(names)


def _groups(layout, sizes, ms_layer, ms_layers, torch_layers, torch_parent):
    """(interleave group count or None, why) for a joined Megatron layer's rows."""
    if layout == "rows":
        if len(set(sizes)) == 1:
            return sizes[0], "rows alternate piece by piece (mindformers' layout)"
        return None, "pieces of unequal height cannot alternate row by row: layout unknown"
    ms_parent = ms_layer.path.rpartition(".")[0]
    for layers, parent in ((ms_layers, ms_parent), (torch_layers, torch_parent)):
        for layer in layers:
            if _word(layer) in HEAD_DIM_LAYERS and layer.path.rpartition(".")[0] == parent \
                    and _place(layer) == _place(ms_layer) and len(layer.rows[0].shape) == 1:
                head_dim = layer.rows[0].shape[0]
                if head_dim and all(size % head_dim == 0 for size in sizes) and sizes[1] == sizes[2]:
                    return sizes[1] // head_dim, (f"interleaved per key/value group (mindformers' layout): "
                                                  f"{sizes[1] // head_dim} groups of head_dim {head_dim}, read "
                                                  f"from {layer.path}")
    return None, ("the key/value group count is unknown (no per-head norm tells head_dim): rows left stacked; "
                  "the probe or a hand edit must set interleave(groups, 0, ...)")
