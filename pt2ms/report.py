"""Stage 4's report: verify.json (machine-readable), verify.md (for a person) and verify_layers.png.

verify.json is strict JSON: an error figure that is not finite (an inf or NaN in either model's values) is
written as null, since JSON has no token for it; "non_finite_ms" / "non_finite_torch" then count those values.
"""

import math

from . import train_report
from .files import atomic_open, write_json, write_text

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
    if result["verdict"] != "not compared":
        return words
    # "Nothing was compared" only when no output was: a run that compared outputs but paired no layer did compare.
    if "no output was compared" in result["reasons"]:
        return f"{words}: nothing was compared"
    return f"{words}: {'; '.join(result['reasons'])}"


def _error_cell(metric):
    """A table cell for a relative error; values of different sizes have none."""
    return "sizes differ" if metric.get("sizes_differ") else _fmt(metric.get("relative"))


def markdown(result):
    """The report a person reads: verdict first, then where the models part, then the tables."""
    lines = [f"# Verification: {result['name']}", "",
             f"**Verdict: {_headline(result)}** (`agree` = {str(result['agree']).lower()}).", ""]
    lines += [f"**Warning:** {warning}." for warning in result.get("warnings", [])]
    for reason in result["reasons"]:
        lines.append(f"- Not verified: {reason}.")
    lines += [f"Tolerance: the largest error relative to the largest PyTorch output value must be at most "
              f"{result['tolerance']:g} (\"agree\" when at most {result['exact_threshold']:g}). "
              f"Inputs: {result['inputs']} over {result['batches']} batch(es). "
              f"Checkpoints: `{result['torch_checkpoint']}` -> `{result['mindspore_checkpoint']}`.", ""]
    if result["first_divergence"]:
        lines += ["## Where the models part", "", result["first_divergence"], ""]
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
        lines += ["", f"## Layers ({result['layers_paired']} paired through the map, in PyTorch execution order)", "",
                  "Relative error of each layer's output in the full run; *isolated* is the MindSpore layer fed "
                  "the inputs PyTorch's layer saw, so it measures the layer's own error.", "",
                  "| # | PyTorch | MindSpore | type | relative | inputs | isolated | verdict |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for index, layer in enumerate(result["layers"]):
            isolated = layer.get("isolated", {})
            lines.append(f"| {index} | `{layer['torch']}` | `{layer['mindspore']}` | {layer['torch_type']} | "
                         f"{_error_cell(layer)} | {_error_cell(layer.get('inputs', {}))} | "
                         f"{_error_cell(isolated)} | {layer['verdict']} |")
        boundary = [layer for layer in result["layers"] if layer.get("note")]
        if boundary:
            lines += ["", "Notes on layers:"] + [f"- `{layer['torch']}`: {layer['note']}" for layer in boundary]
    if result["load_notes"]:
        lines += ["", "## Notes from loading", ""] + [f"- {note}" for note in result["load_notes"]]
    return "\n".join(lines) + "\n"


def plot(result, path):
    """Per-layer relative error along the depth of the network, log scale, tolerance drawn in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = 1e-12  # exact agreement would vanish from a log scale

    def points(metric_of):
        # x is the layer's row number in verify.md's table; a layer without a finite figure leaves a gap.
        found = [(index, metric_of(layer).get("relative")) for index, layer in enumerate(result["layers"])
                 if metric_of(layer).get("compared")]
        found = [(index, value) for index, value in found if value is not None and math.isfinite(value)]
        return [index for index, _ in found], [max(value, floor) for _, value in found]

    figure, axes = plt.subplots(figsize=(10, 4))
    axes.semilogy(*points(lambda layer: layer), marker=".", label="in the full run")
    axes.semilogy(*points(lambda layer: layer.get("isolated", {})), marker="x", linestyle=":",
                  label="isolated (own error)")
    axes.axhline(result["tolerance"], color="red", linewidth=1, label=f"tolerance {result['tolerance']:g}")
    axes.set_xlabel("paired layer (# in verify.md), in PyTorch execution order")
    axes.set_ylabel("max abs error / output scale")
    axes.set_title(f"{result['name']}: per-layer error ({result['verdict']})")
    axes.legend(loc="upper left")
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
    """Write verify.json, verify.md and (when layers were compared) verify_layers.png; returns their paths."""
    paths = [out_dir / "verify.json", out_dir / "verify.md"]
    write_json(paths[0], strict_json({key: value for key, value in result.items() if key != "files"}))
    train_section, train_paths = train_report.write(result, out_dir)
    write_text(paths[1], markdown(result) + train_section)
    if any(layer.get("compared") for layer in result["layers"]):
        paths.append(out_dir / "verify_layers.png")
        plot(result, paths[2])
    return paths + train_paths
