"""Stage 4's pairing: which MindSpore cell computes what which PyTorch module computes.

Three kinds of pairs, from most to least certain:
  layers           a cell and the module whose parameters feed it, through the map;
  parameter-free   activations, pooling, padding, dropout, upsampling, softmax, flatten: paired by kind, in
                   execution order, between the same two paired layers on each side;
  blocks           a parent module whose children are paired (an attention, a residual block) and the
                   MindSpore cell that holds all their partners.
Also here: what the pairing shows about the map itself (an entry that reads another layer's tensor, two
same-shaped layers paired crosswise) and about the order of operations.
"""

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from pt2ms.formats.inventory import strip_to_known
from pt2ms.mapping import transforms
from pt2ms.mapping.mapfile import parse_value
from pt2ms.running.models import common_path

# Type names that mean one operation in both frameworks (lower case, without a 1d/2d/3d suffix).
KIND_ALIASES = {
    "hswish": "hardswish", "hsigmoid": "hardsigmoid", "swish": "silu", "fastgelu": "gelu",
    "resizebilinear": "upsample", "resizebilinearv2": "upsample", "interpolate": "upsample",
    "upsamplingbilinear": "upsample", "upsamplingnearest": "upsample", "zeropad": "pad", "constantpad": "pad",
    "reflectionpad": "pad", "replicationpad": "pad", "logsoftmax": "logsoftmax", "dropout": "dropout",
    "droppath": "droppath", "adaptiveavgpool": "adaptiveavgpool", "adaptivemaxpool": "adaptivemaxpool",
    # transformers.activations: one GELU in several formulas (settings.py reads which one as `approximate`)
    "newgelu": "gelu", "fastgelu": "gelu", "accurategelu": "gelu", "gelutanh": "gelu", "pytorchgelutanh": "gelu",
    "quickgelu": "gelu", "clippedgelu": "gelu", "gelupytorchtanh": "gelu",
}
# Suffixes a zoo adds to an operation's name (transformers' GELUActivation, SiLUActivation, MishActivation).
KIND_SUFFIXES = ("activation",)
# Leaves that compute nothing worth comparing, or that are containers.
SKIPPED_KINDS = {"identity", "sequential", "sequentialcell", "modulelist", "celllist", "moduledict", "celldict"}
# Activations: one left unpaired on each side between the same two paired layers is one activation in the same
# place, another function (ReLU against SiLU): paired, so isolation can show it.
ACTIVATION_KINDS = {"relu", "relu6", "silu", "gelu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "mish", "elu",
                    "leakyrelu", "softplus", "selu", "celu"}


def kind(type_name):
    """One name for one operation in both frameworks: MaxPool2d -> maxpool, HSwish -> hardswish."""
    name = re.sub(r"[123]d$", "", type_name.lower())
    for suffix in KIND_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[:-len(suffix)]
    return KIND_ALIASES.get(name, name)


@dataclass
class Flows:
    """Each side's data flow from the first recorded pass: layer -> [(producers, steps)] per input."""
    torch: dict = field(default_factory=dict)
    ms: dict = field(default_factory=dict)


def ancestors(name, feeds, keep):
    """The nearest layers in `keep` (or "input", or "?" when unknown) whose outputs reach `name`'s inputs."""
    found, seen, todo = set(), set(), [name]
    while todo:
        current = todo.pop()
        for producers, _ in feeds.get(current, []):
            for producer in producers:
                if producer in keep or producer in ("input", "?"):
                    found.add(producer)
                elif producer not in seen and producer in feeds:
                    seen.add(producer)
                    todo.append(producer)
                elif producer not in seen:
                    found.add("?")
    return frozenset(found) if found else frozenset(["?"])


def _translated(name, flows, partner, torch_keep):
    """A PyTorch layer's ancestors, named by their MindSpore partners."""
    return frozenset(partner.get(p, p) for p in ancestors(name, flows.torch, torch_keep))


# --- through the map -----------------------------------------------------------------------------------

def entry_links(ms_rows, map_data, module_names):
    """Every map entry as {ms, cell, torch, owners, transform, pieces, confidence, method, edited}; edited: the
    entry differs from what stage 2 suggested (a hand edit)."""
    found = map_data.get("found", {})
    links = []
    for row in ms_rows:
        value = map_data["map"].get(row.name)
        if value is None or not row.path:
            continue
        entry = parse_value(value, row.name, "map")
        ops = transforms.parse(entry.transform)
        owners = [strip_to_known(name.rpartition(".")[0], module_names) for name in entry.torch_names]
        info = found.get(row.name, {})
        suggested = map_data.get("suggested", {})
        links.append({"edited": row.name in suggested and suggested[row.name] != value, "tied": entry.tied,"ms": row.name, "cell": row.path.rpartition(".")[0], "torch": entry.torch_names,
                      "owners": owners, "transform": entry.transform,
                      "pieces": any(op in ("chunk", "cat") for op, _ in ops),
                      "confidence": info.get("confidence", 1.0), "method": info.get("method", "")})
    return links


def pair_layers(links, module_names, cell_names, is_block=None):
    """[(ms cell path, torch module path)]: each MindSpore cell with the module that feeds most of its parameters.

    is_block(side, path): whether a layer holds other layers with parameters; a block that owns a stray
    parameter (timm's WindowAttention and its bias table) computes something else than a small cell owning
    the same parameter (mindcv's RelativeBias), so the two are not paired.
    """
    votes = Counter()
    for link in links:
        if link["pieces"]:
            continue  # a piece of a fused layer computes part of the other's output: nothing to compare 1:1
        for owner in link["owners"]:
            if link["cell"] in cell_names and owner in module_names and link["cell"] and owner and \
                    (is_block is None or is_block("torch", owner) == is_block("mindspore", link["cell"])):
                votes[(link["cell"], owner)] += 1
    pairs, taken_cells, taken_modules = [], set(), set()
    for (cell, owner), _ in votes.most_common():
        if cell not in taken_cells and owner not in taken_modules:
            pairs.append((cell, owner))
            taken_cells.add(cell)
            taken_modules.add(owner)
    return pairs


def entries_text(links):
    """`ms <- torch` for each entry, transforms shown."""
    parts = []
    for link in links:
        source = ", ".join(link["torch"])
        parts.append(f"`{link['ms']}` <- `{source}`" + (f" ({link['transform']})" if link["transform"] else ""))
    return "; ".join(parts)


def mixed_entries(pairs, links):
    """Map problems: a paired cell one of whose entries reads a tensor of another module than its partner's."""
    partner = dict(pairs)
    problems = []
    for link in links:
        module = partner.get(link["cell"])
        if module is None or link["pieces"] or link["tied"] or all(owner == module for owner in link["owners"]):
            continue
        others = sorted(set(link["owners"]) - {module})
        problems.append({"kind": "entry reads another layer", "mindspore": link["cell"], "torch": module,
                         "entries": [link["ms"]],
                         "text": f"map entry {entries_text([link])} reads a tensor of `{others[0]}`, while the "
                                 f"rest of `{link['cell']}` reads `{module}`"})
    return problems


def crossed_pairs(pairs, links, torch_position, ms_position, signatures, flows=None):
    """Map problems: two paired layers of one shape that run in one order in PyTorch and the other in MindSpore.

    signatures: torch module path -> something equal for layers the map could confuse (type and shapes).
    flows: when given, a pair whose inputs come from partners on both sides is not suspect (a port may run
    two branches in the other order); only pairs the data flow contradicts, or cannot confirm, are.
    """
    consistent = _consistent(pairs, flows) if flows else set()
    by_signature = defaultdict(list)
    for cell, module in pairs:
        if module in torch_position and cell in ms_position:
            by_signature[signatures.get(module)].append((torch_position[module], ms_position[cell], cell, module))
    problems, seen = [], set()
    for group in by_signature.values():
        group.sort()
        for i, (_, ms_a, cell_a, module_a) in enumerate(group):
            for _, ms_b, cell_b, module_b in group[i + 1:]:
                if ms_b < ms_a and (cell_a, cell_b) not in seen and not {cell_a, cell_b} <= consistent:
                    seen.add((cell_a, cell_b))
                    inside = [link for link in links if link["cell"] in (cell_a, cell_b)]
                    problems.append({
                        "kind": "order contradicts the map", "mindspore": cell_a, "torch": module_a,
                        "confirmed": bool(flows) and _contradicted(cell_a, module_a, pairs, flows),
                        "entries": [link["ms"] for link in inside],
                        "text": f"`{module_a}` runs before `{module_b}` in PyTorch, but their MindSpore partners "
                                f"`{cell_a}` and `{cell_b}` run the other way round: two layers of one shape are "
                                f"likely paired crosswise by the entries {entries_text(inside)}"})
    return problems


def _contradicted(cell, module, pairs, flows):
    """Whether the data flow shows `cell`'s inputs coming from elsewhere than its partner's do."""
    partner = {m: c for c, m in pairs}
    ms_side = ancestors(cell, flows.ms, set(partner.values()))
    return "?" not in ms_side and _translated(module, flows, partner, set(partner)) != ms_side


def _consistent(pairs, flows):
    """Cells whose inputs come from the partners of what feeds their PyTorch partner."""
    partner = {module: cell for cell, module in pairs}
    torch_keep, ms_keep = set(partner), set(partner.values())
    found = set()
    for cell, module in pairs:
        ms_side = ancestors(cell, flows.ms, ms_keep)
        if "?" not in ms_side and _translated(module, flows, partner, torch_keep) == ms_side:
            found.add(cell)
    return found


# --- parameter-free layers, by execution order between paired layers ------------------------------------

def parameter_free_leaves(layers, has_own_parameters, children_of):
    """{path: type name} of leaves that own no parameter and compute something. An activation built of other
    layers and no parameters (MindCV's Swish: x * its Sigmoid cell(x)) counts as one leaf, the layers inside it
    not: else PyTorch's SiLU would pair with the Sigmoid inside and "differ"."""
    layers = [(name, layer) for name, layer in layers if name]
    with_parameters = {name for name, layer in layers if has_own_parameters(layer)}
    whole = [name for name, layer in layers if children_of(layer) and kind(type(layer).__name__) in ACTIVATION_KINDS
             and not any(inner == name or inner.startswith(name + ".") for inner in with_parameters)]
    return {name: type(layer).__name__ for name, layer in layers
            if (name in whole or not children_of(layer)) and name not in with_parameters
            and not any(name.startswith(outer + ".") for outer in whole)
            and kind(type(layer).__name__) not in SKIPPED_KINDS}


def _span(position, anchors):
    """How many anchors run before `position`: the span between two paired layers it sits in."""
    return sum(1 for anchor in anchors if anchor < position)


def _by_flow(pairs, torch_free, ms_free, flows):
    """[(cell, module)]: parameter-free layers of one kind fed by partners, where exactly one on each side is."""
    partner = {module: cell for cell, module in pairs}
    torch_keep, ms_keep = set(partner), set(partner.values())
    groups = defaultdict(lambda: ([], []))
    for module, type_name in torch_free.items():
        if module in flows.torch:
            groups[(kind(type_name), _translated(module, flows, partner, torch_keep))][0].append(module)
    for cell, type_name in ms_free.items():
        if cell in flows.ms:
            groups[(kind(type_name), ancestors(cell, flows.ms, ms_keep))][1].append(cell)
    return [(cells[0], modules[0]) for (_, source), (modules, cells) in groups.items()
            if len(modules) == 1 and len(cells) == 1 and "?" not in source]


def pair_parameter_free(pairs, torch_order, ms_order, torch_free, ms_free, flows=None):
    """[(cell, module)] of parameter-free layers, and the ones that run at another place than their partner.

    First by data flow (flows): a layer of one kind fed by the partner of what feeds its counterpart, so
    that branches pair as branches whatever order each port runs them in. Then, between two consecutive
    paired layers (PyTorch's execution order), the rest of one kind pair in their order of execution. Those
    left over pair by kind across the whole model when each side has as many of that kind: a pooling that
    runs before a norm in one model and after it in the other.
    """
    by_flow = _by_flow(pairs, torch_free, ms_free, flows) if flows else []
    torch_free = {name: value for name, value in torch_free.items() if name not in {m for _, m in by_flow}}
    ms_free = {name: value for name, value in ms_free.items() if name not in {c for c, _ in by_flow}}
    torch_position = {name: i for i, name in enumerate(torch_order)}
    ms_position = {name: i for i, name in enumerate(ms_order)}
    anchors = sorted((torch_position[m], ms_position[c]) for c, m in pairs if m in torch_position and c in ms_position)
    torch_anchors, ms_anchors = [t for t, _ in anchors], [m for _, m in anchors]
    spans = defaultdict(lambda: ([], []))
    for name in torch_order:
        if name in torch_free:
            spans[(_span(torch_position[name], torch_anchors), kind(torch_free[name]))][0].append(name)
    for name in ms_order:
        if name in ms_free:
            spans[(_span(ms_position[name], ms_anchors), kind(ms_free[name]))][1].append(name)
    found, left_torch, left_ms = list(by_flow), defaultdict(list), defaultdict(list)
    activations = defaultdict(lambda: ([], []))
    for (span, what), (modules, cells) in sorted(spans.items()):
        found += [(cell, module) for module, cell in zip(modules, cells)]
        left_torch[what] += modules[len(cells):]
        left_ms[what] += cells[len(modules):]
        if what in ACTIVATION_KINDS:
            activations[span][0].extend((what, module) for module in modules[len(cells):])
            activations[span][1].extend((what, cell) for cell in cells[len(modules):])
    for (torch_left, ms_left) in activations.values():
        if len(torch_left) == 1 and len(ms_left) == 1:
            (torch_kind, module), (ms_kind, cell) = torch_left[0], ms_left[0]
            found.append((cell, module))
            left_torch[torch_kind].remove(module)
            left_ms[ms_kind].remove(cell)
    moved = []
    for what, modules in left_torch.items():
        cells = left_ms.get(what, [])
        if modules and len(modules) == len(cells):
            pairs_moved = list(zip(sorted(cells, key=ms_position.get), sorted(modules, key=torch_position.get)))
            found += pairs_moved
            moved += pairs_moved
    return found, moved


def moved_operations(moved, torch_order, ms_order, pairs):
    """Order problems: a parameter-free layer that runs on the other side of a paired layer in MindSpore."""
    torch_position = {name: i for i, name in enumerate(torch_order)}
    ms_position = {name: i for i, name in enumerate(ms_order)}
    problems = []
    for cell, module in moved:
        crossed = [(c, m) for c, m in pairs if m in torch_position and c in ms_position and
                   (torch_position[m] < torch_position[module]) != (ms_position[c] < ms_position[cell])]
        if not crossed:
            continue
        other_cell, other_module = min(crossed, key=lambda pair: abs(torch_position[pair[1]] - torch_position[module]))
        torch_side = "after" if torch_position[other_module] < torch_position[module] else "before"
        ms_side = "after" if ms_position[other_cell] < ms_position[cell] else "before"
        problems.append({"kind": "operations in another order", "mindspore": cell, "torch": module,
                         "other_torch": other_module, "other_mindspore": other_cell,
                         "text": f"PyTorch runs `{module}` {torch_side} `{other_module}`, the MindSpore port runs "
                                 f"`{cell}` {ms_side} `{other_cell}`"})
    return problems


# --- blocks: parents whose children are paired -------------------------------------------------------

def _common_parent(paths, cell_names):
    """The smallest cell holding all `paths`: their common prefix, shortened until it names a cell."""
    common = common_path(paths).split(".")
    while common and ".".join(common) not in cell_names:
        common.pop()
    return ".".join(common)


def _outermost_cell(cell, link_cells, cell_names):
    """The outermost cell around `cell` that holds no mapped layer besides those `cell` holds."""
    mine = {name for name in link_cells if name == cell or name.startswith(cell + ".")}
    parts = cell.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        above = ".".join(parts[:cut])
        if above not in cell_names:
            continue
        if {name for name in link_cells if name.startswith(above + ".")} != mine:
            break
        cell = above
    return cell


def find_blocks(module_children, links, pairs, cell_names):
    """[(cell, module)]: each PyTorch parent holding two or more mapped layers, with the MindSpore cell that
    holds exactly their partners. module_children: {module path: [descendant module paths]} of non-leaves.

    Where wrappers nest around the same mapped layers (HF ResNet's layer around its Sequential, MindCV's
    InvertedResidual around its SequentialCell), the outermost on each side is the block: the inner one
    leaves out the residual add, which the other side's block may hold.
    """
    paired_modules = {module for _, module in pairs}
    cells_of = defaultdict(set)
    for link in links:
        for owner in link["owners"]:
            cells_of[owner].add(link["cell"])
    link_cells = {link["cell"] for link in links}
    inside_of = {module: frozenset(d for d in descendants if cells_of.get(d))
                 for module, descendants in module_children.items()}
    blocks, taken = [], set()
    for module, descendants in sorted(module_children.items(), key=lambda item: -item[0].count(".")):
        if not module or module in paired_modules:
            continue
        inside = inside_of[module]
        if len(inside) < 2 or any(module.startswith(other + ".") and inside_of[other] == inside
                                  for other in inside_of if other and other not in paired_modules):
            continue
        cells = set().union(*(cells_of[d] for d in inside))
        parent = _common_parent(cells, cell_names)
        if parent and parent not in dict(pairs):
            parent = _outermost_cell(parent, link_cells, cell_names)
        if not parent or parent in taken or parent in dict(pairs):
            continue
        # The cell must hold no partner of a layer outside the module, else the two blocks are cut differently.
        outside = {owner for link in links if link["cell"] == parent or link["cell"].startswith(parent + ".")
                   for owner in link["owners"] if owner not in descendants}
        if outside:
            continue
        blocks.append((parent, module))
        taken.add(parent)
    return blocks
