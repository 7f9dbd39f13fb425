"""Stage 2: suggest maps/<name>.json, the MindSpore -> PyTorch name map, keeping earlier hand edits."""

from collections import Counter

from pt2ms.mapping.mapfile import read_map
from pt2ms.stages import cli
from pt2ms.stages.build_map import build_map, score


def stage(args):
    config = cli.load(args)
    if args.score:
        return score_only(config, args.score)
    summary = build_map(config)
    matches = summary["matches"]
    cli.wrote(summary["path"])
    cli.wrote(summary["review"])
    methods = Counter(item.method for item in matches)
    mapped = sum(item.torch is not None for item in matches)
    print(f"mapped {mapped}/{len(matches)} ({', '.join(f'{m} {n}' for m, n in methods.most_common())}), "
          f"unused PyTorch tensors {len(summary['unused'])}, ignored {sum(map(len, summary['ignored'].values()))}, "
          f"hand edits kept {kept_edits(summary['kept_edits'])}")
    probed = summary.get("probe")
    if probed and "skipped" in probed:
        print(f"probe skipped: {probed['skipped']}")
    elif probed and probed.get("nothing_to_decide"):
        print(f"probe: nothing to decide from the names and shapes, models not built ({probed['seconds']:.1f} s)")
    elif probed:
        print(f"probe: {probed['decided']} entries decided, {probed['undecided']} undecided "
              f"({probed['units']} decisions in {probed.get('patterns', 0)} patterns, {probed['seconds']:.1f} s)"
              + hand_edits_run(probed.get("hand_edits", {})))
    for side, source in summary["position"].items():
        if not source.startswith("the order its layers ran"):
            print(f"position ({side}): {source}")
    unsure = [item for item in matches if item.confidence < 0.9]
    review = unsure if args.review is None else unsure[: args.review]
    if review:
        print(f"review these first: {len(unsure)} of {len(matches)} below confidence 0.9, lowest first"
              + (f" (the first {len(review)})" if len(review) < len(unsure) else "") + ":")
        for item in review:
            print(f"  {item.confidence:4.2f} {item.method:<10} {item.ms_name} <- {item.torch}  {item.note}")
    for conflict in summary["conflicts"]:
        print(f"conflict: hand edit {conflict['ms_name']!r}: {conflict['problem']} (kept as written; stage 3 will refuse it)")
    return 0


def kept_edits(items, shown=20):
    """"2: a.weight <- x, b.bias <- y": how many hand edits were kept, and which (the first `shown`)."""
    listed = ", ".join(f"{item.ms_name} <- {'null' if item.torch is None else item.torch}" for item in items[:shown])
    more = f", ... ({len(items) - shown} more in the map)" if len(items) > shown else ""
    return f"{len(items)}: {listed}{more}" if items else "0"


def hand_edits_run(checked):
    """", hand edits run 2 (1 contradicted)" for the probe's line; "" when it ran none."""
    contradicted = sum(result["contradicted"] for result in checked.values())
    return f", hand edits run {len(checked)} ({contradicted} contradicted)" if checked else ""


def score_only(config, reference_path):
    """Compare the existing map with a reference map entry by entry; exit 0 only when all agree."""
    from pathlib import Path

    result = score(read_map(config.map_path), read_map(Path(reference_path)))
    print(f"agreement with {reference_path}: {result['right']}/{result['total']} entries")
    for name, got, expected in result["wrong"][:20]:
        print(f"  {name}: map has {got!r}, reference {expected!r}")
    for name in result["extra"][:20]:
        print(f"  {name}: in the map, not in the reference")
    return 0 if not result["wrong"] and not result["extra"] else 1


def build_parser():
    result = cli.parser(__doc__)
    result.add_argument("--score", metavar="REFERENCE_JSON",
                        help="do not build: score the existing map against a reference map (exit 1 on any difference)")
    result.add_argument("--review", type=int, default=None,
                        help="list at most this many entries below confidence 0.9 (default: all of them; every wrong "
                             "entry on the test pairs is below 0.9, README 'How sure is sure')")
    return result


def main(argv=None):
    return cli.run(stage, argv, build_parser)


if __name__ == "__main__":
    raise SystemExit(main())
