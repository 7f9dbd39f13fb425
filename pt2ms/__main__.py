"""`python -m pt2ms make-example [--config PATH]`: write a bundled example's seeded PyTorch checkpoint."""


from . import cli
from .demo import make_example_checkpoint


def stage(args):
    for path in make_example_checkpoint(cli.load(args)):
        cli.wrote(path)
    return 0


def build_parser():
    result = cli.parser(__doc__)
    result.add_argument("command", choices=["make-example"])
    return result


if __name__ == "__main__":
    raise SystemExit(cli.run(stage, None, build_parser))
