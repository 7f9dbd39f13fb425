"""The `pt2ms` command (and `python -m pt2ms`): `pt2ms show|map|convert|verify [options]` runs stage 1-4's
script with the options that follow; `pt2ms make-example --config PATH` writes a bundled example's seeded
PyTorch checkpoint (and template)."""

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

    for path in make_example_checkpoint(cli.load(args)):
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


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv else ""
    if command == "make-example":
        return cli.run(make_example, argv, make_example_parser)
    if command not in STAGES:
        print(usage(), end="", file=sys.stderr if command not in ("-h", "--help") else sys.stdout)
        return 0 if command in ("-h", "--help") else cli.EXIT_BAD_INPUT
    saved, sys.argv = sys.argv, [f"pt2ms {command}", *argv]  # --help then names the command
    try:
        return runpy.run_path(str(stage_script(command)), run_name="pt2ms_stage")["main"](argv)
    finally:
        sys.argv = saved


if __name__ == "__main__":
    raise SystemExit(main())
