"""Stage 2: the map file maps/<name>.json, built from the stage-1 inventories, merged with hand edits.

File layout (JSON):
  "map"        MindSpore Parameter.name -> PyTorch name | null | {"torch": name or [names],
               "transform": "...", "tied": true}. The only part stage 3 reads. Lowest confidence first.
  "found"      per MindSpore name: method (exact, rule, structural, transform, order, probed, manual, none),
               confidence 0..1, and a note saying why; probed entries add every candidate and its error.
  "ignored"    tensors that take no part ({"torch": {name: reason}, "mindspore": {...}}).
  "unused_torch"  PyTorch tensors no entry reads.
  "conflicts"  hand edits that disagree with the inventories (kept as written; stage 3 will refuse them).
  "suggested"  what stage 2 proposed last time. An entry of "map" that differs from it is a hand edit,
               and a rerun keeps it.
"""

import time

from pt2ms.errors import Pt2MsError
from pt2ms.formats.files import write_json
from pt2ms.formats.inventory import read_inventory
from pt2ms.formats.tables import write_map_review
from pt2ms.mapping import probe, transforms
from pt2ms.mapping.mapfile import hand_edits, parse_value, read_map, shape_after
from pt2ms.mapping.matching import Match, ignored_reason, match, position_note
from pt2ms.mapping.probe_units import find_units
from pt2ms.mapping.splits import propose_splits


def to_value(item):
    """A Match as it is written in "map": a plain name when that says everything."""
    if item.torch is None:
        return None
    if not item.transform and not item.tied and isinstance(item.torch, str):
        return item.torch
    value = {"torch": item.torch}
    if item.transform:
        value["transform"] = item.transform
    if item.tied:
        value["tied"] = True
    return value


def check_entry(ms_row, entry, torch_rows):
    """Why an entry cannot work with these inventories, or "" if it can."""
    if ms_row is None:
        return "no MindSpore parameter has this name"
    if not entry.torch_names:
        return ""
    missing = [name for name in entry.torch_names if name not in torch_rows]
    if missing:
        return f"PyTorch checkpoint has no tensor {missing[0]!r}"
    try:
        shape = shape_after(transforms.parse(entry.transform), [torch_rows[name].shape for name in entry.torch_names])
    except Pt2MsError as error:
        return str(error)
    if tuple(shape) != tuple(ms_row.shape):
        source = " + ".join(f"{n} {list(torch_rows[n].shape)}" for n in entry.torch_names)
        via = f" after {entry.transform!r}" if entry.transform else ""
        return f"shape mismatch: MindSpore {list(ms_row.shape)} vs PyTorch {source}{via}"
    return ""


def split_ignored(ms_rows, torch_rows):
    """(kept MindSpore rows, kept torch rows, {"torch": {...}, "mindspore": {...}} of ignored names)."""
    ms_names = {row.name for row in ms_rows}
    ignored = {"torch": {}, "mindspore": {}}
    kept = {}
    for side, rows in (("mindspore", ms_rows), ("torch", torch_rows)):
        kept[side] = []
        for row in rows:
            reason = ignored_reason(row, ms_names, side == "mindspore")
            if reason:
                ignored[side][row.name] = reason
            else:
                kept[side].append(row)
    return kept["mindspore"], kept["torch"], ignored


def hand_edit_entries(previous, where):
    """{ms_name: parsed Entry} of the hand edits found in an earlier map."""
    return {ms_name: parse_value(value, ms_name, where) for ms_name, value in hand_edits(previous).items()}


def _torch_value(entry):
    return (entry.torch_names[0] if len(entry.torch_names) == 1 else entry.torch_names) or None


def merge(fresh, previous, ms_rows, torch_rows, where, checked=None):
    """Fresh matches, overridden by the hand edits found in `previous`; returns (matches, conflicts).

    A hand edit is kept as written; one that the probe's numbers contradict (`checked`, from probe.probe's
    summary["hand_edits"]) drops to confidence 0, with both errors in its note, so it heads the review list."""
    by_name = {row.name: row for row in ms_rows}
    torch_by_name = {row.name: row for row in torch_rows}
    matches = {item.ms_name: item for item in fresh}
    conflicts = []
    for ms_name, entry in hand_edit_entries(previous, where).items():
        problem = check_entry(by_name.get(ms_name), entry, torch_by_name)
        if problem:
            conflicts.append({"ms_name": ms_name, "value": previous["map"][ms_name], "problem": problem})
        evidence = (checked or {}).get(ms_name, {})
        confidence, note = 1.0, "hand edit" + (f" (conflict: {problem})" if problem else "")
        if evidence.get("contradicted"):
            confidence = 0.0
            torch_value, transform = evidence["probe_entry"]
            probe_entry = torch_value if not transform else f"{torch_value} ({transform})"
            note = (f"hand edit contradicted by the probe: it gives error {evidence['hand_error']} at "
                    f"{evidence['where']}, while {probe_entry} gives {evidence['probe_error']} "
                    "(kept as written; fix or confirm it)")
        matches[ms_name] = Match(ms_name, _torch_value(entry), entry.transform, entry.tied, "manual", confidence, note)
    return list(matches.values()), conflicts


def to_probe(fresh, ms_rows, torch_rows, edit_entries):
    """How many things the probe would run, counted from the inventories before any model is built: its
    decisions (probe_units.find_units; the head counts it reads from the built models add candidates to a
    decision, never a decision) and the hand edits it would check (those that set a value, fit the shapes,
    and stand where the matcher proposes a value too)."""
    ms_shapes = {row.name: tuple(row.shape) for row in ms_rows}
    torch_shapes = {row.name: tuple(row.shape) for row in torch_rows}
    decisions = find_units(fresh, ms_shapes, torch_shapes, lambda item: set())
    by_name = {row.name: row for row in ms_rows}
    torch_by_name = {row.name: row for row in torch_rows}
    proposed = {item.ms_name for item in fresh if item.torch is not None}
    edits = [ms_name for ms_name, entry in edit_entries.items() if entry.torch_names and ms_name in proposed
             and not check_entry(by_name.get(ms_name), entry, torch_by_name)]
    return len(decisions) + len(edits)


def build_map(config):
    """Stage 2: write maps/<name>.json from the stage-1 inventories; returns a summary dict."""
    ms_all = read_inventory(config.output_dir / "ms_params.csv")
    torch_all = read_inventory(config.output_dir / "torch_params.csv")
    ms_rows, torch_rows, ignored = split_ignored(ms_all, torch_all)
    previous = read_map(config.map_path) if config.map_path.exists() else None
    fresh = propose_splits(match(ms_rows, torch_rows), ms_rows, torch_rows)
    probed, probe_summary = {}, None
    if probe.wanted(config):  # both models given: run them to settle what names and shapes cannot
        started = time.perf_counter()
        entries = hand_edit_entries(previous, config.map_path)
        edits = {ms_name: (_torch_value(entry), entry.transform) for ms_name, entry in entries.items()}
        if to_probe(fresh, ms_rows, torch_rows, entries):
            fresh, probed, probe_summary = probe.probe(config, fresh, ms_rows, torch_rows, edits)
        else:  # building and running both models costs seconds: not for a map the inventories settle
            probe_summary = {"decided": 0, "undecided": 0, "units": 0, "patterns": 0, "nothing_to_decide": True,
                             "seconds": time.perf_counter() - started}
    checked = (probe_summary or {}).get("hand_edits", {})
    matches, conflicts = merge(fresh, previous, ms_rows, torch_rows, config.map_path, checked)
    order = {row.name: index for index, row in enumerate(ms_rows)}
    # Lowest confidence first; among equals, a hand edit the probe contradicts first: it is a person's mistake.
    matches.sort(key=lambda item: (item.confidence, item.method != "manual", order.get(item.ms_name, len(order))))
    used = {name for item in matches for name in ([item.torch] if isinstance(item.torch, str) else item.torch or [])}
    unused = [row.name for row in torch_rows if row.name not in used]
    data = {
        "about": "MindSpore Parameter.name -> PyTorch name. Edit \"map\" by hand (null = keep the initial value); "
                 "reruns of stage 2 keep your edits. Lowest confidence first. See README, 'Stage 2'.",
        "name": config.name,
        "position": position_note(ms_rows, torch_rows),  # where each side's layer order came from
        "map": {item.ms_name: to_value(item) for item in matches},
        "found": {item.ms_name: {"method": item.method, "confidence": item.confidence, "note": item.note,
                                 **probed.get(item.ms_name, {})} for item in matches},
        "ignored": ignored,
        "unused_torch": unused,
        "conflicts": conflicts,
        "suggested": {item.ms_name: to_value(item) for item in fresh},
    }
    write_json(config.map_path, data)
    review = write_map_review(config.output_dir / "map_review.csv", matches, ms_all, torch_all)
    return {"path": config.map_path, "review": review, "matches": matches, "unused": unused, "ignored": ignored,
            "conflicts": conflicts, "kept_edits": [item for item in matches if item.method == "manual"],
            "position": data["position"], "probe": probe_summary}


def score(map_data, reference):
    """Per-entry agreement of a map with a reference map: {"right", "total", "wrong": [(name, got, expected)]}."""
    expected = reference["map"] if "map" in reference else reference
    got = map_data["map"]
    wrong = [(name, got.get(name, "<missing>"), value) for name, value in expected.items() if got.get(name, "<missing>") != value]
    extra = [name for name in got if name not in expected]
    return {"right": len(expected) - len(wrong), "total": len(expected), "wrong": wrong, "extra": extra}
