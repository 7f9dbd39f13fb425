"""Stage 4: run both models on the same inputs and compare them, output by output and layer by layer.

Layers are paired through the map (pt2ms/verify/pairing.py): a MindSpore cell and the PyTorch module whose
parameters feed it are the same layer; parameter-free layers pair by kind between paired layers, and
blocks around them. Their settings are compared before anything runs. One recorded pass per side gives
each pair's inputs and outputs; isolation feeds each MindSpore cell the inputs its PyTorch partner saw
(pt2ms/verify/layer_compare.py). pt2ms/verify/diagnosis.py turns all that into the cause, in words.
"""

import re

import numpy as np
from tqdm import tqdm

from pt2ms.errors import ModelRunError, Pt2MsError
from pt2ms.formats.inventory import read_inventory
from pt2ms.formats.shards import converted_outputs
from pt2ms.mapping.mapfile import read_map
from pt2ms.running import compare
from pt2ms.running.models import cast_summary, cast_torch, load_ms, load_torch, make_inputs
from pt2ms.running.recording import ForwardFailed, first_line, is_array, ms_numpy, record_ms, record_torch, torch_numpy
from pt2ms.running.settings import paired_settings
from pt2ms.verify import streamed
from pt2ms.verify.diagnosis import causes, first_divergence, numbers_differ, output_mismatch, setting_effects
from pt2ms.verify.layer_compare import BOUNDARY, compare_pairs
from pt2ms.verify.pairing import (
    Flows,
    crossed_pairs,
    entry_links,
    find_blocks,
    mixed_entries,
    moved_operations,
    pair_layers,
    pair_parameter_free,
    parameter_free_leaves,
)

__all__ = ["verify", "BOUNDARY", "make_inputs", "overall_verdict"]


# --- outputs -------------------------------------------------------------------------------------------

def _select(output, keys, side, source):
    """[(label, value)]: the outputs `keys` picks ([verify] outputs), or the whole output. A bare tensor is
    a one-output model: key 0 picks it whole."""
    if not keys:
        return [output]
    picked = []
    for key in keys:
        if is_array(output) and isinstance(key, int):
            # A model that returns one bare tensor returns one output: position 0 is that tensor, not its
            # first row, and there is no other position.
            if key != 0:
                raise Pt2MsError(f"{source}: [verify] outputs: {side}'s output is one tensor, so only position 0 "
                                 f"exists, not {key!r}")
            picked.append(output)
            continue
        try:
            value = output[key] if not isinstance(key, str) or isinstance(output, dict) else getattr(output, key)
        except (KeyError, IndexError, TypeError, AttributeError):
            raise Pt2MsError(f"{source}: [verify] outputs: {side}'s output has no {key!r} "
                             f"(it is a {type(output).__name__})") from None
        picked.append(value)
    return picked


def _flat(picked, labels, to_numpy, side):
    """Arrays as [(label, array)], and a note for each value that is not an array (a cache, None)."""
    flat, notes = [], []
    for label, value in zip(labels, picked):
        for inner_label, inner in compare.flatten(value, label):
            if is_array(inner):
                flat.append((inner_label, to_numpy(inner)))
            else:
                notes.append(f"{side} `{inner_label}`: skipped, a {type(inner).__name__} is not a tensor")
    return flat, notes


def run_models(model, net, torch_inputs, ms_inputs, selection=None, source="the config", follow=False):
    """One forward pass of each model: (torch outputs, MindSpore outputs, notes, torch Recording, MindSpore
    Recording); `follow` records the data flow between every leaf and every layer that owns parameters.

    selection: [verify] outputs ({"torch": [...], "mindspore": [...]}), pairing outputs position by position.
    """
    selection = selection or {}
    torch_rec, torch_out = record_torch(model, torch_inputs, units=_flow_units(model.named_modules()) if follow else None)
    ms_rec, ms_out = record_ms(net, ms_inputs, units=_flow_units(net.cells_and_names()) if follow else None)
    torch_keys, ms_keys = selection.get("torch", []), selection.get("mindspore", [])
    labels = [f"output[{key!r}]" for key in torch_keys] if torch_keys else ["output"]
    torch_flat, torch_notes = _flat(_select(torch_out, torch_keys, "PyTorch", source), labels, torch_numpy, "PyTorch")
    ms_flat, ms_notes = _flat(_select(ms_out, ms_keys, "MindSpore", source), labels, ms_numpy, "MindSpore")
    return torch_flat, ms_flat, torch_notes + ms_notes, torch_rec, ms_rec


def compare_outputs(torch_flat, ms_flat, tolerance):
    """Per-output metrics; a different number, nesting or shape of outputs is itself a difference."""
    results = []
    ms_by_label = dict(ms_flat)
    for label, torch_value in torch_flat:
        if label not in ms_by_label:
            results.append({"output": label, "compared": 0, "verdict": "differ",
                            "note": "MindSpore gives no output here"})
            continue
        metric = compare.metrics(ms_by_label[label], torch_value)
        results.append({"output": label, **metric, "verdict": compare.verdict(metric, tolerance),
                        **_shape_note(metric)})
    torch_labels = {label for label, _ in torch_flat}
    # Code written for PyTorch's outputs would not expect an output more: report it rather than drop it.
    results += [{"output": label, "compared": 0, "verdict": "differ", "note": "only MindSpore gives this output"}
                for label, _ in ms_flat if label not in torch_labels]
    return results


def _shape_note(metric):
    """A note for an output whose shape differs between the two models."""
    if metric.get("sizes_differ"):
        return {"note": f"shapes differ: MindSpore {metric['shape_ms']}, PyTorch {metric['shape_torch']}"}
    if metric.get("shapes_differ"):
        return {"note": f"shapes differ: MindSpore {metric['shape_ms']}, PyTorch {metric['shape_torch']} "
                        "(the errors compare the values in memory order)"}
    return {}


# --- layers --------------------------------------------------------------------------------------------

def _own_parameters(layer):
    if hasattr(layer, "named_parameters"):
        return any(True for _ in layer.named_parameters(recurse=False))
    return any(True for _ in layer.get_parameters(expand=False))


def _children(layer):
    return list(layer.named_children()) if hasattr(layer, "named_children") and not hasattr(layer, "name_cells") \
        else list(layer.name_cells().items())


def _holds_layers(layer):
    """Whether a layer has a descendant that owns parameters."""
    layers = layer.modules() if hasattr(layer, "modules") and not hasattr(layer, "name_cells") else layer.cells_and_names()
    return any(_own_parameters(inner) for inner in (item[1] if isinstance(item, tuple) else item for item in layers)
               if inner is not layer)


def _flow_units(layers):
    return {name for name, layer in layers if name and (not _children(layer) or _own_parameters(layer))}


def _signature(module):
    return type(module).__name__, tuple(tuple(p.shape) for _, p in module.named_parameters(recurse=False))


def pair_everything(model, net, links, torch_rec, ms_rec):
    """All pairs as [(cell, module, kind)], the settings that differ, and the map and order problems, from
    the map and the first pass's recordings (order and data flow)."""
    torch_order, ms_order = torch_rec.order, ms_rec.order
    flows = Flows(torch_rec.feeds, ms_rec.feeds)
    modules, cells = dict(model.named_modules()), dict(net.cells_and_names())
    holders = {"torch": {name for name, module in modules.items() if _holds_layers(module)},
               "mindspore": {name for name, cell in cells.items() if _holds_layers(cell)}}
    pairs = pair_layers(links, set(modules), set(cells), lambda side, path: path in holders[side])
    torch_free = parameter_free_leaves(modules.items(), _own_parameters, _children)
    ms_free = parameter_free_leaves(cells.items(), _own_parameters, _children)
    free, moved = pair_parameter_free(pairs, torch_order, ms_order, torch_free, ms_free, flows)
    descendants = {name: [other for other in modules if other.startswith(name + ".")]
                   for name, module in modules.items() if name and _children(module)}
    blocks = find_blocks(descendants, links, pairs, set(cells))
    torch_position = {name: i for i, name in enumerate(torch_order)}
    ms_position = {name: i for i, name in enumerate(ms_order)}
    signatures = {name: _signature(module) for name, module in modules.items()}
    map_problems = mixed_entries(pairs, links) + crossed_pairs(pairs, links, torch_position, ms_position, signatures,
                                                               flows)
    everything = [(c, m, "layer") for c, m in pairs] + [(c, m, "parameter-free") for c, m in free] + \
                 [(c, m, "block") for c, m in blocks]
    # Spatial sizes: what MindSpore's pad_mode='same' pads at stride > 1 depends on them.
    sizes = {name: tuple(shape[2:]) for name, shape in torch_rec.shapes.items() if len(shape) > 2}
    settings_differ, settings_alike = paired_settings(pairs + free, modules, cells, sizes)
    return {"pairs": pairs, "everything": everything, "flows": flows, "free": free, "blocks": blocks,
            "settings_differ": settings_differ, "settings_alike": settings_alike, "map_problems": map_problems,
            "order_problems": moved_operations(moved, torch_order, ms_order, pairs)}


def _explained_settings(settings_differ, rows):
    """Settings that differ, less those of a layer marked "boundary differs" (its built-in activation, the
    padding a separate layer applies before it): they are noted on that layer instead."""
    boundary = {row["torch"]: row for row in rows if row["verdict"] == BOUNDARY}
    for item in settings_differ:
        if item["torch"] in boundary:
            boundary[item["torch"]]["note"] += (f"; its {item['setting']} differs (MindSpore {item['mindspore_value']!r}, "
                                                f"PyTorch {item['torch_value']!r}), which this explains")
    return [item for item in settings_differ if item["torch"] not in boundary]


# --- inputs: seeded, or a user's dataset -----------------------------------------------------------------

def dataset_batches(config):
    """[(torch batch, MindSpore batch)] from the user's map-style dataset, through each framework's pipeline.

    The same dataset object feeds PyTorch through a DataLoader and MindSpore through GeneratorDataset and
    batch (seed 000's recipe); both see the samples in order, so batch i is the same data on both sides.
    """
    import mindspore.dataset as ds
    import torch.utils.data

    from pt2ms.running.build import call_factory

    dataset = call_factory(config.verify.dataset, config.verify.dataset_kwargs, config.source, "[verify] dataset")
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise Pt2MsError(f"{config.source}: dataset {config.verify.dataset!r} needs __getitem__ and __len__")
    try:
        first = dataset[0]
        fields = len(first) if isinstance(first, (tuple, list)) else 1
        count = config.verify.dataset_inputs
        columns = [f"column{i}" for i in range(fields)]
        ms_data = ds.GeneratorDataset(dataset, column_names=columns, shuffle=False).batch(config.verify.batch_size)
        torch_data = torch.utils.data.DataLoader(dataset, batch_size=config.verify.batch_size, shuffle=False)
        batches = []
        for torch_batch, ms_batch in zip(torch_data, ms_data.create_tuple_iterator(output_numpy=True)):
            torch_batch = torch_batch if isinstance(torch_batch, (list, tuple)) else [torch_batch]
            batches.append(([np.asarray(x) for x in torch_batch[:count]], [np.asarray(x) for x in ms_batch[:count]]))
            if len(batches) == config.verify.batches:
                break
    except Exception as error:  # the user's code, or a pipeline reporting it in a page of trace: one line
        raise Pt2MsError(f"{config.source}: dataset {config.verify.dataset!r} failed while reading samples: "
                         f"{_user_error(error)}") from None
    if not batches:
        raise Pt2MsError(f"{config.source}: dataset {config.verify.dataset!r} gave no batch")
    return batches


def _user_error(error):
    """The user's own exception line, also when MindSpore's pipeline wraps it in a page of call stacks."""
    lines = re.findall(r"^(\w+(?:Error|Exception|Interrupt)\b.*)$", str(error), re.MULTILINE)
    return lines[0][:200] if lines else f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200] if str(error).strip() else ''}"


def converted_checkpoint(config):
    """Stage 3's output: <name>.ckpt, <name>.safetensors or the shards' index, the newest where several exist."""
    found = converted_outputs(config.output_dir, config.name)
    if not found:
        raise Pt2MsError(f"{config.output_dir}: no {config.name}.ckpt or {config.name}.safetensors; run stage 3 first")
    return max(found, key=lambda path: path.stat().st_mtime_ns)


def stale_checkpoint_warnings(map_path, ckpt_path):
    """A warning when the map was edited after stage 3 wrote the checkpoint, which then holds an older map."""
    try:
        stale = map_path.stat().st_mtime_ns > ckpt_path.stat().st_mtime_ns
    except FileNotFoundError:
        return []  # a missing checkpoint is load_ms's to report
    if not stale:
        return []
    return [f"map changed after the checkpoint was written: rerun 3_pth2ckpt.py ({map_path} is newer than {ckpt_path})"]


def _input_batches(config):
    """[(torch inputs, MindSpore inputs)]: the user's dataset, or one seeded batch fed to both."""
    if config.verify.dataset:
        return dataset_batches(config)
    if not config.verify.inputs:
        raise Pt2MsError(f"{config.source}: [verify] needs inputs (shapes) or a dataset")
    arrays = make_inputs(config.verify.inputs, config.verify.seed, config.source)
    return [(arrays, arrays)]


def _output_selection(config):
    """[verify] outputs, checked: {"torch": [keys], "mindspore": [keys]} of equal length, or {}."""
    selection = getattr(config.verify, "outputs", None) or {}
    if not isinstance(selection, dict) or set(selection) - {"torch", "mindspore"}:
        raise Pt2MsError(f"{config.source}: [verify] outputs must be a table with keys torch and mindspore, "
                         'e.g. outputs = { torch = ["logits"], mindspore = [0] }')
    torch_keys, ms_keys = selection.get("torch", []), selection.get("mindspore", [])
    if not isinstance(torch_keys, list) or not isinstance(ms_keys, list) or len(torch_keys) != len(ms_keys) or \
            not all(isinstance(key, (str, int)) and not isinstance(key, bool) for key in torch_keys + ms_keys):
        raise Pt2MsError(f"{config.source}: [verify] outputs: torch and mindspore must list as many keys "
                         f"(output names or positions), got {torch_keys!r} and {ms_keys!r}")
    return selection


# --- the verdict ---------------------------------------------------------------------------------------

def _reasons(outputs, layers_wanted, layers_paired):
    """Why the run verifies nothing, however well what it did compare agrees."""
    reasons = []
    if all(row["verdict"] == "not compared" for row in outputs):
        reasons.append("no output was compared")
    if layers_wanted and not layers_paired:
        reasons.append("no layer could be paired through the map")
    return reasons


def overall_verdict(outputs, reasons, cause=None):
    """One output that differs makes the models differ, whatever else could not be compared; so does a cause
    found inside (a layer computing something else, a wrong map entry, a setting) when the outputs stay within
    tolerance. Else any reason makes the run "not compared"; else the worst verdict of the outputs compared."""
    verdicts = {row["verdict"] for row in outputs}
    if "differ" in verdicts or (cause and cause["kind"] not in ("accumulated", "after layers")):
        return "differ"
    if reasons:
        return "not compared"
    return compare.worst(verdicts & set(compare.AGREEMENT))


def summarise(outputs, rows, found, settings_differ, layers_wanted, layers_paired):
    """The verdict, why nothing was verified if so, the cause and where the models part."""
    reasons = _reasons(outputs, layers_wanted, layers_paired)
    outputs_differ = any(row["verdict"] == "differ" for row in outputs)
    divergence = first_divergence(found, rows, settings_differ, outputs_differ, output_mismatch(outputs))
    verdict = overall_verdict(outputs, reasons, divergence)
    units = [row for row in rows if row["kind"] != "block"]
    return {
        "agree": verdict in compare.AGREEMENT,
        "verdict": verdict,
        "outputs_agree": not outputs_differ and bool(outputs) and verdict != "not compared",
        "layers_differ": sum(row["verdict"] == "differ" for row in units),
        "reasons": reasons,
        "cause": divergence["sentence"] if divergence else None,
        "first_divergence": divergence["text"] if divergence else None,
        "first_divergence_detail": divergence,
        # Training-only settings that differ: never the inference verdict, but named (and --train measures them).
        "differs_in_training": [item for item in settings_differ if item.get("effect") == "training"],
    }


def _failed(config, ckpt_path, batches, warnings, failure, where):
    """Write the report of a run whose forward failed, then raise the one-line error (exit code 3)."""
    from pt2ms.verify.report import write_reports

    layer = f"layer `{failure.layer}`" if failure.layer else "its top-level forward"
    reason = f"{failure.side}'s forward failed {where} in {layer}: {type(failure.error).__name__}: " \
             f"{first_line(failure.error)}"
    result = {"name": config.name, "agree": False, "verdict": "not compared", "outputs_agree": False,
              "layers_differ": 0, "reasons": [reason], "cause": None, "first_divergence": None,
              "first_divergence_detail": None, "failed": {"side": failure.side, "layer": failure.layer,
                                                         "error": str(failure)},
              "warnings": warnings, "tolerance": config.verify.tolerance, "exact_threshold": compare.EXACT,
              "torch_checkpoint": str(config.torch.checkpoint), "mindspore_checkpoint": str(ckpt_path),
              "batches": len(batches), "inputs": [list(x.shape) for x in batches[0][0]], "outputs": [],
              "layers": [], "layers_paired": 0, "settings_differ": [], "map_problems": [], "order_problems": [],
              "load_notes": []}
    write_reports(result, config.output_dir)
    raise ModelRunError(f"{config.source}: {reason}") from None


def verify(config, train=False, stream=False):
    """Stage 4: compare the two models; writes verify.md/json/png and returns the result dict.

    train: also run one training step on both (pt2ms.verify.training), after the inference comparison.
    stream: hold one block of each model at a time (pt2ms/verify/streamed.py); also chosen when both models in
    float32 would not fit in the memory available.

    A forward pass that fails still writes the report ("not compared", with the reason), then raises
    ModelRunError (exit code 3).
    """
    from pt2ms.verify.report import write_reports

    ckpt_path = converted_checkpoint(config)
    map_data = read_map(config.map_path)
    ms_rows = read_inventory(config.output_dir / "ms_params.csv")
    if not config.mindspore.model:
        raise Pt2MsError(f"{config.source}: stage 4 needs [mindspore] model (a factory), not only a template")
    warnings = stale_checkpoint_warnings(config.map_path, ckpt_path)
    batches = _input_batches(config)  # before loading: a bad [verify] section fails fast
    stream, stream_reason = streamed.choose(config, stream)
    if stream and train:
        raise Pt2MsError(f"{config.source}: --train needs both models in memory, and this run streams them "
                         f"({stream_reason}); verify without --train, or on a machine with more memory")
    if train:
        from pt2ms.verify.training import check_settings
        check_settings(config)
    selection = _output_selection(config)
    streaming = streamed.open_streamed(config, ckpt_path, map_data, stream_reason) if stream else None
    if streaming:
        model, net, load_notes = streaming.model, streaming.net, streaming.notes
        torch_casts, ms_casts = streaming.casts
    else:
        model = load_torch(config)
        torch_casts = cast_torch(model, config)
        net, load_notes, ms_casts = load_ms(config, ckpt_path, map_data)
    tolerance = config.verify.tolerance
    outputs, first_pass = [], None
    try:
        for index, (torch_inputs, ms_inputs) in enumerate(tqdm(batches, desc="batches", unit="batch", leave=False,
                                                               disable=None)):
            torch_flat, ms_flat, notes, torch_rec, ms_rec = run_models(model, net, torch_inputs, ms_inputs, selection,
                                                                       config.source, follow=index == 0)
            first_pass = first_pass or (torch_rec, ms_rec)
            load_notes += [note for note in notes if note not in load_notes]
            for item in compare_outputs(torch_flat, ms_flat, tolerance):
                outputs.append({"batch": index, **item})
    except ForwardFailed as failure:
        _failed(config, ckpt_path, batches, warnings, failure, f"on batch {index}")
    links = entry_links(ms_rows, map_data, {n for n, _ in model.named_modules()})
    found = pair_everything(model, net, links, *first_pass)
    rows, calls = [], []
    if config.verify.layers:
        first_torch, first_ms = batches[0]
        if first_torch is not first_ms and not all(np.array_equal(a, b) for a, b in zip(first_torch, first_ms)):
            load_notes.append("the two data pipelines gave different first batches; layer inputs will differ")
        try:
            rows, torch_rec = compare_pairs(model, net, first_torch, found["everything"], tolerance,
                                            weights_for=streaming and streaming.weights_for,
                                            op_tolerance=compare.op_tolerance(config.verify.dtype))
        except ForwardFailed as failure:
            _failed(config, ckpt_path, batches, warnings, failure, "while recording layers")
        calls = torch_rec.calls
    settings_differ = setting_effects(_explained_settings(found["settings_differ"], rows), rows)
    # Order and data flow are hints: a map or order problem becomes a cause only when numbers show a difference
    # (an output, or a layer that computes something else fed PyTorch's inputs); drift a layer inherits in the
    # full run is not one. Unconfirmed findings are still listed, as such.
    numeric = numbers_differ(outputs, rows, tolerance)
    map_problems = found["map_problems"] if numeric else []
    order_problems = found["order_problems"] if numeric else []
    unconfirmed = [] if numeric else [problem["text"] for problem in found["map_problems"] + found["order_problems"]]
    # Without layers only a setting can be named (settings are read without running anything).
    candidates = causes(rows, settings_differ, map_problems, order_problems, links, calls, tolerance,
                        found["settings_alike"]) \
        if config.verify.layers else causes([], settings_differ, [], [], links, [], tolerance)
    result = {
        "name": config.name,
        **summarise(outputs, rows, candidates, settings_differ, config.verify.layers, len(found["pairs"])),
        "warnings": warnings,
        "tolerance": tolerance,
        "exact_threshold": compare.EXACT,
        "op_tolerance": compare.op_tolerance(config.verify.dtype),
        "torch_checkpoint": str(config.torch.checkpoint),
        "mindspore_checkpoint": str(ckpt_path),
        "batches": len(batches),
        "inputs": [list(x.shape) for x in batches[0][0]],
        "outputs": outputs,
        "layers": rows,
        "layers_paired": len(found["pairs"]),
        "parameter_free_paired": len(found["free"]),
        "blocks_paired": len(found["blocks"]),
        "settings_differ": settings_differ,
        "map_problems": map_problems,
        "order_problems": order_problems,
        "unconfirmed_findings": unconfirmed,
        "load_notes": load_notes,
        "dtype": config.verify.dtype,
        "casts": cast_summary(config.verify.dtype, torch_casts, ms_casts),
        **(streaming.figures() if streaming else {"streamed": False, "peak_rss_bytes": streamed.peak_rss_bytes()}),
    }
    if streaming:
        streaming.close()
    if train:
        from pt2ms.verify.training import train_check
        result["train"] = train_check(config, model, net, map_data, ms_rows, batches[0][0], rows)
    result["files"] = [str(path) for path in write_reports(result, config.output_dir)]
    return result
