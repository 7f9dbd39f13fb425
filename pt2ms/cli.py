"""What the numbered scripts share: the common arguments and turning errors into one line and an exit code."""

import argparse
import sys
import traceback

from .errors import Pt2MsError

EXIT_BAD_INPUT = 2


def parser(description):
    """An argument parser with the options every stage takes."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument("--config", help="TOML config of the run (default: the bundled EfficientNet-b0 example)")
    result.add_argument("--trust-pickle", action="store_true",
                        help="let a .pth run the code it carries (only for files you trust; default: refuse)")
    result.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return result


def load(args):
    """The config named by --config (or the default example), with command-line overrides applied."""
    from .config import load_config

    config = load_config(args.config)
    if args.trust_pickle:
        config.torch.trust_pickle = True
    return config


def run(stage, argv, build_parser):
    """Parse `argv`, run `stage(args)`, and map failures to exit codes: 2 for bad input, 130 for Ctrl-C."""
    args = build_parser().parse_args(argv)
    try:
        return stage(args)
    except Pt2MsError as error:
        if args.debug:
            traceback.print_exc()
        print(f"error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", EXIT_BAD_INPUT)  # 3: a model's forward failed (ModelRunError)
    except KeyboardInterrupt:
        print("interrupted: earlier outputs are untouched", file=sys.stderr)
        return 130


def wrote(path):
    print(f"wrote {path}")
