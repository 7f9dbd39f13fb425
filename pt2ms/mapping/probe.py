"""Stage 2's numeric probe: when both models are given, run them to settle what names and shapes cannot.

Decided here, for the entries the matcher is unsure of:
  joined    an entry made by cat(0) of several PyTorch tensors: their order, and whether the MindSpore layer
            keeps them stacked or interleaved per group (mindformers' w_qkv) or row by row (w_gate_hidden)
  fused     a fused layer renamed one to one (qkv_proj -> w_qkv): the same interleaves, on one tensor
  pieces    entries that each take a chunk or slice of one tensor: which piece goes where
  order     same-shape siblings of one layer with an unsure entry among them (wq <- o_proj?): who gets which
  transpose a square matrix, whose layout its shape cannot show: as is or transposed

Each candidate's weights are set into the MindSpore model and the smallest enclosing pair of blocks is run
alone: the MindSpore cell gets the input the PyTorch block recorded (its other arguments, masks or position
tables, are its own from a full run) and must give the PyTorch block's output. A cell that cannot run so
(other arguments, other output) gives way to its parent, up to both whole models on the config's inputs.
Entries that share a pattern (the same names up to layer indices) are one decision: each candidate is set
into all of them at once. The candidate that alone agrees wins ("method": "probed"); when none or several
agree, the entry keeps the matcher's guess at confidence 0 and says why.
"""

import hashlib
import math
import time
from collections import defaultdict
from dataclasses import replace

import numpy as np
from tqdm import tqdm

from pt2ms.errors import Pt2MsError
from pt2ms.mapping.probe_bench import Bench
from pt2ms.mapping.probe_units import (
    HEAD_ATTRS,
    UNSURE,
    Unit,
    find_units,
    gates_around,
    refreshed,
    separated,
    shared_source,
    sources_of,
)
from pt2ms.running.models import common_path
from pt2ms.running.recording import ForwardFailed, first_line


def _levels(path):
    """A cell path and its ancestors, smallest first, ending with the whole model ("")."""
    parts = path.split(".") if path else []
    return [".".join(parts[:i]) for i in range(len(parts), -1, -1)]


def _common_cell(bench, slots):
    return common_path([bench.cell_path(slot) for slot in slots])


# --- deciding ------------------------------------------------------------------------------------------

def _decide(bench, members, levels, current, waiting=()):
    """Try every candidate of a pattern on all its members; returns (label or None, {label: error}, where).

    A label only when the numbers separate the candidates: it alone within the tolerance, every other distinct
    candidate at CLEAR_RATIO times the tolerance or more. Otherwise `where` says why, with the numbers.
    `waiting`: cells holding entries still to be decided; a block around one of them is not tried (its wrong
    guess would refuse every candidate, and a bigger block costs more: a whole LLM per candidate)."""
    labels = [label for label, _ in members[0].candidates]
    if any([label for label, _ in unit.candidates] != labels for unit in members):
        return None, {}, "its layers do not offer the same candidates"
    at = [0] * len(members)
    errors, where = {}, "no block"
    while True:
        at = _next_levels(bench, levels, at)
        if any(index is None for index in at):
            if not errors:
                return None, errors, "no block around it runs on both sides"
            return None, errors, f"no candidate agrees, up to {where} (best {_best(errors)})"
        chosen = [unit_levels[index] for unit_levels, index in zip(levels, at)]
        where = f"{chosen[0][0] or 'the whole model'} vs {chosen[0][1] or 'the whole model'}"
        held = next((cell for cell in waiting if _inside(cell, chosen[0][0])), None)
        if held is not None:
            return None, errors, f"{where} also holds {held}, not decided yet"
        # Twins in blocks of their own (an LLM's layers): the first decides, the others confirm its winner,
        # so a pattern costs one block run per candidate and one per twin, not one per candidate and twin.
        alone = _apart([cell for cell, _ in chosen])
        label, errors, why = _try(bench, members[:1] if alone else members, chosen[:1] if alone else chosen,
                                  labels, current)
        if alone and (why or label is not None and not _twins_agree(bench, members, chosen, label, current)):
            label, errors, why = _try(bench, members, chosen, labels, current)  # the twins' worst decides
        if label is not None:
            return label, errors, where
        if why:
            unreached = len(set(errors.values())) == 1 and not any(cell for cell, _ in chosen)
            return None, errors, f"at {where} the numbers do not separate them: {why}" + (
                " (its weights do not reach the outputs the models return)" if unreached else "")
        at = [index + 1 for index in at]


def _next_levels(bench, levels, at):
    """Each member's next level from `at` that runs on both sides. Twins in blocks of their own (an LLM's
    layers, their levels parallel) take the first member's: checking each would run every layer once per
    level, and a twin that does not run there refuses the winner (_twins_agree), so all are then checked."""
    first = bench.next_comparable(levels[0], at[0])
    if first is not None and len(set(at)) == 1 and len({len(unit_levels) for unit_levels in levels}) == 1 \
            and _apart([unit_levels[first][0] for unit_levels in levels]):
        return [first] * len(levels)
    return [first] + [bench.next_comparable(unit_levels, index) for unit_levels, index in zip(levels[1:], at[1:])]


def _try(bench, members, chosen, labels, current):
    """Score the candidates tier by tier on `chosen`; returns (label or None, {label: error}, why not)."""
    errors, distinct, done = {}, {}, 0
    label, why = None, ""
    for end in members[0].tiers or [len(labels)]:
        for index in range(done, end):
            _score(bench, members, chosen, index, labels[index], errors, distinct)
        done = end
        bench.set_weights(current)
        label, why = separated(errors, list(distinct.values()), bench.tolerance)
        if label is not None or why:
            break
    return label, errors, why


def _inside(cell, block):
    return not block or cell == block or cell.startswith(block + ".")


def _apart(cells):
    """True when the cells are distinct blocks, none inside another (so each runs its own member alone)."""
    return len(cells) > 1 and all(cells) and not any(
        one == other or other.startswith(one + ".") for i, one in enumerate(cells) for other in cells[i + 1:])


def _twins_agree(bench, members, chosen, label, current):
    """Whether the candidate `label`, set into every member, agrees within tolerance in every member's block."""
    index = [name for name, _ in members[0].candidates].index(label)
    bench.set_weights({ms_name: bench.entry(*value) for unit in members
                       for ms_name, value in unit.candidates[index][1].items()})
    try:
        for cell_path, module_path in chosen[1:]:
            error = bench.error(cell_path, module_path)
            if error is None or error > bench.tolerance:
                return False
        return True
    finally:
        bench.set_weights(current)


def _best(errors):
    label = min(errors, key=errors.__getitem__)
    return f"{label}: {_rounded(errors[label])}"


def _score(bench, members, chosen, index, label, errors, distinct):
    """Set candidate `index` into every member at once, and record the worst error of their blocks."""
    values = {}
    for unit in members:
        for ms_name, (torch_value, transform) in unit.candidates[index][1].items():
            values[ms_name] = bench.entry(torch_value, transform)  # computed when its block is read
    # One value at a time, hashed: an LLM's twins (every layer's w_gate_hidden) are never all held at once.
    fingerprint = tuple(_digest(bench.value(values[name].torch, values[name].transform)) for name in sorted(values))
    if fingerprint in distinct:  # the same numbers as an earlier candidate: the same answer
        errors[label] = errors[distinct[fingerprint]]
        return
    distinct[fingerprint] = label
    bench.set_weights(values)
    worst = 0.0
    for cell_path, module_path in chosen:
        error = bench.error(cell_path, module_path)
        worst = math.inf if error is None else max(worst, error)
    errors[label] = worst


def _digest(array):
    """A fingerprint of one array's numbers (shape and dtype included)."""
    array = np.ascontiguousarray(array)
    return array.shape, array.dtype.str, hashlib.blake2b(array.view(np.uint8), digest_size=16).digest()


def _candidate_levels(bench, unit, partners_of):
    """(MindSpore cell, PyTorch module) pairs around a unit, smallest first, ending with both whole models."""
    pairs = []
    common = _common_cell(bench, unit.slots)
    levels = _levels(common)
    if unit.kind in ("joined", "fused", "pieces") and {bench.cell_path(slot) for slot in unit.slots} == {common}:
        levels = levels[1:]  # a fused layer's own output is a layout, not a function: compare where it is read
    for path in levels:
        if path and path not in bench.cells:
            continue  # a Parameter.name prefix that is no attribute path (a training wrapper's "optimizer.")
        partner = partners_of(path)
        if partner is not None or not path:
            pairs.append((path, partner or ""))
    return pairs


def probe(config, matches, ms_rows, torch_rows, edits=None):
    """Settle the unsure entries by running both models; returns (matches, {ms_name: probe record}, summary).

    `edits` ({ms_name: (torch, transform)}, the hand edits stage 2 keeps) are run too, each against the
    entry the probe would give: summary["hand_edits"] says, per edit, both errors and whether the numbers
    contradict it (the probe's entry agrees, the hand edit does not)."""
    started = time.perf_counter()
    ms_shapes = {row.name: tuple(row.shape) for row in ms_rows}
    torch_shapes = {row.name: tuple(row.shape) for row in torch_rows}
    try:
        bench = Bench(config)
    except Pt2MsError as error:  # stage 2 still maps from names and shapes; stage 4 reports bad inputs itself
        return matches, {}, {"skipped": str(error), "seconds": time.perf_counter() - started}
    hints_for = lambda item: _head_hints(bench, item)  # noqa: E731
    units = find_units(matches, ms_shapes, torch_shapes, hints_for)
    edit_units = _edit_units(edits or {}, matches, bench)
    if not units and not edit_units:
        return matches, {}, {"decided": 0, "undecided": 0, "units": 0, "seconds": time.perf_counter() - started}
    by_name = {item.ms_name: item for item in matches}
    sources_by_cell = defaultdict(list)
    for item in matches:
        sources_by_cell[bench.cell_path(item.ms_name)] += sources_of(item)
    partner_cache = {}

    def partners_of(path):
        if path not in partner_cache:
            partner_cache[path] = bench.partner(path, sources_by_cell)
        return partner_cache[path]

    current = _current_values(bench, matches)
    bench.set_weights(current)
    levels = {(unit.kind, tuple(unit.slots)): _candidate_levels(bench, unit, partners_of)
              for unit in units + edit_units}
    try:
        watched = ({cell for pairs in levels.values() for cell, _ in pairs},
                   {module for pairs in levels.values() for _, module in pairs})
        bench.record(*watched)
    except ForwardFailed as failure:  # a kernel missing on this device, say: names and roles must decide
        where = f"layer {failure.layer}" if failure.layer else "its top-level forward"
        return _unprobed(matches, by_name, units, started, f"the {failure.side} model's forward fails in {where} "
                         f"({type(failure.error).__name__}: {first_line(failure.error)})")
    except Exception as error:  # noqa: BLE001 - a model that does not run on the inputs: no probe, say why
        return _unprobed(matches, by_name, units, started,
                         f"the models do not run on the config's inputs ({first_line(error)})")

    patterns = defaultdict(list)
    for unit in units:
        patterns[unit.pattern()].append(unit)
    extras, decided, undecided = {}, 0, 0
    # Each decision runs blocks of both models once per candidate: seconds each on a real model.
    bar = tqdm(total=len(patterns) + len(edit_units), desc="probe", unit="decision", leave=False, disable=None)
    kinds = ("experts", "joined", "fused", "pieces", "order", "transpose")
    order = sorted(patterns.values(), key=lambda members: kinds.index(members[0].kind))
    pending = order
    for sweep in range(2):  # a second sweep for decisions that needed another one made first
        left = []
        if sweep:
            bar.total += len(pending)
        # The first sweep keeps each pattern to blocks without other undecided entries; the second tries them all.
        open_cells = [{bench.cell_path(slot) for unit in members for slot in unit.slots} for members in pending]
        for position, members in enumerate(pending):
            members[:] = [refreshed(unit, by_name) for unit in members]
            unit_levels = [levels[(unit.kind, tuple(unit.slots))] for unit in members]
            waiting = () if sweep else set().union(*open_cells[:position], *open_cells[position + 1:])
            label, errors, where = _decide(bench, members, unit_levels, current, waiting)
            if label is None and "do not separate" in where:  # a gate or layer scale may hide the path: open it
                label, errors, where = _with_paths_open(bench, members, unit_levels, current, by_name, watched) \
                    or (label, errors, where)
            bar.update()
            shared = label is not None and shared_source(members, label, by_name)
            if shared:  # its block's partner is read from the entry itself: running it cannot test a tie
                label, where = None, f"{shared}: a block run cannot tell a tie from a wrong pairing"
            if label is None:
                left.append((members, errors, where))
                continue
            open_cells[position] = set()
            decided += sum(len(unit.slots) for unit in members)
            for unit in members:
                choice = dict(unit.candidates)[label]
                for ms_name, (torch_value, transform) in choice.items():
                    current[ms_name] = bench.entry(torch_value, transform)
                    item = by_name[ms_name]
                    by_name[ms_name] = replace(item, torch=torch_value, transform=transform, method="probed",
                                               confidence=0.99, note=f"probe ({unit.kind}): the only one of "
                                               f"{len(errors)} candidates tried that agrees, at {where}"
                                               + (f" and its {len(members) - 1} twins" if len(members) > 1 else ""))
                    extras[ms_name] = _record(unit, errors, label)
            bench.set_weights(current)
        pending = [members for members, _, _ in left]
        if not left:
            break
    for members, errors, reason in left:
        undecided += sum(len(unit.slots) for unit in members)
        for unit in members:
            for ms_name in unit.slots:
                item = by_name[ms_name]
                if item.method == "probed":
                    continue
                by_name[ms_name] = replace(item, confidence=0.0,
                                           note=f"probe ({unit.kind}) could not decide: {reason}; {item.note}")
                extras[ms_name] = _record(unit, errors, None)
    summary = {"decided": decided, "undecided": undecided, "units": len(units), "patterns": len(patterns),
               "hand_edits": _check_edits(bench, edit_units, by_name, current, levels, bar),
               "blocks_read": sorted(set(bench.materialised)), "block_runs": len(bench.materialised),
               "seconds": time.perf_counter() - started}
    bar.close()
    return [by_name[item.ms_name] for item in matches], extras, summary


SETTLED_BY_ROLES = {"role", "experts"}  # methods whose pairing and layout role words or the port family settle
UNPROBED = round(UNSURE - 0.01, 2)


def _unprobed(matches, by_name, units, started, why):
    """The probe could not run: no entry it would have decided stays sure (>= UNSURE) unless role words settled
    it, and the summary says why in one line."""
    capped, slots = 0, {slot for unit in units for slot in unit.slots}
    for name in slots:
        item = by_name[name]
        if item.confidence >= UNSURE and item.method not in SETTLED_BY_ROLES:
            by_name[name] = replace(item, confidence=UNPROBED, note=f"{item.note}; not probed: {why}".lstrip("; "))
            capped += 1
    summary = {"skipped": f"{why}; the {len(slots)} entries it would have decided stay below {UNSURE} ({capped} "
                          "lowered) unless role words settled them", "capped": capped,
               "seconds": time.perf_counter() - started}
    return [by_name[item.ms_name] for item in matches], {}, summary


def _edit_units(edits, matches, bench):
    """One unit per hand edit the probe can run: the edit against the entry the matcher proposes."""
    fresh = {item.ms_name: item for item in matches}
    units = []
    for ms_name, (torch_value, transform) in edits.items():
        item = fresh.get(ms_name)
        try:  # an edit that does not fit (a conflict stage 2 reports), or sets no value, is not run
            if None in (torch_value, item and item.torch) or \
                    bench.value(torch_value, transform).shape != tuple(bench.params[bench.own(ms_name)].shape):
                continue
        except Exception:  # noqa: BLE001 - a missing tensor or parameter, a transform that does not apply
            continue
        units.append(Unit("hand edit", [ms_name], [("hand edit", {ms_name: (torch_value, transform)}),
                                                   ("probe", {ms_name: (item.torch, item.transform)})]))
    return units


def _check_edits(bench, units, by_name, current, levels, bar):
    """{ms_name: both errors, where, the probe's entry, and whether the numbers contradict the hand edit}."""
    results = {}
    for unit in units:
        ms_name = unit.slots[0]
        item = by_name[ms_name]  # the probe's entry as decided above
        unit.candidates[1] = ("probe", {ms_name: (item.torch, item.transform)})
        label, errors, where = _decide(bench, [unit], [levels[(unit.kind, tuple(unit.slots))]], current)
        results[ms_name] = {"contradicted": label == "probe", "where": where, "probe_entry": (item.torch, item.transform),
                            "hand_error": _rounded(errors.get("hand edit")), "probe_error": _rounded(errors.get("probe"))}
        bar.update()
    return results


def _with_paths_open(bench, members, levels, current, by_name, watched):
    """The decision rerun with the gates and layer scales around it set to seeded values on both sides (and both
    models recorded again), so that a path they damp counts; None when there are none. Restores both after."""
    gates = gates_around(bench, members, by_name)
    if not gates:
        return None
    # The PyTorch model is built empty: its gates are set where its blocks read their tensors.
    previous = bench.set_torch_weights({by_name[ms_name].torch: values for ms_name, values in gates.items()})
    try:
        opened = {**current, **gates}
        bench.set_weights(opened)
        bench.record(*watched)
        label, errors, where = _decide(bench, members, levels, opened)
    finally:
        bench.restore_torch_weights(previous)
        bench.set_weights(current)
        bench.record(*watched)
    return label, errors, f"{where}, with {', '.join(sorted(gates))} set so the path counts"


def _record(unit, errors, label):
    """What `found` keeps of a probe: every candidate's entry for this unit, and its error."""
    return {"probe": unit.kind, "chosen": label,
            "candidates": [{"label": candidate_label, "error": _rounded(errors.get(candidate_label)),
                            "entries": {name: {"torch": torch_value, "transform": transform}
                                        for name, (torch_value, transform) in choice.items()}}
                           for candidate_label, choice in unit.candidates]}


def _rounded(error):
    if error is None:
        return None
    return "not comparable" if math.isinf(error) else float(f"{error:.3g}")


def _current_values(bench, matches):
    values = {}
    for item in matches:
        if item.torch is None or bench.own(item.ms_name) not in bench.params:
            continue
        try:  # computed when its block is read: the whole model's weights are never held at once
            if bench.shape_of(item.torch, item.transform) == tuple(bench.params[bench.own(item.ms_name)].shape):
                values[item.ms_name] = bench.entry(item.torch, item.transform)
        except Exception:  # an entry that does not apply here is left at the model's own value
            continue
    return values


def _head_hints(bench, item):
    """Head counts read from the attributes of the layers around an entry, on both sides."""
    hints = set()
    owners = [bench.cells.get(path) for path in _levels(bench.cell_path(item.ms_name))[:3]]
    torch_module = bench.torch_module_of(sources_of(item)[0])
    owners += [bench.modules.get(path) for path in _levels(torch_module)[:3]]
    for owner in owners:
        for attr in HEAD_ATTRS:
            value = getattr(owner, attr, None) if owner is not None else None
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                hints.add(value)
    return hints


def wanted(config):
    """Whether the config gives what the probe needs: both models, the checkpoint and inputs."""
    return bool(config.torch.model and config.mindspore.model and config.torch.checkpoint and config.verify.inputs)
