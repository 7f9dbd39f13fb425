"""Stage 3 against the MindSpore FAQ's recipe on one synthetic checkpoint: wall time and peak memory.

Builds a .pth of about --size-gb (about 120 tensors, saved under "state_dict" as the FAQ's script expects),
its map and the stage-1 inventories stage 3 reads, then runs in separate processes, so that imports count:
  ours    3_pth2ckpt.py --config <work>/synthetic.toml [--format safetensors]
  recipe  the FAQ of seed 000: torch.load(f)['state_dict'], ms.Tensor(t.numpy()) each, ms.save_checkpoint(list)
  cp      `cp` of the same .pth, then `sync` of the copy (GNU cp copies inside the kernel, copy_file_range)
  dd      `dd bs=4M conv=fsync` of the same .pth: the bytes through user space once, as any converter must
Peak RSS is each child's own (os.wait4 in a small launcher), and a sampler records the least memory available and any swapping.
--check-load loads our output with mindspore.load_checkpoint and compares sampled tensors with the .pth.

    .venv/bin/python benchmarks/convert_speed.py --size-gb 0.8 --dtype float32 --check-load
    .venv/bin/python benchmarks/convert_speed.py --size-gb 14 --dtype bfloat16 --format safetensors --check-load --repeat 1
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pt2ms.formats.checkpoint import open_torch_checkpoint  # noqa: E402
from pt2ms.formats.files import write_json  # noqa: E402
from pt2ms.formats.inventory import TensorInfo, from_checkpoint, write_inventory  # noqa: E402

COLUMNS = 1024
# The FAQ's conversion (seed 000), verbatim but for the file names.
RECIPE = """\
import sys
import torch
import mindspore as ms

def pytorch2mindspore(default_file = 'torch_resnet.pth', out = 'ms_resnet.ckpt'):
    # read pth file
    par_dict = torch.load(default_file)['state_dict']
    params_list = []
    for name in par_dict:
        param_dict = {}
        parameter = par_dict[name]
        param_dict['name'] = name
        param_dict['data'] = ms.Tensor(parameter.numpy())
        params_list.append(param_dict)
    ms.save_checkpoint(params_list, out)

pytorch2mindspore(sys.argv[1], sys.argv[2])
"""
# Loads our output in MindSpore and compares a sample of tensors, byte for byte, with the source .pth.
CHECK = """\
import json, sys, time
import numpy as np, torch, mindspore as ms
path, source, map_path, samples = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
mapping = json.load(open(map_path))["map"]
names = list(mapping)
chosen = set(names[:: max(1, len(names) // samples)] + [names[-1]])
started = time.perf_counter()
if path.endswith(".safetensors"):
    loaded = ms.load_checkpoint(path, format="safetensors", choice_func=lambda name: name in chosen)
else:
    loaded = ms.load_checkpoint(path)
print(f"mindspore.load_checkpoint: {len(loaded)} tensors in {time.perf_counter() - started:.1f} s")
state = torch.load(source, mmap=True, weights_only=True)["state_dict"]
def raw(tensor):
    return (tensor.view(torch.int16) if tensor.dtype == torch.bfloat16 else tensor).numpy().view(np.uint8)
bad = []
for name in sorted(chosen):
    parameter, tensor = loaded[name], state[mapping[name]]
    same = (str(parameter.dtype).lower() == str(tensor.dtype).removeprefix("torch.")
            and tuple(parameter.shape) == tuple(tensor.shape)
            and np.array_equal(parameter.asnumpy().reshape(-1).view(np.uint8), raw(tensor.reshape(-1))))
    if not same:
        bad.append(name)
print(f"sampled {len(chosen)} tensors: {len(chosen) - len(bad)} identical (dtype, shape, bytes)"
      + (f"; DIFFERENT: {bad}" if bad else ""))
sys.exit(1 if bad else 0)
"""

# Runs a command and writes [exit code, wall s, peak RSS bytes]. A child's peak RSS (ru_maxrss) starts at
# the RSS of the process it was forked from, so the measured command must be forked from this small
# launcher, never from the benchmark itself (which imported torch to build the checkpoint).
LAUNCHER = """\
import json, os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
wall = time.perf_counter() - started
with open(sys.argv[1], "w") as report:
    json.dump([os.waitstatus_to_exitcode(status), wall, usage.ru_maxrss * 1024], report)
"""


def layout(size_bytes, dtype, count):
    """(torch name, MindSpore name, shape) rows: an embedding, then layers of a matrix and a norm, a final bias."""
    itemsize = 4 if dtype == "float32" else 2
    layers = (count - 2) // 2
    embed_rows = max(1, int(size_bytes * 0.05 / itemsize / COLUMNS))
    rows = max(1, int((size_bytes - embed_rows * COLUMNS * itemsize) / layers / itemsize / COLUMNS))
    spec = [("embed.weight", "embed.embedding_table", (embed_rows, COLUMNS))]
    for index in range(layers):
        spec.append((f"layers.{index}.linear.weight", f"layers.{index}.linear.weight", (rows, COLUMNS)))
        spec.append((f"layers.{index}.norm.weight", f"layers.{index}.norm.gamma", (COLUMNS,)))
    spec.append(("head.bias", "head.bias", (COLUMNS,)))
    return spec


def checkpoint_name(size_gb, dtype, count):
    """The .pth's file name: a kept --work-dir reuses a checkpoint only when it has this very layout."""
    return f"synthetic-{size_gb:g}gb-{dtype}-{count}.pth"


def build(work, size_gb, dtype, count):
    """Write the checkpoint (unless already there), config, map and inventories under `work`."""
    import torch

    spec = layout(size_gb * 1e9, dtype, count)
    checkpoint = work / checkpoint_name(size_gb, dtype, count)
    if not checkpoint.exists():
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(0)
        state = {name: torch.empty(shape, dtype=getattr(torch, dtype)).uniform_(-0.1, 0.1, generator=generator)
                 for name, _, shape in spec}
        torch.save({"state_dict": state, "epoch": 0}, checkpoint)
        del state
        print(f"built {checkpoint} ({checkpoint.stat().st_size / 1e9:.2f} GB, {len(spec)} tensors) "
              f"in {time.perf_counter() - started:.0f} s")
    config = work / "synthetic.toml"
    # Stage 3 builds no model: it reads ms_params.csv, so the factory named here is never imported.
    config.write_text(f'name = "synthetic"\n[torch]\ncheckpoint = "{checkpoint.name}"\n'
                      '[mindspore]\nmodel = "not_needed_by_stage_3:model"\n'
                      '[paths]\nmaps = "maps"\noutputs = "outputs"\n')
    write_json(work / "maps" / "synthetic.json", {"map": {ms_name: torch_name for torch_name, ms_name, _ in spec}})
    out = work / "outputs" / "synthetic"
    write_inventory(from_checkpoint(open_torch_checkpoint(checkpoint)), out / "torch_params", "PyTorch synthetic")
    ms_rows = [TensorInfo(ms_name, shape, dtype) for _, ms_name, shape in spec]
    write_inventory(ms_rows, out / "ms_params", "MindSpore synthetic")


class MemoryWatch:
    """Samples /proc while a child runs: least MemAvailable, most swap in use, pages swapped out."""

    def __init__(self):
        self.least_available = float("inf")
        self.most_swap = 0
        self.swapped_out = -self._vmstat("pswpout")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _meminfo():
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        return {key: int(value.split()[0]) * 1024 for key, value in fields.items()}

    @staticmethod
    def _vmstat(key):
        return int(dict(line.split() for line in Path("/proc/vmstat").read_text().splitlines()).get(key, 0))

    def _run(self):
        while not self._stop.wait(0.2):
            info = self._meminfo()
            self.least_available = min(self.least_available, info["MemAvailable"])
            self.most_swap = max(self.most_swap, info["SwapTotal"] - info["SwapFree"])

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        self._thread.join()
        self.swapped_out += self._vmstat("pswpout")


def measure(label, command, log):
    """Run `command` through LAUNCHER; returns (exit code, wall seconds, peak RSS bytes, MemoryWatch)."""
    report = Path(f"{log}.rusage")
    with open(log, "w") as output, MemoryWatch() as watch:
        subprocess.run([sys.executable, "-c", LAUNCHER, str(report), *command], stdout=output,
                       stderr=subprocess.STDOUT, cwd=ROOT)
    code, wall, peak = json.loads(report.read_text())
    lines = [line for line in Path(log).read_text().splitlines() if line.strip() and "it/s" not in line
             and "tensor/s" not in line and "[WARNING]" not in line]
    print(f"{label:<7} exit {code}, wall {wall:6.1f} s, peak RSS {peak / 1e9:5.2f} GB, "
          f"least MemAvailable {watch.least_available / 1e9:5.1f} GB, swap used {watch.most_swap / 1e6:.0f} MB, "
          f"pages swapped out {watch.swapped_out}")
    for line in lines[-3 if code == 0 else -6:]:
        print(f"        | {line[:200]}")
    return code, wall, peak, watch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=0.8, help="checkpoint size in GB (default 0.8)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--tensors", type=int, default=120, help="number of tensors (default 120)")
    parser.add_argument("--format", choices=["ckpt", "safetensors"], default="ckpt", help="stage 3's output format")
    parser.add_argument("--work-dir", type=Path, help="keep the files here (default: a temporary folder, removed)")
    parser.add_argument("--skip-recipe", action="store_true", help="measure stage 3 only")
    parser.add_argument("--check-load", action="store_true", help="load our output in MindSpore and compare samples")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of ours then recipe; best wall counts (default 3)")
    parser.add_argument("--settle", type=float, default=0, help="seconds idle before each run (default 0); a VM that "
                        "hands freed memory back to its host charges the next run for touching it again")
    parser.add_argument("--samples", type=int, default=16, help="tensors compared by --check-load (default 16)")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_only:
        build(args.work_dir, args.size_gb, args.dtype, args.tensors)
        return
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="convert_speed."))
    work.mkdir(parents=True, exist_ok=True)
    try:
        # Built in a child: torch and the tensors never inflate this process (or the memory figures).
        subprocess.run([sys.executable, __file__, "--build-only", "--work-dir", str(work), "--size-gb",
                        str(args.size_gb), "--dtype", args.dtype, "--tensors", str(args.tensors)], check=True)
        config = work / "synthetic.toml"
        source = work / checkpoint_name(args.size_gb, args.dtype, args.tensors)
        ours_path = work / "outputs" / "synthetic" / f"synthetic.{args.format}"
        # The fresh checkpoint's dirty pages would otherwise be flushed during the first run, to its cost; and
        # both sides start with the checkpoint in the page cache, as after a download.
        os.sync()
        subprocess.run(["cat", str(source)], stdout=subprocess.DEVNULL, check=True)
        print(f"input: {source.stat().st_size / 1e9:.2f} GB {args.dtype}, {args.tensors} tensors; "
              f"RAM {MemoryWatch._meminfo()['MemTotal'] / 2**30:.1f} GiB, swap {MemoryWatch._meminfo()['SwapTotal'] / 2**30:.1f} GiB")
        ours_runs, recipe_runs, copy_runs, dd_runs = [], [], [], []
        # Alternate the two, so that neither always meets the page cache or dirty pages the other left.
        for round_index in range(args.repeat):
            time.sleep(args.settle)
            ours_runs.append(measure("ours", [sys.executable, str(ROOT / "3_pth2ckpt.py"), "--config", str(config),
                                              "--format", args.format], work / "ours.log"))
            if args.check_load and round_index == 0 and ours_runs[0][0] == 0:
                measure("check", [sys.executable, "-c", CHECK, str(ours_path), str(source),
                                  str(work / "maps" / "synthetic.json"), str(args.samples)], work / "check.log")
            if args.skip_recipe:
                continue
            ours_path.unlink(missing_ok=True)  # room on disk for the recipe's copy
            copy = work / "copy.pth"
            copy_runs.append(measure("cp+sync", ["sh", "-c", f"cp {source} {copy} && sync {copy}"], work / "cp.log"))
            copy.unlink(missing_ok=True)
            dd_runs.append(measure("dd", ["dd", f"if={source}", f"of={copy}", "bs=4M", "conv=fsync", "status=none"],
                                   work / "dd.log"))
            copy.unlink(missing_ok=True)
            (work / "faq_recipe.py").write_text(RECIPE)
            time.sleep(args.settle)
            recipe_runs.append(measure("recipe", [sys.executable, str(work / "faq_recipe.py"), str(source),
                                                  str(work / "faq.ckpt")], work / "recipe.log"))
            (work / "faq.ckpt").unlink(missing_ok=True)
            if recipe_runs[-1][0] != 0:
                print("recipe failed (see its last lines above): no ratio to report")
                break
        if recipe_runs and all(run[0] == 0 for run in ours_runs + recipe_runs):
            wall = min(run[1] for run in ours_runs) / min(run[1] for run in recipe_runs)
            peak = max(run[2] for run in ours_runs) / max(run[2] for run in recipe_runs)
            print(f"ratio ours/recipe over {len(ours_runs)} round(s): best wall {wall:.2f}, highest peak RSS {peak:.2f} "
                  "(target: wall at most 0.25)")
        if copy_runs and all(run[0] == 0 for run in ours_runs + copy_runs):
            ratio = min(run[1] for run in ours_runs) / min(run[1] for run in copy_runs)
            print(f"ratio ours/(cp + sync): best wall {ratio:.2f} (target: at most 2)")
        if dd_runs and all(run[0] == 0 for run in ours_runs + dd_runs):
            ratio = min(run[1] for run in ours_runs) / min(run[1] for run in dd_runs)
            print(f"ratio ours/(dd conv=fsync): best wall {ratio:.2f}")
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
