"""Stage 4's report: verify.json (machine-readable), verify.md (for a person) and verify_layers.png.

verify.json is strict JSON: an error figure that is not finite (an inf or NaN in either model's values) is
written as null, since JSON has no token for it; "non_finite_ms" / "non_finite_torch" then count those values.
"""

import math

from pt2ms.formats.files import atomic_open, write_json, write_text
from pt2ms.formats.tables import write_verify_layers
from pt2ms.verify import train_report
from pt2ms.verify.diagnosis import EFFECT_WORDS, settings_words
from pt2ms.verify.layer_compare import BOUNDARY

VERDICT_WORDS = {
    "agree": "the models agree (to float32 rounding)",
    "agree within float noise": "the models agree within float noise",
    "differ": "the models DIFFER",
    "not compared": "NOT VERIFIED",
}


def _fmt(value, digits=2):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}e}"
    return str(value)


def _headline(result):
    words = VERDICT_WORDS[result["verdict"]]
    if result["verdict"] == "differ" and result.get("outputs_agree"):
        return f"{words} (the outputs stay within tolerance, but the models compute differently inside)"
    if result["verdict"] in ("agree", "agree within float noise") and result.get("layers_differ"):
        return (f"{words} at the outputs; {result['layers_differ']} paired layer(s) leave tolerance in the full "
                "run by accumulated rounding, each agreeing alone")
    if result["verdict"] != "not compared":
        return words
    # "Nothing was compared" only when no output was: a run that compared outputs but paired no layer did compare.
    if "no output was compared" in result["reasons"]:
        return f"{words}: nothing was compared"
    return f"{words}: {'; '.join(result['reasons'])}"


def _memory(result):
    """Whether the run streamed the models block by block (pt2ms/verify/streamed.py), and its peak memory."""
    if "peak_rss_bytes" not in result:
        return []
    peak = f"peak memory (resident) {result['peak_rss_bytes'] / 2**20:.0f} MiB"
    if not result.get("streamed"):
        return [f"Both models held in memory; {peak}.", ""]
    return [f"Streamed block by block ({result['stream_reason']}): one block of each model held at a time, the "
            f"largest {result['largest_block_bytes'] / 2**20:.1f} MiB in float32; {peak}.", ""]


def _error_cell(metric):
    """A table cell for a relative error; values of different sizes have none."""
    return "sizes differ" if metric.get("sizes_differ") else _fmt(metric.get("relative"))


def markdown(result):
    """The report a person reads: the verdict, the cause in one sentence, the evidence, then the tables."""
    lines = [f"# Verification: {result['name']}", "",
             f"**Verdict: {_headline(result)}** (`agree` = {str(result['agree']).lower()}).", ""]
    if result.get("cause"):
        lines += [f"**Cause:** {result['cause']}", ""]
    lines += [f"**Warning:** {warning}." for warning in result.get("warnings", [])]
    for reason in result["reasons"]:
        lines.append(f"- Not verified: {reason}.")
    lines += [f"Tolerance: the largest error relative to the largest PyTorch output value must be at most "
              f"{result['tolerance']:g} (\"agree\" when at most {result['exact_threshold']:g}). "
              f"Inputs: {result['inputs']} over {result['batches']} batch(es). "
              f"Checkpoints: `{result['torch_checkpoint']}` -> `{result['mindspore_checkpoint']}`.", ""]
    if result.get("casts"):
        lines += [f"Dtypes: {result['casts']}.", ""]
    lines += _memory(result)
    if result["first_divergence"]:
        lines += ["## Where the models part", "", result["first_divergence"], ""]
        also = (result.get("first_divergence_detail") or {}).get("also", [])
        lines += ["Also found:", ""] + [f"- {sentence}" for sentence in also] + [""] if also else []
    lines += _evidence(result)
    lines += ["## Outputs", "", "| batch | output | max abs error | scale | relative | cosine | verdict |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in result["outputs"]:
        lines.append(f"| {row['batch']} | `{row['output']}` | {_fmt(row.get('max_abs'))} | {_fmt(row.get('scale'))} | "
                     f"{_error_cell(row)} | {_fmt(row.get('cosine'), 6) if 'cosine' in row else '-'} | {row['verdict']} |")
    noted = [row for row in result["outputs"] if row.get("note")]
    if noted:
        lines += ["", "Notes on outputs:"]
        lines += [f"- batch {row['batch']} `{row['output']}`: {row['note']}" for row in noted]
    if result["layers"]:
        lines += ["", f"## Layers ({result['layers_paired']} paired through the map, "
                      f"{result.get('parameter_free_paired', 0)} parameter-free, {result.get('blocks_paired', 0)} "
                      "blocks; in PyTorch execution order)", "",
                  "Relative error of each layer's output in the full run; *isolated* is the MindSpore layer fed "
                  "the inputs PyTorch's layer saw, so it measures the layer's own error (a layer may miss by "
                  f"{result.get('op_tolerance', 1e-5):g} alone, a block by the tolerance).", "",
                  "| # | PyTorch | MindSpore | kind | type | relative | inputs | isolated | verdict |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for index, layer in enumerate(result["layers"]):
            # A boundary layer's own errors measure where the ports cut the work, not an error: the pair is
            # judged where both agree, at the inputs of what consumes it (see the note).
            own, isolated = (("boundary", "boundary") if layer["verdict"] == BOUNDARY
                             else (_error_cell(layer), _error_cell(layer.get("isolated", {}))))
            lines.append(f"| {index} | `{layer['torch']}` | `{layer['mindspore']}` | {layer.get('kind', 'layer')} | "
                         f"{layer['torch_type']} | {own} | {_error_cell(layer.get('inputs', {}))} | "
                         f"{isolated} | {layer['verdict']} |")
        boundary = [layer for layer in result["layers"] if layer.get("note")]
        if boundary:
            lines += ["", "Notes on layers:"] + [f"- `{layer['torch']}`: {layer['note']}" for layer in boundary]
    if result["load_notes"]:
        lines += ["", "## Notes from loading", ""] + [f"- {note}" for note in result["load_notes"]]
    return "\n".join(lines) + "\n"


def layer_series(result, metric_of):
    """(x, y) of the layers with a finite error, y NaN where it is exactly 0, and the x of those zeros.

    x is the layer's row number in verify.md's table; a layer without a finite figure, and a boundary layer
    (its own error measures where the ports cut the work: plotted apart), are left out. Exact
    zeros are kept apart: a log scale has no place for them, and clamping them to a small floor drew them
    as spikes down to that floor, as though they were tiny errors. The NaN breaks the line there.
    """
    found = [(index, metric_of(layer).get("relative")) for index, layer in enumerate(result["layers"])
             if metric_of(layer).get("compared") and layer.get("verdict") != BOUNDARY]
    found = [(index, value) for index, value in found if value is not None and math.isfinite(value)]
    return [index for index, _ in found], [value if value > 0 else math.nan for _, value in found], \
        [index for index, value in found if value == 0]


def _evidence(result):
    """Settings that differ, map problems and operations in another order: what the cause rests on."""
    lines = []
    if result.get("settings_differ"):
        lines += ["## Settings that differ", "", "Read from both models before running them, in the same terms "
                  "(BatchNorm momentum in PyTorch's convention); *effect* says what this run's numbers make of "
                  "each.", "",
                  "| PyTorch | MindSpore | type | setting | MindSpore value | PyTorch value | effect |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| `{item['torch']}` | `{item['mindspore']}` | {item['torch_type']} | {item['setting']} | "
                  f"{item['mindspore_value']!r} | {item['torch_value']!r} | "
                  f"{EFFECT_WORDS.get(item.get('effect'), '-')} |" for item in result["settings_differ"]]
        lines.append("")
    if result.get("differs_in_training"):
        lines += ["## Differs in training", "", "These settings act only while training, so this inference run "
                  "cannot show them and they do not change its verdict; a fine-tuning run would see them "
                  "(`4_verify.py --train` runs one step on both models):", ""]
        lines += [f"- `{item['torch']}` ({item['torch_type']}; MindSpore `{item['mindspore']}`): "
                  f"{settings_words([item])}." for item in result["differs_in_training"]]
        lines.append("")
    if result.get("map_problems"):
        lines += ["## Map problems", ""] + [f"- {problem['text']}." for problem in result["map_problems"]] + [""]
    if result.get("order_problems"):
        lines += ["## Operations in another order", ""]
        lines += [f"- {problem['text']}." for problem in result["order_problems"]] + [""]
    if result.get("unconfirmed_findings"):
        lines += ["## Structure findings the numbers do not confirm", "", "The order or data flow suggested these, "
                  "but every output and every layer fed PyTorch's inputs agrees, so none is a cause:", ""]
        lines += [f"- {text}." for text in result["unconfirmed_findings"]] + [""]
    return lines


def plot(result, path):
    """Per-layer relative error along the depth of the network, log scale, exact zeros marked on the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 4))
    on_axis = axes.get_xaxis_transform()  # x in data, y in axes fractions: zeros sit on the bottom edge
    axes.set_yscale("log")
    axes.set_autoscaley_on(False)  # limits set below: all zeros would autoscale to a zero-height axis
    shown = []
    for metric_of, style, label, zero_y in ((lambda layer: layer, dict(marker="."), "in the full run", 0.03),
                                            (lambda layer: layer.get("isolated", {}),
                                             dict(marker="x", linestyle=":"), "isolated (own error)", 0.07)):
        xs, ys, zeros = layer_series(result, metric_of)
        shown += ys
        line, = axes.plot(xs, ys, label=label, **style)
        if zeros:
            axes.plot(zeros, [zero_y] * len(zeros), transform=on_axis, linestyle="none", marker="v",
                      color=line.get_color(), label=f"{label}: exactly 0", clip_on=False)
    boundaries = [index for index, layer in enumerate(result["layers"]) if layer.get("verdict") == BOUNDARY]
    if boundaries:
        axes.plot(boundaries, [0.97] * len(boundaries), transform=on_axis, linestyle="none", marker="|",
                  markersize=12, color="grey", label="boundary: the ports cut the work here (judged where both agree)",
                  clip_on=False)
    axes.axhline(result["tolerance"], color="red", linewidth=1, label=f"tolerance {result['tolerance']:g}")
    drawn = [value for value in shown if value > 0] + [result["tolerance"]]
    axes.set_ylim(min(drawn) / 100, max(drawn) * 3)  # two decades of room below the data for the zeros
    axes.set_xlabel("paired layer (# in verify.md), in PyTorch execution order")
    axes.set_ylabel("max abs error / output scale")
    axes.set_title(f"{result['name']}: per-layer error ({result['verdict']})")
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)


def strict_json(value):
    """`value` with every float that is not finite replaced by None, so json.dumps writes no Infinity/NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(inner) for key, inner in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(inner) for inner in value]
    return value


def write_reports(result, out_dir):
    """Write verify.json, verify.md and (with layers) verify_layers.csv and .png; returns their paths."""
    paths = [out_dir / "verify.json", out_dir / "verify.md"]
    write_json(paths[0], strict_json({key: value for key, value in result.items() if key != "files"}))
    train_section, train_paths = train_report.write(result, out_dir)
    write_text(paths[1], markdown(result) + train_section)
    if result["layers"]:
        paths.append(write_verify_layers(out_dir / "verify_layers.csv", result))
    if any(layer.get("compared") for layer in result["layers"]):
        paths.append(out_dir / "verify_layers.png")
        plot(result, paths[-1])
    return paths + train_paths
