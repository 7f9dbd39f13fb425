"""Names as the matcher reads them: wrapper prefixes, MindSpore leaf renames by layer type, word tokens and
their abbreviations, container indices ranked among siblings, and shapes with size-1 dims dropped."""

import difflib
import functools
import json
import re

import numpy as np

from pt2ms.formats.inventory import WRAPPER_PREFIXES

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

# PyTorch tensors a model does not register as weights: counters and buffers computed from the config. Older
# transformers saved some that newer ones no longer register (`embeddings.position_ids`); its from_pretrained
# skips them on load, and so does the map. (pattern, dtypes it covers or None for any, reason)
TORCH_IGNORED = [
    (re.compile(r"(^|\.)num_batches_tracked$"), None, "BatchNorm step counter: MindSpore has no counterpart"),
    (re.compile(r"(^|\.)position_ids$"), ("int64", "int32"),
     "position-index buffer (0, 1, 2, ...) older transformers saved: the model does not register it"),
    (re.compile(r"(^|\.)inv_freq$"), None,
     "rotary inv_freq buffer: computed from the config, the model does not register it as a weight"),
]
# Optimizer state that a template saved from a training wrapper carries: per-parameter slots mirror a
# parameter's name behind one of these prefixes; the scalars have fixed names.
OPTIMIZER_SLOTS = ("moments.", "moment1.", "moment2.", "adam_m.", "adam_v.", "accum.", "mean_grad.",
                   "mean_square.", "momentum.", "vhat.", "moment3.")
OPTIMIZER_SCALARS = {"global_step", "learning_rate", "beta1_power", "beta2_power", "current_iterator_step",
                     "epoch_num", "step_num", "scale_sense", "loss_scale", "last_overflow_iterator_step"}
LAYER_LEAVES = {"weight", "bias", "running_mean", "running_var"}
TYPE_FAMILIES = {"Dense": "Linear", "Conv2dTranspose": "ConvTranspose2d", "Conv1dTranspose": "ConvTranspose1d",
                 "EmbeddingLookup": "Embedding"}


def ignored_reason(row, ms_names, ms_side):
    """Why a tensor takes no part in the map (num_batches_tracked, position_ids, optimizer state), or ""."""
    if not ms_side:
        return next((reason for pattern, dtypes, reason in TORCH_IGNORED
                     if pattern.search(row.name) and (dtypes is None or row.dtype in dtypes)), "")
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


@functools.lru_cache(maxsize=None)
def settings_of(text):
    """A settings_text string as a dict ({} for "")."""
    return json.loads(text) if text else {}


def stored_in_out(row):
    """Whether a 2-D weight is stored (in, out), as its layer's settings say (transpose_b=False, HF Conv1D)."""
    return len(row.shape) == 2 and settings_of(getattr(row, "settings", "")).get("weight_layout") == "in_out"


def orientation(ms_row, torch_row):
    """A transform that turns the torch tensor's layout into the MindSpore one, judged by shape and layer."""
    ms_shape, torch_shape = tuple(ms_row.shape), tuple(torch_row.shape)
    if len(ms_shape) == 2 and len(torch_shape) == 2 and (stored_in_out(ms_row) or stored_in_out(torch_row)):
        # The layers' settings say what a square matrix's shape cannot.
        return "transpose(0, 1)" if stored_in_out(ms_row) != stored_in_out(torch_row) else ""
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



# Short role names, read as the words they stand for where one container holds the whole set: mindformers'
# attention.wq/wk/wv/wo, and LLaMA's feed_forward.w1/w2/w3 where w1 and w3 share a shape and w2 has it
# transposed (w1 the gate, w3 the up projection, w2 the down projection).
ROLE_NAMES = [
    ({"wq": "q", "wk": "k", "wv": "v", "wo": "o"}, {"wq", "wk", "wv"}),
    ({"w1": "gate", "w2": "down", "w3": "up"}, {"w1", "w2", "w3"}),
]


def _roles_fit(names, shapes):
    if names != {"w1", "w2", "w3"}:
        return True
    w1, w2, w3 = (shapes.get(name) for name in ("w1", "w2", "w3"))
    return w1 is not None and w1 == w3 and w2 == tuple(w1)[::-1]


def read_role_names(keys, shapes):
    """keys (name -> normalised path) with short role names spelled out where a container holds a whole set.

    `shapes`: layer path -> its weight's shape."""
    children = {}
    for path in shapes:
        parent, _, child = path.rpartition(".")
        children.setdefault(parent, {})[child] = shapes[path]
    renamed = {}
    for parent, found in children.items():
        for words, required in ROLE_NAMES:
            if required <= set(found) and _roles_fit(required, found):
                for short, word in words.items():
                    if short in found:
                        renamed[f"{parent}.{short}" if parent else short] = f"{parent}.{word}" if parent else word
    if not renamed:
        return keys
    result = {}
    for name, path in keys.items():
        layer, _, leaf = path.rpartition(".")
        result[name] = f"{renamed[layer]}.{leaf}" if layer in renamed else path
    return result


# Words that name a layer's role; two layers that both name one pair only if it is the same role (q_proj with
# wq, read as q above, not with wk), whatever order the file or the declarations put them in.
ROLE_WORDS = {"q": "q", "query": "q", "k": "k", "key": "k", "v": "v", "value": "v",
              "gate": "gate", "up": "up", "down": "down"}


@functools.lru_cache(maxsize=None)
def role(layer_path):
    """The role the last part of a layer path names ('self_attn.q_proj' -> 'q'), or None (none, or several)."""
    words = re.split(r"[_\W\d]+", _CAMEL.sub("_", layer_path.rpartition(".")[2]).lower())
    found = {ROLE_WORDS[word] for word in words if word in ROLE_WORDS}
    return found.pop() if len(found) == 1 else None
