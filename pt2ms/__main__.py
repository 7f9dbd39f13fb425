"""The `pt2ms` command (and `python -m pt2ms`): `pt2ms show|map|convert|verify [options]` runs stage 1-4's
script with the options that follow; `pt2ms make-example --config PATH` writes a bundled example's seeded
PyTorch checkpoint (and template)."""

import difflib
import runpy
import sys
from pathlib import Path

from pt2ms.stages import cli

STAGES = {"show": "1_show.py", "map": "2_build_map.py", "convert": "3_pth2ckpt.py", "verify": "4_verify.py"}


def stage_script(command):
    """The numbered script of a stage: beside the package in a checkout, inside it (pt2ms/scripts/) when installed."""
    name = STAGES[command]
    package = Path(__file__).resolve().parent
    for path in (package.parent / name, package / "scripts" / name):
        if path.is_file():
            return path
    raise FileNotFoundError(f"{name} is neither in the checkout nor installed with the package")


def make_example(args):
    from pt2ms.stages.demo import make_example_checkpoint

    for path in make_example_checkpoint(cli.load(args, make_missing=False)):
        cli.wrote(path)
    return 0


def make_example_parser():
    result = cli.parser("write a bundled example's seeded PyTorch checkpoint (and template)")
    result.prog = "pt2ms make-example"
    return result


def usage():
    return ("usage: pt2ms {show,map,convert,verify,make-example} [--config PATH] [options]\n"
            + "".join(f"  pt2ms {command:<8} runs {script} (--help for its options)\n"
                      for command, script in STAGES.items())
            + "  pt2ms make-example writes a bundled example's seeded PyTorch checkpoint\n")


def unknown_command(command):
    """The error line for a command that does not exist, with the closest real one."""
    close = difflib.get_close_matches(command, [*STAGES, "make-example"], n=1, cutoff=0.5)
    if not command:
        return "name a command; `pt2ms show` runs stage 1 of the bundled example"
    hint = f" (did you mean {close[0]!r}?)" if close else f" (one of: {', '.join([*STAGES, 'make-example'])})"
    return f"unknown command {command!r}{hint}"


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv else ""
    if command == "make-example":
        return cli.run(make_example, argv, make_example_parser)
    if command in ("-h", "--help"):
        print(usage(), end="")
        return 0
    if command not in STAGES:
        print(usage(), end="", file=sys.stderr)
        print(f"error: {unknown_command(command)}", file=sys.stderr)
        return cli.EXIT_BAD_INPUT
    saved, sys.argv = sys.argv, [f"pt2ms {command}", *argv]  # --help then names the command
    try:
        return runpy.run_path(str(stage_script(command)), run_name="pt2ms_stage")["main"](argv)
    finally:
        sys.argv = saved


if __name__ == "__main__":
    raise SystemExit(main())
