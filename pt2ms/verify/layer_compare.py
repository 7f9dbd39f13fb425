"""Stage 4's layer comparison: every pair recorded in one pass per side, compared, and run alone.

A pair's row holds its output error in the full run, the error of the inputs it was handed, and its error
*isolated*: the MindSpore cell fed the inputs its PyTorch partner saw. Layers are judged in isolation
against what one operation costs (compare.op_tolerance of the compute dtype), blocks against the model's tolerance.
PyTorch's recording also follows the data, so each row knows which paired layers produced its inputs
(`from`), through which functional calls and unpaired modules (`through`), and which consume its output.
"""

import contextlib

import numpy as np
from tqdm import tqdm

from pt2ms.running import compare
from pt2ms.running.isolation import run_ms_cell, swapped_runs
from pt2ms.running.recording import ROOT, record_ms, record_torch

BOUNDARY = "boundary differs"
# Inputs closer than this count as the same inputs when telling a layer's own error from an inherited one.
INPUTS_TOLERANCE = 1e-4
# A layer that computes what its partner does passes on the error it inherits, amplified by its condition
# number (an exp box decode: tens of times), rarely a hundredfold: more is its own error.
INHERITED_GROWTH = 100
# How many pairs of same-shaped layers stage 4 swaps inside a block that differs alone (each is one run).
SWAP_LIMIT = 32


def _joined(arrays):
    if not arrays:
        return np.zeros(0)
    return np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in arrays])


def layer_metric(ms_arrays, torch_arrays):
    """Metrics over all of a layer's arrays joined; arrays that changed size are a difference, not a skip."""
    extra = len(ms_arrays) - len(torch_arrays)
    common = min(len(ms_arrays), len(torch_arrays))
    if extra and common and all(np.shape(a) == np.shape(b) for a, b in zip(ms_arrays, torch_arrays)):
        # One side returns more (MindSpore's VocabEmbedding also returns its table): compare what both return.
        ms_arrays, torch_arrays = ms_arrays[:common], torch_arrays[:common]
    metric = compare.metrics(_joined(ms_arrays), _joined(torch_arrays))
    shapes = [list(np.shape(x)) for x in ms_arrays], [list(np.shape(x)) for x in torch_arrays]
    if not metric.get("sizes_differ") and metric.get("compared") and shapes[0] != shapes[1]:
        # The same number of values in another layout (a patch-embedding conv against a dense on patches):
        # compared as sorted values, which agree when they are the same numbers rearranged.
        metric = compare.metrics(np.sort(_joined(ms_arrays)), np.sort(_joined(torch_arrays)))
        metric.update(layouts_differ=True, shape_ms=shapes[0], shape_torch=shapes[1],
                      note=f"layouts differ (MindSpore {shapes[0]}, PyTorch {shapes[1]}): compared as sorted values")
    if extra and len(ms_arrays) == common:
        metric["note"] = f"compared the first {common} of {common + abs(extra)} arrays: only " \
                         f"{'MindSpore' if extra > 0 else 'PyTorch'} returns the rest"
    if metric.get("sizes_differ"):
        # The joined arrays' shapes say nothing; each array's shape shows where the sizes part.
        metric["shape_ms"] = [list(np.shape(x)) for x in ms_arrays]
        metric["shape_torch"] = [list(np.shape(x)) for x in torch_arrays]
    return metric


def _compared(ms_record, torch_record, tolerance):
    """A row's output metrics, its inputs' metrics and its verdict; inputs that changed size make it differ."""
    row = layer_metric(ms_record.output, torch_record.output)
    row["output_verdict"] = compare.verdict(row, tolerance)  # the output alone, whatever the inputs' sizes
    row["inputs"] = _inputs_metric(ms_record.inputs, torch_record.inputs)
    changed = {what: metric for what, metric in (("inputs", row["inputs"]), ("outputs", row))
               if metric.get("sizes_differ")}
    if changed:
        row["sizes_differ"] = True
        shapes = [f"{what} MindSpore {metric['shape_ms']}, PyTorch {metric['shape_torch']}"
                  for what, metric in changed.items()]
        row["note"] = "changed size: " + "; ".join(shapes)
    row["verdict"] = compare.verdict(row, tolerance)
    return row


def _inputs_metric(ms_inputs, torch_inputs):
    """A layer's inputs compared: all of them, or the first (the data) when only the others differ in form (a
    decoder layer's rotary tables and mask, each port's own); none when a side passed them by keyword
    (transformers 5's attention and model), which its hooks do not see."""
    if not ms_inputs or not torch_inputs:
        return {"compared": 0, "note": "inputs passed by keyword: not recorded"}
    metric = layer_metric(ms_inputs, torch_inputs)
    if metric.get("sizes_differ") and np.shape(ms_inputs[0]) == np.shape(torch_inputs[0]):
        metric = dict(layer_metric(ms_inputs[:1], torch_inputs[:1]), note="the first input compared: the others "
                      f"differ in form (MindSpore {metric['shape_ms'][1:]}, PyTorch {metric['shape_torch'][1:]})")
    return metric


def _isolated(cell, torch_record, judged_by):
    """The metric of `cell` run alone on its partner's inputs, and its output arrays (None when it does not run)."""
    alone = run_ms_cell(cell, torch_record.inputs)
    if alone is None:
        return {"compared": 0, "verdict": "not compared",
                "note": "the cell does not take the PyTorch module's inputs"}, None
    metric = layer_metric(alone, torch_record.output)
    metric["verdict"], metric["allowed"] = compare.verdict(metric, judged_by), judged_by
    return metric, alone


def _carried_activation(row, rows, alone, records, cells, op_tolerance):
    """Where PyTorch's layer ends with a module the port runs as its own layer after it (timm's BatchNormAct2d
    ends with its act; the port has BatchNorm2d, then an activation): that layer's partner run on this cell's
    isolated output, compared with PyTorch's output: {"after": cell, metric}, or None."""
    output = records[row["torch"]].output
    for inner in rows:
        if not inner["torch"].startswith(row["torch"] + ".") or inner["mindspore"].startswith(row["mindspore"] + ".") \
                or inner["mindspore"] == row["mindspore"] or inner["torch"] not in records:
            continue
        if len(records[inner["torch"]].output or []) != len(output) or \
                not all(np.array_equal(a, b) for a, b in zip(records[inner["torch"]].output, output)):
            continue  # not the last thing the layer does
        composed = run_ms_cell(cells[inner["mindspore"]], alone)
        if composed is not None:
            metric = layer_metric(composed, output)
            return {"after": inner["mindspore"], **metric, "verdict": compare.verdict(metric, op_tolerance)}
    return None


def _swap_trials(cell, torch_record, tolerance):
    """The block run alone with each pair of its same-shaped layers swapped: does any swap make it agree?"""
    trials = []
    for (first, second), output in swapped_runs(cell, torch_record.inputs, SWAP_LIMIT):
        if output is not None:
            metric = layer_metric(output, torch_record.output)
            trials.append({"layers": [first, second], "relative": metric.get("relative"),
                           "verdict": compare.verdict(metric, tolerance)})
    return trials


def compare_pairs(model, net, inputs, pairs, tolerance, isolate=True, weights_for=None,
                  op_tolerance=compare.OP_TOLERANCE):
    """Rows for [(cell, module, kind)] in PyTorch execution order (kind: layer, parameter-free, block),
    and PyTorch's recording (order, functional calls between layers).

    weights_for: for a model streamed block by block (pt2ms/verify/streamed.py), cell path -> a context in
    which that cell has its weights while it runs alone; None when the whole model holds them.
    op_tolerance: what a layer run alone may miss by (compare.op_tolerance of the compute dtype)."""
    modules, cells = dict(model.named_modules()), dict(net.cells_and_names())
    hold = weights_for or (lambda _cell: contextlib.nullcontext())
    units = {module for _, module, what in pairs if what != "block"}
    torch_rec, _ = record_torch(model, inputs, {module for _, module, _ in pairs}, units=units)
    ms_rec, _ = record_ms(net, inputs, {cell for cell, _, _ in pairs})
    position = torch_rec.position()
    rows, alone = [], {}
    ordered = sorted((item for item in pairs if item[1] in torch_rec.records), key=lambda item: position[item[1]])
    for cell, module, what in tqdm(ordered, desc="layers", unit="layer", leave=False, disable=None):
        torch_record, ms_record = torch_rec.records[module], ms_rec.records.get(cell)
        row = {"torch": module, "mindspore": cell, "kind": what, "torch_type": type(modules[module]).__name__,
               "mindspore_type": type(cells[cell]).__name__, "calls": torch_record.calls}
        if module in torch_rec.feeds:
            producers = sorted(set().union(*[p for p, _ in torch_rec.feeds[module]])) if torch_rec.feeds[module] else []
            row["from"] = producers
            row["through"] = list(dict.fromkeys(step for _, steps in torch_rec.feeds[module] for step in steps))
        if ms_record is None:
            row.update(compared=0, verdict="not compared", note="the MindSpore cell never ran")
        else:
            row.update(_compared(ms_record, torch_record, tolerance))
            if isolate:
                with hold(cell):
                    row["isolated"], alone[module] = _isolated(cells[cell], torch_record,
                                                               tolerance if what == "block" else op_tolerance)
        rows.append(row)
    for row in rows:
        if row["kind"] != "block" and row.get("isolated", {}).get("verdict") == "differ" and alone.get(row["torch"]):
            with hold(row["mindspore"]):
                carried = _carried_activation(row, rows, alone[row["torch"]], torch_rec.records, cells, op_tolerance)
            if carried:
                row["carried"] = carried
    _mark_boundaries(rows)
    for row in rows:
        # Streamed, a block's hooks read its weights from the files as it runs, which would undo a swap.
        if weights_for is None and row["kind"] == "block" and row["verdict"] != BOUNDARY and \
                _layers_agree_alone(row, rows) and row.get("isolated", {}).get("verdict") == "differ":
            row["swaps"] = _swap_trials(cells[row["mindspore"]], torch_rec.records[row["torch"]], tolerance)
    return rows, torch_rec


def _layers_agree_alone(block, rows):
    inside = [row for row in rows if row["kind"] != "block" and row["torch"].startswith(block["torch"] + ".")]
    return all(row.get("isolated", {}).get("verdict") in compare.AGREEMENT + ("not compared",) for row in inside)


def own_error_differs(row, tolerance):
    """Whether a layer computes something else on its own: alone (fed PyTorch's inputs) it misses by more than
    one operation costs; not isolated, its full-run error leaves tolerance and outgrows what its inputs
    carried (INHERITED_GROWTH), so inherited error never counts as its own."""
    isolated = row.get("isolated", {})
    if isolated.get("compared") or isolated.get("sizes_differ"):
        return isolated.get("verdict") == "differ"
    carried = row.get("inputs", {}).get("relative")
    if row["verdict"] != "differ" or not row.get("inputs", {}).get("compared") or carried is None:
        return False
    return row.get("relative") is None or row["relative"] > max(tolerance, INHERITED_GROWTH * max(carried, compare.EXACT))


def consumers(rows):
    """{torch path: [rows whose inputs it produced]} from the data flow."""
    found = {}
    for row in rows:
        for producer in row.get("from", []):
            found.setdefault(producer, []).append(row)
    return found


def inputs_agree(row):
    inputs = row.get("inputs", {})
    return bool(inputs.get("compared")) and compare.verdict(inputs, INPUTS_TOLERANCE) != "differ"


def _mark_boundaries(rows):
    """A layer that computes something else on its own, fed the same inputs, while every layer consuming its
    output is handed inputs that agree, only draws its boundary elsewhere.

    E.g. MindSpore's Dense(activation=GELU) includes the activation PyTorch applies after its Linear, and
    timm's BatchNormAct2d the activation a port applies as a separate layer: the outputs differ, yet nothing
    downstream does. Such layers are marked, not reported as divergence.
    """
    units = [row for row in rows if row["kind"] != "block"]
    fed = consumers(units)
    for row in rows:
        if row.get("isolated", {}).get("verdict") != "differ":
            continue
        if row.get("carried", {}).get("verdict") in compare.AGREEMENT:
            row["verdict"] = BOUNDARY
            row["note"] = (f"its PyTorch side ends with an activation the port applies as the next layer "
                           f"(`{row['carried']['after']}`): compared there, where both sides agree "
                           f"(relative error {row['carried']['relative']:.2e})")
            continue
        if row.get("output_verdict") in compare.AGREEMENT and not inputs_agree(row):
            # Fed other inputs it gives the same outputs: the work before it is split differently (MindSpore's
            # nn.Pad then a valid max pool, where PyTorch pads inside the pool).
            row["verdict"] = BOUNDARY
            row["note"] = ("its inputs differ yet its output agrees: the two sides split the work before it "
                           "differently (e.g. padding applied by a separate layer)")
            continue
        if row["kind"] == "block":
            inside = {unit["torch"] for unit in units if unit["torch"].startswith(row["torch"] + ".")}
            following = [after for name in inside for after in fed.get(name, []) if after["torch"] not in inside]
        else:
            following = fed.get(row["torch"], [])
        if inputs_agree(row) and following and all(inputs_agree(after) for after in following):
            row["verdict"] = BOUNDARY
            row["note"] = ("output differs but the inputs of every layer that consumes it agree: the two sides "
                           "split the work differently here (e.g. an activation fused into the layer, a block "
                           "that ends before or after a residual add)")


def producers_agree(row, by_torch):
    """Whether every paired layer whose output feeds `row` agrees in the full run (the model's input does), or
    carries a small error (rounding it inherited) far below the one `row`'s inputs have; a producer whose error,
    however small, the inputs' error does not outgrow by INHERITED_GROWTH explains it, and does not vouch."""
    producers = row.get("from")
    if not producers or "?" in producers:
        return False
    carried = row.get("inputs", {}).get("relative")

    def agrees(producer):
        own = producer.get("relative")
        # What a producer carries passes on, grown by the code in between by its condition number (a softmax;
        # an activation that shrinks the scale): the inputs' error is that code's own only when it outgrows the
        # producer's by INHERITED_GROWTH, as a layer's own error must (YOLOv8n's DFL, YOLOX's heads: 1e-4 -> 1.4e-4).
        if producer.get("verdict") != BOUNDARY and own is not None and carried is not None and \
                carried <= INHERITED_GROWTH * max(own, compare.EXACT):
            return False
        # A boundary layer's own output is not comparable: it vouches only when it was handed agreeing inputs.
        if producer.get("verdict") in compare.AGREEMENT or producer.get("verdict") == BOUNDARY and inputs_agree(producer):
            return True
        return own is not None and carried is not None and own <= 10 * INPUTS_TOLERANCE and 100 * own < carried

    # A layer called more than once (HF ViT's one dropout after attention and after the MLP) is compared on
    # its first call only: its agreement says nothing of the call that fed this row.
    return all(name == ROOT or name in by_torch and agrees(by_torch[name]) and by_torch[name].get("calls", 1) <= 1
               for name in producers)
