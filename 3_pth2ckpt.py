"""Stage 3: convert the PyTorch checkpoint into outputs/<name>/<name>.ckpt through the map."""

from pt2ms import cli
from pt2ms.convert import convert
from pt2ms.tensors import NUMPY_DTYPES


def stage(args):
    config = cli.load(args)
    summary = convert(config, args.format, args.cast, args.allow_nonfinite, args.allow_overflow)
    cli.wrote(summary["path"])
    left, unused = summary["left"], summary["unused"]
    print(f"converted {summary['converted']}, left at initial value {len(left)}, PyTorch tensors unused "
          f"{len(unused)}, ignored {len(summary['ignored_torch'])}; {summary['bytes'] / 1e6:,.1f} MB in "
          f"{summary['seconds']:.1f} s, read back and checked {summary['checked']}")
    for name in left[:10]:
        print(f"  left at initial value: {name}")
    for name in unused[:10]:
        print(f"  unused: {name}")
    for name, count in summary["overflow"].items():
        print(f"  warning: {count} value(s) of {name} overflowed to inf in the cast")
    return 0


def build_parser():
    result = cli.parser(__doc__)
    result.add_argument("--format", choices=["ckpt", "safetensors"], default="ckpt", help="output format (default ckpt)")
    result.add_argument("--cast", choices=sorted(NUMPY_DTYPES), help="cast every tensor to this dtype (default: keep)")
    result.add_argument("--allow-overflow", action="store_true", help="let a cast overflow to inf (counted in a warning)")
    result.add_argument("--allow-nonfinite", action="store_true", help="convert tensors holding NaN or Inf")
    return result


def main(argv=None):
    return cli.run(stage, argv, build_parser)


if __name__ == "__main__":
    raise SystemExit(main())
