"""Stage 4: run both models on the same inputs and report, layer by layer, whether they agree, and why not.

Exit codes: 0 the models agree, 1 they differ (or nothing could be verified), 2 bad input, 3 a model's
forward pass failed (the report is still written, "not compared").
"""

from pt2ms.stages import cli
from pt2ms.stages.verify import BOUNDARY, verify
from pt2ms.verify import train_report


def stage(args):
    config = cli.load(args)
    if args.tolerance is not None:
        config.verify.tolerance = args.tolerance
    result = verify(config, train=args.train, stream=args.stream)
    for warning in result["warnings"]:
        print(f"warning: {warning}")
    for path in result["files"]:
        cli.wrote(path)
    worst = max((row for row in result["outputs"] if row.get("compared")), key=lambda r: r["relative"], default=None)
    figures = f"worst relative error {worst['relative']:.2e} (max abs {worst['max_abs']:.2e}, cosine {worst['cosine']:.6f})" \
        if worst else "nothing compared"
    layers = result["layers"]
    differ = sum(layer["verdict"] == "differ" for layer in layers)
    boundary = sum(layer["verdict"] == BOUNDARY for layer in layers)
    # A boundary layer differs on its own by construction (the other port fused the next operation in).
    alone = sum(layer.get("isolated", {}).get("verdict") == "differ" and layer["verdict"] != BOUNDARY
                for layer in layers)
    print(f"{result['verdict']}: {figures}; {result['layers_paired']} layers paired through the map (and "
          f"{result.get('parameter_free_paired', 0)} parameter-free, {result.get('blocks_paired', 0)} blocks), "
          f"{differ} differ in the full "
          f"run, {alone} on their own (isolated), {boundary} where the ports split the work differently; "
          f"tolerance {result['tolerance']:g}")
    if result.get("casts"):
        print(f"  {result['casts']}")
    if result.get("streamed"):
        print(f"  streamed block by block ({result['stream_reason']}): peak memory "
              f"{result['peak_rss_bytes'] / 2**20:.0f} MiB")
    for reason in result["reasons"]:
        print(f"  not verified: {reason}")
    if result["first_divergence"]:
        print(f"  {result['first_divergence']}")
    for item in result.get("differs_in_training", []):
        print(f"  differs in training only (not this verdict): `{item['torch']}` {item['setting']}: MindSpore "
              f"{item['mindspore_value']!r}, PyTorch {item['torch_value']!r}")
    for line in train_report.summary(result.get("train")):
        print(line)
    return 0 if result["agree"] and result.get("train", {}).get("agree", True) else 1


def build_parser():
    result = cli.parser(__doc__)
    result.add_argument("--tolerance", type=float, help="override [verify] tolerance (relative to output scale)")
    result.add_argument("--train", action="store_true",
                        help="also run one training step on both models ([verify.train]) and compare it")
    result.add_argument("--stream", action="store_true",
                        help="hold one block of each model in memory at a time (chosen by itself when both models "
                             "would not fit)")
    return result


def main(argv=None):
    return cli.run(stage, argv, build_parser)


if __name__ == "__main__":
    raise SystemExit(main())
