"""Stage 1: list both sides' tensors (name, shape, dtype, owning layer) as txt and CSV."""

from pt2ms.stages import cli
from pt2ms.stages.show import show


def stage(args):
    config = cli.load(args)  # on a fresh clone, also writes the bundled example's seeded checkpoint
    sides = show(config)
    for side, (rows, csv_path, txt_path) in sides.items():
        cli.wrote(csv_path)
        cli.wrote(txt_path)
        print(f"{side}: {len(rows):,} tensors, {sum(row.numel for row in rows):,} values")
    return 0


def main(argv=None):
    return cli.run(stage, argv, lambda: cli.parser(__doc__))


if __name__ == "__main__":
    raise SystemExit(main())
