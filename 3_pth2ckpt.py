"""Stage 3: convert the PyTorch checkpoint into outputs/<name>/<name>.ckpt through the map (or back, with --reverse)."""

from pt2ms.errors import Pt2MsError
from pt2ms.formats.shards import parse_size
from pt2ms.formats.tensors import NUMPY_DTYPES
from pt2ms.stages import cli
from pt2ms.stages.convert import convert
from pt2ms.stages.reverse import reverse


def forward(args, config):
    if args.format == "pth":
        raise Pt2MsError("--format pth is for the reverse direction; add --reverse, or use ckpt or safetensors")
    max_shard_bytes = parse_size(args.max_shard_size) if args.max_shard_size else None
    output_format = args.format or ("safetensors" if max_shard_bytes else "ckpt")
    summary = convert(config, output_format, args.cast, args.allow_nonfinite, args.allow_overflow,
                      args.allow_initial, max_shard_bytes)
    cli.wrote(summary["path"])
    if summary["shards"]:
        print(f"  {summary['shards']} safetensors shards of at most {args.max_shard_size} beside it, each read back "
              "and checked (load them with mindspore.load_distributed_checkpoint(net, format=\"safetensors\", "
              "unified_safetensors_dir=...) or one by one with mindspore.load_checkpoint)")
    left, unused, found_none = summary["left"], summary["unused"], set(summary["nothing_found"])
    print(f"converted {summary['converted']}, left at initial value {len(left)}, PyTorch tensors unused "
          f"{len(unused)}, ignored {len(summary['ignored_torch'])}, MindSpore parameters ignored "
          f"{len(summary['ignored_ms'])}; {summary['bytes'] / 1e6:,.1f} MB in "
          f"{summary['seconds']:.1f} s, read back and checked {summary['checked']}; hand edits used "
          f"{summary['hand_edits']}")
    if summary["dtype_note"]:
        print(f"  dtypes: {summary['dtype_note']}")
    if found_none:
        print(f"  warning: --allow-initial: {len(found_none)} parameter(s) left at initial values with no PyTorch "
              "tensor found for them")
    for name in left[:10]:
        why = "no PyTorch tensor found" if name in found_none else "set to null by hand"
        print(f"  left at initial value: {name} ({why})")
    for name in unused[:10]:
        print(f"  unused: {name}")
    for name, count in summary["overflow"].items():
        print(f"  warning: {count} value(s) of {name} overflowed to inf in the cast")
    return 0


def backward(args, config):
    if args.format == "ckpt":
        raise Pt2MsError("--reverse writes PyTorch weights: use --format pth or safetensors")
    summary = reverse(config, args.reverse or None, args.format or "pth")
    cli.wrote(summary["path"])
    missing = summary["missing"]
    print(f"restored {summary['restored']} PyTorch tensors from {summary['source']}, missing {len(missing)}, "
          f"MindSpore tensors unused {len(summary['unused'])}; {summary['bytes'] / 1e6:,.1f} MB in "
          f"{summary['seconds']:.1f} s, read back and checked {summary['checked']}")
    for name, reason in list(missing.items())[:10]:
        print(f"  missing: {name} ({reason})")
    for name in summary["unused"][:10]:
        print(f"  unused: {name}")
    for name, (before, now) in summary["recast"].items():
        print(f"  note: {name} was {before} in PyTorch, stays {now} as in the MindSpore checkpoint")
    for first, second in summary["disagree"]:
        print(f"  warning: {first} and {second} should hold the same values but differ; kept {first}")
    return 0


def stage(args):
    config = cli.load(args)
    return backward(args, config) if args.reverse is not None else forward(args, config)


def build_parser():
    result = cli.parser(__doc__)
    result.add_argument("--format", choices=["ckpt", "safetensors", "pth"],
                        help="output format (default ckpt; with --reverse, pth)")
    result.add_argument("--cast", choices=sorted(NUMPY_DTYPES), help="cast every tensor to this dtype (default: keep)")
    result.add_argument("--max-shard-size", metavar="SIZE",
                        help="write MindSpore safetensors shards of at most SIZE (500MB, 4GB, 2GiB or bytes) and "
                             "their index param_name_map.json into outputs/<name>/<name>.shards/")
    result.add_argument("--allow-overflow", action="store_true", help="let a cast overflow to inf (counted in a warning)")
    result.add_argument("--allow-initial", action="store_true",
                        help="convert even though stage 2 found no PyTorch tensor for some MindSpore parameters "
                             "(they keep their initial values; counted in the summary)")
    result.add_argument("--allow-nonfinite", action="store_true", help="convert tensors holding NaN or Inf")
    result.add_argument("--reverse", nargs="?", const="", metavar="MS_CHECKPOINT",
                        help="MindSpore -> PyTorch through the same map: reads MS_CHECKPOINT (default: this "
                             "config's converted checkpoint), writes outputs/<name>/<name>.reversed.pth")
    return result


def main(argv=None):
    return cli.run(stage, argv, build_parser)


if __name__ == "__main__":
    raise SystemExit(main())
