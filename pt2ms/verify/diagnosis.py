"""Stage 4's diagnosis: from the rows of compared pairs, the map, and the settings, the cause in words.

Candidate causes, from most to least certain:
  map            a map entry reads another layer's tensor, or two same-shaped layers are paired crosswise
                 (their order contradicts the map, and numbers differ), or swapping two same-shaped layers
                 inside a block that differs alone makes it agree;
  order          the two models apply parameter-free operations in another order;
  in layer       fed PyTorch's inputs, a layer (with or without parameters) misses by more than one float32
                 operation costs; a setting that differs on it is named;
  between layers a layer's inputs differ while every layer producing them agrees: the functional calls and
                 unpaired modules on that path (PyTorch's side) are named;
  inline         a block differs alone while every paired layer inside it agrees alone, none is set up
                 differently, and no swap of its same-shaped layers (stage 4 tries each) makes it agree: its
                 code between its layers computes something else; the functional calls recorded there are
                 named, with the settings of the layers just before and after that code on both sides; the
                 map only when a swap makes the block agree;
  in block       a block differs alone far more than its paired layers do while one of them differs alone or is
                 set up differently: said as "not sure", with the candidates; ranked after layers;
  outputs        the models return other outputs (count, names, nesting) while those both give agree: the
                 `[verify] outputs` line that pairs them is named;
  accumulated    every layer agrees alone, errors grow with depth and carry the outputs out of tolerance;
  after layers   every paired layer agrees, the outputs do not.
"""

import math

from pt2ms.running import compare
from pt2ms.verify.layer_compare import BOUNDARY, inputs_agree, own_error_differs, producers_agree
from pt2ms.verify.pairing import entries_text, kind

HINTS = {
    "norm": "normalisation layers usually differ in epsilon (MindSpore LayerNorm defaults to 1e-7, PyTorch 1e-5) "
            "or momentum, or their gamma/beta/mean/variance are swapped",
    "conv": "convolutions usually differ in padding (MindSpore defaults to pad_mode='same'), stride, dilation, "
            "groups or a missing bias, or the map feeds them the wrong kernel",
    "dense": "dense layers usually get a transposed or swapped weight, or lack a bias",
    "linear": "dense layers usually get a transposed or swapped weight, or lack a bias",
    "embed": "embeddings usually get the wrong table or padding index",
    "gelu": "GELU differs in its approximation (MindSpore's nn.GELU defaults to tanh, PyTorch's to exact erf)",
    "pool": "pooling usually differs in padding (pad_mode='same' pads after only), ceil_mode or count_include_pad",
    "upsample": "resizing usually differs in mode or align_corners",
    "resize": "resizing usually differs in mode or align_corners",
}
# What each setting is, in words a person reads.
SETTING_WORDS = {
    "approximate": "GELU approximation", "eps": "epsilon (eps)", "padding": "padding", "momentum":
    "BatchNorm momentum (in PyTorch's convention; MindSpore stores 1 - momentum)", "stride": "stride",
    "dilation": "dilation", "groups": "groups", "ceil_mode": "ceil_mode", "count_include_pad": "count_include_pad",
    "norm_axis": "normalised axes", "mode": "resize mode", "align_corners": "align_corners",
    "activation": "built-in activation", "bias": "bias", "p": "dropout probability",
    "padding_mode": "padding mode", "kernel_size": "kernel size", "negative_slope": "negative slope",
    "dim": "axis",
}
# How certain each kind of cause is: the first rank found wins, within a rank the largest error (a resize that
# costs 1e-1 is named before a GELU that costs 1e-4, wherever each sits).
# A block that differs alone with no evidence of its map is the least checked: it ranks after every layer.
# A block's inline code is a larger piece than a layer: it ranks after layers, before a block nobody can explain.
CAUSE_RANK = {"map": 0, "order": 1, "in layer": 2, "between layers": 2, "inline": 2.5, "in block": 3}
# Causes that a number shows on their own (an isolated run, a swap that fixes a block): the only ones listed
# under "Also found" besides the first cause. "Between layers" is evidence from the full run: it counts unless
# it sits on a layer the first cause already explains.
CONFIRMED_ALONE = {"map", "order", "in layer", "between layers", "inline"}
LOW_CONFIDENCE = 0.9
# Settings that act in training only: an inference run cannot show them, so they never make it "differ"; the
# report lists them under "Differs in training" and `--train` measures them. Any other setting is named where a
# layer computes something else, and shown as "equivalent here" where its layer agrees alone.
TRAINING_SETTINGS = {"momentum", "p"}
EFFECT_WORDS = {
    "training": "acts in training only (inference cannot show it; `4_verify.py --train` measures it)",
    "equivalent": "equivalent here: the layer, fed PyTorch's inputs, agrees alone",
    "changes": "changes what the layer computes",
}


def hint(row):
    kind = (row["mindspore_type"] + row["torch_type"]).lower()
    for key, text in HINTS.items():
        if key in kind:
            return text
    return "check the layer's settings and the map entries that feed it"


def error_words(metric):
    """How far apart two sets of values are, in words: their sizes when those differ, else the error figures."""
    if "size_ms" in metric:  # set by compare.metrics only for values of different sizes
        return f"{metric['size_ms']} values where PyTorch has {metric['size_torch']}"
    return f"relative error {metric['relative']:.2e}, cosine {metric['cosine']:.6f}"


def settings_words(found):
    """'GELU approximation: MindSpore 'tanh', PyTorch 'none'' for each differing setting."""
    return "; ".join(f"{SETTING_WORDS.get(item['setting'], item['setting'])}: MindSpore {item['mindspore_value']!r}, "
                     f"PyTorch {item['torch_value']!r}" for item in found)


def _name(row):
    return f"`{row['torch']}` ({row['torch_type']}; MindSpore `{row['mindspore']}`, {row['mindspore_type']})"


def _magnitude(metric):
    if metric.get("sizes_differ"):
        return 1.0
    value = metric.get("relative")
    return math.inf if value is None else value


def _in_layer(row, settings):
    isolated = row.get("isolated", {})
    own = isolated if isolated.get("verdict") == "differ" else row
    found = settings.get(row["torch"], [])
    other_op = row["kind"] == "parameter-free" and kind(row["torch_type"]) != kind(row["mindspore_type"])
    why = f"its settings differ: {settings_words(found)}" if found else \
        f"PyTorch applies {row['torch_type']} here, MindSpore {row['mindspore_type']}" if other_op else hint(row)
    sentence = f"{_name(row)} computes something else" + (f": {settings_words(found)}." if found else
                                                          f": {why}." if other_op else ".")
    text = (f"The models part at {_name(row)}: fed the same inputs as PyTorch, its output differs "
            f"({error_words(own)}), more than one operation costs ({own.get('allowed', compare.OP_TOLERANCE):g}). "
            f"This layer computes something else: {why}.")
    return {"kind": "in layer", "torch": row["torch"], "mindspore": row["mindspore"], "error": _magnitude(own),
            "settings": found, "sentence": sentence, "text": text}


def _between(row):
    producers = list(row.get("from", []))
    through = row.get("through", [])
    where = ", ".join(f"`{name}`" for name in producers)
    ops = ", ".join(f"`{step}`" for step in through) if through else \
        "operations written inline in forward()/construct() that the recording does not name (arithmetic, reshapes)"
    agreed = "is the same" if producers == ["input"] else "agrees" if len(producers) == 1 else "agree"
    sentence = (f"The inputs of {_name(row)} differ although what produces them ({where}) {agreed}: "
                f"the difference arises in between, in {ops}.")
    text = (f"The models part before {_name(row)}: its inputs already differ ({error_words(row['inputs'])}) while "
            f"the outputs of {where}, which feed it, {agreed}. On PyTorch's side the data passes through {ops}; "
            f"compare them with what the port does there (padding, pooling mode, resize mode and align_corners, "
            f"activation, reshapes).")
    return {"kind": "between layers", "torch": row["torch"], "mindspore": row["mindspore"],
            "error": _magnitude(row["inputs"]), "between": through, "sentence": sentence, "text": text}


def _in_block(row, rows, links, calls, settings, around=None):
    """A block that differs alone far more than its layers do: the map only where swapping two of its
    same-shaped layers makes it agree (stage 4 tried each, row["swaps"]); with every layer agreeing alone and
    none set up differently, its inline code; else "not sure", with the candidates. around: (every setting that
    differs by PyTorch layer, whatever its effect; the settings both sides state alike), for inline code."""
    prefix_torch, prefix_ms = row["torch"] + ".", row["mindspore"] + "."
    children = [r for r in rows if r["kind"] != "block" and r["torch"].startswith(prefix_torch)]
    worst_child = max((_magnitude(r["isolated"]) for r in children
                       if r.get("isolated", {}).get("compared") or r.get("isolated", {}).get("sizes_differ")),
                      default=0.0)
    own = _magnitude(row["isolated"])
    if own <= 10 * worst_child:
        return None  # the block's error is its layers' own
    inside = [link for link in links if link["cell"] == row["mindspore"] or link["cell"].startswith(prefix_ms)]
    ops = list(dict.fromkeys(label for context, label in calls
                             if context == row["torch"] or context.startswith(prefix_torch)))
    differing = [r for r in children if r.get("isolated", {}).get("verdict") == "differ"]
    set_apart = [item for r in children for item in settings.get(r["torch"], [])]
    evidence = (f"The block {_name(row)} differs when run alone on PyTorch's inputs ({error_words(row['isolated'])}) "
                f"far more than any paired layer inside it does alone (largest {worst_child:.2e}).")
    swaps = row.get("swaps", [])
    fixing = sorted((swap for swap in swaps if swap["verdict"] in compare.AGREEMENT), key=lambda swap: _magnitude(swap))
    if fixing:
        return _swap_cause(row, fixing[0], inside, evidence, own)
    if not differing and not set_apart:
        return _inline_cause(row, children, ops, swaps, evidence, own, _around(row, rows, children, ops, around))
    # A layer inside computes something else or is set up differently: that layer is named on its own; here
    # the candidates, most likely first.
    named = ", ".join(f"`{op}`" for op in ops) if ops else "operations written inline in its forward()/construct()"
    own_layers = ", ".join(dict.fromkeys(f"`{r['torch']}`" for r in differing)) or \
        ", ".join(dict.fromkeys(f"`{item['torch']}`" for item in set_apart))
    candidates = [f"its own layers that compute something else ({own_layers}"
                  + (f"; {settings_words(set_apart[:3])}" if set_apart else "") + ")",
                  f"its operations between paired layers ({named})",
                  "a block cut differently in the two models (one includes a residual add or an activation the "
                  "other leaves outside)"]
    sentence = f"Not sure why `{row['torch']}` differs alone; candidates: {'; '.join(candidates)}."
    text = f"{evidence} Nothing checked names one cause here. Candidates, most likely first: {'; '.join(candidates)}."
    return {"kind": "in block", "torch": row["torch"], "mindspore": row["mindspore"], "error": own,
            "between": ops, "sentence": sentence, "text": text}


def _swap_cause(row, swap, inside, evidence, own):
    """The map, shown by numbers: with two same-shaped layers swapped the block agrees."""
    first, second = swap["layers"]
    entries = [link for link in inside if link["ms"] in (first, second) or link["ms"].rpartition(".")[0] in (first, second)]
    sentence = (f"The map pairs `{first}` and `{second}` crosswise: with them swapped, `{row['mindspore']}` "
                f"agrees alone (relative error {swap['relative']:.2e}, from {own:.2e}).")
    text = (f"{evidence} Every paired layer in it agrees alone (isolation pairs them through the same map, so a wrong "
            f"entry hides from them). Stage 4 reran the block with `{first}` and `{second}` swapped: "
            f"it then agrees (relative error {swap['relative']:.2e}). Fix these entries: {entries_text(entries[:4])}.")
    return {"kind": "map", "torch": row["torch"], "mindspore": row["mindspore"], "error": own,
            "entries": [link["ms"] for link in entries], "swap": swap, "sentence": sentence, "text": text}


def _inline_cause(row, children, ops, swaps, evidence, own, around):
    """The block's code between its layers: every layer agrees alone, none is set up differently, no swap helps.
    `around` (_around) names the settings of the layers on either side of that code."""
    calls = ", ".join(f"`{op}`" for op in ops[:8]) if ops else None
    layers = ", ".join(f"`{r['torch']}` ({r['torch_type']})" for r in children[:6])
    where = f"PyTorch calls {calls} there" if calls else "the recording names no functional call there (arithmetic, " \
                                                          "reshapes, indexing)"
    if swaps:
        best = min(swaps, key=_magnitude)
        tried = (f"swapping its same-shaped layers ({len(swaps)} pair(s) tried) never makes it agree (best relative "
                 f"error {_magnitude(best):.2e}, `{best['layers'][0]}` with `{best['layers'][1]}`), so the map is not "
                 "at fault")
    else:
        tried = "no two layers in it have one shape, so no map entry can pair them crosswise"
    settings = around_words(around)
    sentence = (f"The inline code of `{row['torch']}` between its layers computes something else: {where}; every layer "
                f"in it agrees alone" + (f"; settings of the layers around it: {settings}." if settings else "."))
    text = (f"{evidence} Every paired layer in it ({layers}) agrees alone and none is set up differently; {tried}. "
            f"The difference is in the block's own code between its layers (forward() against construct()): {where}. "
            + (f"Settings of the layers around that code: {settings}. " if settings else "")
            + "Compare them (a normalisation, a scale, a reshape or an activation written inline on one side only).")
    return {"kind": "inline", "torch": row["torch"], "mindspore": row["mindspore"], "torch_type": row["torch_type"],
            "error": own, "between": ops, "around": around, "sentence": sentence, "text": text}


def _around(row, rows, children, ops, around):
    """The layers just before and after a block's inline code, with their settings on both sides: after it, the
    layers whose input path holds the recorded calls (in the block, else fed by it); before it, what feeds those
    (the last unpaired module on the path, and the paired producers). Without a recorded call the code cannot
    be placed: the block's own layers stand in. [{"torch", "mindspore", "types", "side", "differ", "alike"}]."""
    differ, alike = around or ({}, {})
    by_torch = {r["torch"]: r for r in rows if r["kind"] != "block"}
    inside = {r["torch"] for r in children}
    placed = [r for r in rows if r["kind"] != "block" and set(ops) & set(r.get("through", []))
              and (r["torch"] in inside or inside & set(r.get("from", [])))]
    after = [r for r in placed if r["torch"] in inside] or placed
    found = []
    if not after:
        found = [("in it", r["torch"], r) for r in children[:6]]
    for layer in after[:2]:
        steps = layer.get("through", [])
        first_call = next(index for index, step in enumerate(steps) if step in ops)
        unpaired = [step for step in steps[:first_call] if step not in ops and step.endswith(")") and " (" in step]
        if unpaired:
            found.append(("before", unpaired[-1].split(" (")[0], None))
        found += [("before", name, by_torch.get(name)) for name in layer.get("from", []) if name not in ("input", "?")]
        found.append(("after", layer["torch"], layer))
    unique = list({name: (side, name, r) for side, name, r in found}.values())
    return [{"torch": name, "mindspore": r["mindspore"] if r else None,
             "types": [r["torch_type"], r["mindspore_type"]] if r else [],
             "side": side, "differ": differ.get(name, []), "alike": alike.get(name, {}) if r else {}}
            for side, name, r in unique]


SIDE_WORDS = {"before": "before it", "after": "after it", "in it": "in the block"}
EFFECT_SHORT = {"training": " (training only)", "equivalent": " (equivalent here)", "changes": ""}


def around_words(around):
    """'before it `a` (LayerNorm; MindSpore `a`, LayerNorm): the same on both sides (eps 1e-05)' for each layer."""
    parts, side_named = [], None
    for layer in around:
        if layer["mindspore"] is None:
            what = f"`{layer['torch']}` (PyTorch's only: not paired one to one, its settings not compared)"
        else:
            torch_type, ms_type = layer["types"]
            what = f"`{layer['torch']}` ({torch_type}; MindSpore `{layer['mindspore']}`, {ms_type})"
            differ = "; ".join(settings_words([item]) + EFFECT_SHORT.get(item.get("effect", "changes"), "")
                               for item in layer["differ"])
            same = ", ".join(f"{SETTING_WORDS.get(key, key)} {value!r}" for key, value in layer["alike"].items())
            what += (f": {differ}" + (f"; the same on both sides: {same}" if same else "") if differ else
                     f": the same on both sides ({same})" if same else ": no settings to compare")
        lead = f"{SIDE_WORDS[layer['side']]} " if layer["side"] != side_named else ""
        side_named = layer["side"]
        parts.append(lead + what)
    return "; ".join(parts)


def _inner_differs(row, rows):
    """Whether a paired layer inside this one (a layer that owns parameters and holds others: ConvNeXt's block
    with its layer scale) differs alone: then that inner layer, not this one, is where the models part."""
    prefix = row["torch"] + "."
    return any(other["kind"] != "block" and other["torch"].startswith(prefix)
               and other.get("isolated", {}).get("verdict") == "differ" for other in rows)


def _jumps(row, before):
    """Whether a layer's inputs differ far more than the previous layer's output did: a step, not a drift."""
    if row["inputs"].get("sizes_differ") or before is None:
        return True
    return before["verdict"] in compare.AGREEMENT and \
        _magnitude(row["inputs"]) > 10 * max(_magnitude(before), compare.EXACT)


def _map_cause(problems):
    first = problems[0]
    more = f" ({len(problems) - 1} more listed under map problems)" if len(problems) > 1 else ""
    return {"kind": "map", "torch": first["torch"], "mindspore": first["mindspore"], "error": math.inf,
            "entries": [name for problem in problems for name in problem.get("entries", [])],
            "sentence": f"The map is wrong: {first['text']}.",
            "text": f"The map pairs the models wrongly: {first['text']}{more}. Fix the entries in the map, rerun "
                    "3_pth2ckpt.py and verify again."}


def _order_cause(problems):
    first = problems[0]
    return {"kind": "order", "torch": first["torch"], "mindspore": first["mindspore"], "error": math.inf,
            "sentence": f"The two models apply operations in another order: {first['text']}.",
            "text": f"The models part where the order of operations differs: {first['text']}."}


def setting_effects(settings_differ, rows):
    """Each setting that differs, with its "effect" on this run, decided by numbers where they exist:
    "training" (dropout p, BatchNorm momentum), "equivalent" (its layer, fed PyTorch's inputs, agrees alone:
    another padding form that pads the same pixels, an eps too small to matter), else "changes"."""
    alone = {row["torch"]: row for row in rows if row["kind"] != "block"}
    marked = []
    for item in settings_differ:
        row = alone.get(item["torch"])
        if item["setting"] in TRAINING_SETTINGS:
            effect = "training"
        elif row is not None and _agrees_alone(row):
            effect = "equivalent"
        else:
            effect = "changes"
        marked.append({**item, "effect": effect})
    return marked


def numbers_differ(outputs, rows, tolerance=1e-4):
    """Whether any number shows the models computing differently: an output, or a layer that misses on its own
    (own_error_differs). Error a layer inherits in the full run, and boundary layers, do not count."""
    if any(row["verdict"] == "differ" for row in outputs):
        return True
    return any(row["verdict"] != BOUNDARY and own_error_differs(row, tolerance) for row in rows)


def _agrees_alone(row):
    isolated = row.get("isolated", {})
    if isolated.get("compared"):
        return isolated.get("verdict") in compare.AGREEMENT
    return row["verdict"] in compare.AGREEMENT and inputs_agree(row)


def output_mismatch(outputs):
    """The "outputs" cause when the models return other outputs (count, names, nesting) and every output both
    give agrees; None otherwise. Names the `[verify] outputs` line that pairs them by key, else by position."""
    first = [row for row in outputs if row.get("batch", 0) == 0]
    unmatched = [row for row in first if not row.get("compared") and row.get("note", "").endswith(
        ("MindSpore gives no output here", "only MindSpore gives this output"))]
    if not unmatched or any(row["verdict"] == "differ" for row in first if row not in unmatched):
        return None
    torch_keys = _top_keys(row["output"] for row in first if "only MindSpore" not in row.get("note", ""))
    ms_keys = _top_keys(row["output"] for row in first if row.get("compared") or "only MindSpore" in row.get("note", ""))
    shared = [key for key in torch_keys if key in ms_keys]
    rest_torch = [key for key in torch_keys if key not in shared]
    rest_ms = [key for key in ms_keys if key not in shared]
    pairs = [(key, key) for key in shared] + list(zip(rest_torch, rest_ms))
    line = (f"outputs = {{ torch = {_toml_list(key for key, _ in pairs)}, "
            f"mindspore = {_toml_list(key for _, key in pairs)} }}")
    names = ", ".join(f"`{row['output']}` ({row['note']})" for row in unmatched[:4])
    sentence = f"The models return other outputs: {names}."
    text = (f"{sentence} Every output both give agrees. If these outputs correspond, say so under [verify]: "
            f"`{line}`.")
    return {"kind": "outputs", "torch": None, "mindspore": None, "error": math.inf, "sentence": sentence,
            "text": text, "outputs_line": line, "after": None}


def _top_keys(labels):
    """The top-level output keys of flattened labels, in order: `output` (a bare tensor) is position 0."""
    import ast
    import re

    keys = []
    for label in labels:
        match = re.match(r"output\[((?:'[^']*')|(?:\"[^\"]*\")|-?\d+)\]", label)
        key = ast.literal_eval(match.group(1)) if match else 0
        if key not in keys:
            keys.append(key)
    return keys


def _toml_list(keys):
    return "[" + ", ".join(f'"{key}"' if isinstance(key, str) else str(key) for key in keys) + "]"


def causes(rows, settings_differ, map_problems, order_problems, links, calls, tolerance, settings_alike=None):
    """Every candidate cause found, as dicts with kind, torch, mindspore, error, sentence and text. Only the
    settings whose effect is "changes" (setting_effects) can be named on a layer; settings_alike
    (running.settings.paired_settings) lets inline code name the settings around it that match."""
    by_torch = {row["torch"]: row for row in rows if row["kind"] != "block"}
    settings, every = {}, {}
    for item in settings_differ:
        every.setdefault(item["torch"], []).append(item)
        if item.get("effect", "changes") == "changes":
            settings.setdefault(item["torch"], []).append(item)
    found, previous = [], None
    for row in rows:
        if row["verdict"] in ("not compared", BOUNDARY):
            continue
        isolated = row.get("isolated", {})
        if row["kind"] != "block":
            previous, before = row, previous
        if row["kind"] == "block":
            if isolated.get("verdict") == "differ":
                block = _in_block(row, rows, links, calls, settings, (every, settings_alike or {}))
                found += [block] if block else []
            continue
        if own_error_differs(row, tolerance):
            if not _inner_differs(row, rows):  # else the layer inside it that differs is the cause
                found.append(_in_layer(row, settings))
        elif not inputs_agree(row) and row["inputs"].get("compared", 0) + row["inputs"].get("sizes_differ", 0) \
                and compare.verdict(row["inputs"], tolerance) == "differ":
            if producers_agree(row, by_torch):
                found.append(_between(row))
            elif "?" in row.get("from", ["?"]) and _jumps(row, before):
                # The data flow is unknown here: the layer that ran just before stands in for its producer.
                found.append(_between({**row, "from": [before["torch"]] if before else ["input"]}))
    found = _innermost_inline(found)
    numeric = bool(found) or any(row["verdict"] == "differ" for row in rows)
    if map_problems and numeric:
        found.insert(0, _map_cause(map_problems))
    if order_problems and numeric:
        found.insert(0, _order_cause(order_problems))
    return found


def _innermost_inline(found):
    """Inline code is named at the smallest block that shows it, and once per kind of block (the same code in
    every later block of that kind is counted on the first)."""
    inline = [cause for cause in found if cause["kind"] == "inline"]
    # Inputs that differ inside such a block arise in that code: the block, which runs alone, says it.
    found = [cause for cause in found if cause["kind"] != "between layers" or
             not any(cause["torch"].startswith(block["torch"] + ".") for block in inline)]
    inner = [cause for cause in inline
             if not any(other["torch"].startswith(cause["torch"] + ".") for other in inline)]
    firsts = {}
    for cause in inner:
        kind_of = cause["torch_type"]
        if kind_of in firsts:
            firsts[kind_of]["repeats"].append(cause["torch"])
        else:
            firsts[kind_of] = cause = {**cause, "repeats": []}
    for cause in firsts.values():
        if cause["repeats"]:
            more = ", ".join(f"`{name}`" for name in cause["repeats"][:4])
            cause["text"] += f" The same holds in {len(cause['repeats'])} later block(s) of this kind: {more}."
    return [cause for cause in found if cause["kind"] != "inline"] + list(firsts.values())


def _confirmed_alone(cause, best):
    """Whether `cause` stands on its own numbers once `best` is named: not a "not sure", and not on a layer
    paired through the entries `best` blames (that layer is handed another layer's inputs)."""
    if cause["kind"] not in CONFIRMED_ALONE:
        return False
    # Entry names are parameter names; a CellList's may lack the list's own prefix (`6.conv.weight`).
    blamed = {name.rpartition(".")[0] for name in best.get("entries", [])}
    return not any(layer and (layer == name or layer.endswith("." + name))
                   for layer in (cause.get("mindspore"), cause.get("torch")) for name in blamed)


def first_divergence(found, rows, settings_differ, outputs_differ, mismatch=None):
    """The one cause to name first (None when nothing differs), with the setting at or before it. An output
    mismatch (output_mismatch) is the cause when no layer computes differently."""
    settings_differ = [item for item in settings_differ if item.get("effect", "changes") == "changes"]
    if mismatch and not found:
        return mismatch
    if found:
        # At equal error a layer is named before the block around it.
        best = min(found, key=lambda cause: (CAUSE_RANK[cause["kind"]], -cause["error"], cause["kind"] == "in block"))
        others = [cause for cause in found if cause is not best and _confirmed_alone(cause, best)]
        best = dict(best)
        _with_setting_before(best, rows, settings_differ)
        others += [mismatch] if mismatch else []
        if others:
            best["also"] = [cause["sentence"] for cause in others[:5]]
        return _with_after(best, rows)
    unit_rows = [row for row in rows if row["kind"] != "block"]
    # Drift that grows with depth is a finding only when it carries the outputs out of tolerance: within it,
    # layers deep inside may leave tolerance in the full run (an exp box decode amplifies rounding) and the
    # models still agree.
    if outputs_differ and any(row["verdict"] == "differ" for row in unit_rows):
        first = next(row for row in unit_rows if row["verdict"] == "differ")
        isolated = [r["isolated"] for r in unit_rows if r.get("isolated", {}).get("compared")]
        worst = max((_magnitude(metric) for metric in isolated), default=0.0)
        allowed = max((metric.get("allowed", compare.OP_TOLERANCE) for metric in isolated), default=compare.OP_TOLERANCE)
        sentence = "Every layer agrees when fed PyTorch's inputs; rounding grows with depth."
        text = (f"No single place computes differently: errors grow gradually and first leave tolerance at "
                f"{_name(first)} ({error_words(first)}), while every layer, with or without parameters, agrees alone "
                f"to rounding noise (largest isolated error {worst:.2e}, at most {allowed:g} allowed). "
                "This is rounding accumulated over depth.")
        return _with_after({"kind": "accumulated", "torch": first["torch"], "mindspore": first["mindspore"],
                            "error": 0.0, "sentence": sentence, "text": text}, rows)
    if outputs_differ:
        last = unit_rows[-1]["torch"] if unit_rows else "the first layer"
        sentence = f"Every paired layer agrees but the outputs differ: the difference arises after `{last}`."
        return {"torch": None, "mindspore": None, "kind": "after layers", "error": 0.0, "sentence": sentence,
                "after": last if unit_rows else None,
                "text": f"{sentence} Look at operations that own no parameters there (pooling, activation, reshape, "
                        "the output head's post-processing)."}
    return None


def _with_setting_before(cause, rows, settings_differ):
    """Name the setting that differs at the cause's layer or before it, when the cause does not already."""
    if cause.get("settings") or not settings_differ:
        return
    position = {row["torch"]: index for index, row in enumerate(rows)}
    alone = {row["torch"]: row.get("isolated", {}).get("verdict") for row in rows}
    at = position.get(cause.get("torch"), len(rows))
    # Only settings of layers not shown to agree alone: those may be where the difference comes from.
    before = [item for item in settings_differ if position.get(item["torch"], len(rows)) <= at
              and alone.get(item["torch"]) not in compare.AGREEMENT]
    if before:
        cause["settings"] = before
        words = "; ".join(f"`{item['torch']}` {settings_words([item])}" for item in before[:3])
        cause["text"] += f" A setting that changes the math differs at or before this point: {words}."
        cause["sentence"] = cause["sentence"].rstrip(".") + f" (setting at or before it: {words})."


def _with_after(cause, rows):
    """The last layer before the cause's that agreed in the full run ("after": None when none did)."""
    after = None
    for row in rows:
        if row["torch"] == cause.get("torch"):
            break
        if row["kind"] != "block" and row["verdict"] in compare.AGREEMENT:
            after = row["torch"]
    cause["after"] = after
    return cause
