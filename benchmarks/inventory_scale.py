"""Stages 1 and 2 at scale: wall time and peak memory for checkpoints of 200,000 and 1,000,000 tensors.

Both sides are synthetic files of tiny tensors (the cost at this scale is per name, not per byte): the
PyTorch side a .safetensors (or a zip .pth with --format pth), the MindSpore side a template .ckpt with
the same names, and no model factories, so that what is measured is reading the files and writing the
inventories (stage 1) and matching them (stage 2, which finds every name by the exact pass). Each stage
runs in its own child process; figures are the whole process, imports included.

    .venv/bin/python benchmarks/inventory_scale.py --tensors 200000 1000000 [--stage2] [--format pth]
"""

import argparse
import json
import resource
import runpy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from pt2ms.formats.ckpt import write_ckpt  # noqa: E402
from pt2ms.formats.safetensors_file import write_safetensors  # noqa: E402


def names(count):
    """Names shaped like a deep model's: blocks.<i>.layers.<j>.<leaf>."""
    leaves = ("weight", "bias")
    return [f"blocks.{i // 20}.layers.{i // 2 % 10}.{leaves[i % 2]}" for i in range(count)]


def make_project(folder, count, torch_format):
    specs = [(name, "float32", (2,)) for name in names(count)]
    arrays = (np.full(2, index, np.float32) for index in range(count))
    if torch_format == "pth":
        import torch

        torch.save({name: torch.full((2,), float(index)) for index, (name, _, _) in enumerate(specs)},
                   folder / "weights.pth")
        checkpoint = "weights.pth"
    else:
        write_safetensors(folder / "weights.safetensors", specs, arrays)
        checkpoint = "weights.safetensors"
    write_ckpt(folder / "template.ckpt", specs, (np.full(2, index, np.float32) for index in range(count)))
    config = folder / "scale.toml"
    config.write_text(f'name = "scale"\n[torch]\ncheckpoint = "{checkpoint}"\n'
                      '[mindspore]\ntemplate = "template.ckpt"\n[paths]\nmaps = "maps"\noutputs = "outputs"\n')
    return config


def run_stage(script, config):
    """Run one numbered script in a child process; returns (exit code, seconds, peak RSS in GB)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", script, str(config)], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{script} failed ({done.returncode}): {done.stderr[-2000:]}")
    peak_kb = json.loads(done.stdout.strip().splitlines()[-1])["peak_kb"]
    return seconds, peak_kb / 2**20


def child(script, config):
    sys.argv = [script, "--config", config]
    try:
        runpy.run_path(str(ROOT / script), run_name="__main__")
    except SystemExit as done:
        if done.code:
            raise
    print(json.dumps({"peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tensors", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--stage2", action="store_true", help="also time stage 2 (map building)")
    parser.add_argument("--format", choices=["safetensors", "pth"], default="safetensors")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    for count in args.tensors:
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            started = time.perf_counter()
            config = make_project(folder, count, args.format)
            print(f"{count:,} tensors: files written in {time.perf_counter() - started:.1f} s", flush=True)
            seconds, peak = run_stage("1_show.py", config)
            out = folder / "outputs" / "scale"
            sizes = sum(path.stat().st_size for path in out.iterdir()) / 1e6
            print(f"  stage 1: {seconds:.1f} s, peak RSS {peak:.2f} GB ({peak * 2**30 / count / 1e3:.1f} KB per "
                  f"tensor), inventories {sizes:.0f} MB", flush=True)
            if args.stage2:
                seconds, peak = run_stage("2_build_map.py", config)
                print(f"  stage 2: {seconds:.1f} s, peak RSS {peak:.2f} GB "
                      f"({peak * 2**30 / count / 1e3:.1f} KB per tensor)", flush=True)


if __name__ == "__main__":
    main()
