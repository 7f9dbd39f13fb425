"""Stage 4 in memory against stage 4 streamed block by block (4_verify.py --stream): wall time and peak RSS.

Writes a pair of wide stacks (--depth blocks of Linear(--width, --width) + GELU, then a head) as file factories
with a seeded .pth, takes it through stages 1-3, then runs stage 4 twice, each in its own process so that
imports count: in memory, and with --stream. Each child's peak RSS comes from os.wait4 (stage 4's report states
its own, `peak_rss_bytes` from resource.getrusage); the verdicts must be the same. Stages 1-3 are measured too.

    .venv/bin/python benchmarks/stream_verify.py --width 2048 --depth 16
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MODELS = """\
import torch
from mindspore import nn as msnn
from torch import nn

WIDTH, DEPTH = {width}, {depth}


class TorchWide(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.GELU()) for _ in range(DEPTH)])
        self.head = nn.Linear(WIDTH, 8)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class MsWide(msnn.Cell):
    def __init__(self):
        super().__init__()
        self.blocks = msnn.CellList([msnn.SequentialCell([msnn.Dense(WIDTH, WIDTH), msnn.GELU(approximate=False)])
                                     for _ in range(DEPTH)])
        self.head = msnn.Dense(WIDTH, 8)

    def construct(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def torch_wide():
    torch.manual_seed(0)
    model = TorchWide()
    for parameter in model.parameters():
        parameter.data.mul_(0.5)
    return model


def ms_wide():
    return MsWide()
"""


def _run(args, work):
    """(exit code, stderr, seconds, peak RSS in MiB) of a child process (os.wait4: the child's own peak)."""
    started = time.perf_counter()
    with open(work / "stdout.txt", "w") as out, open(work / "stderr.txt", "w") as err:
        child = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
    return (os.waitstatus_to_exitcode(status), (work / "stderr.txt").read_text(), time.perf_counter() - started,
            usage.ru_maxrss / 1024)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--depth", type=int, default=16)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "wide_models.py").write_text(MODELS.format(width=options.width, depth=options.depth))
        save = f"import sys, torch; sys.path.insert(0, {str(work)!r}); import wide_models; " \
               f"torch.save(wide_models.torch_wide().state_dict(), {str(work / 'weights.pth')!r})"
        subprocess.run([sys.executable, "-c", save], check=True)
        config = work / "wide.toml"
        config.write_text(textwrap.dedent(f"""\
            name = "wide"
            [torch]
            checkpoint = "weights.pth"
            model = "wide_models.py:torch_wide"
            [mindspore]
            model = "wide_models.py:ms_wide"
            [verify]
            inputs = [[2, {options.width}]]
            [paths]
            maps = "maps"
            outputs = "outputs"
            """))
        values = options.depth * (options.width ** 2 + options.width) + options.width * 8 + 8
        print(f"pair: {options.depth} x Linear({options.width}, {options.width}) + head, {values:,} values a side, "
              f"{2 * 4 * values / 2**20:.0f} MiB for both in float32")
        for script in ("1_show.py", "2_build_map.py", "3_pth2ckpt.py"):
            code, stderr, seconds, peak = _run([script, "--config", str(config)], work)
            if code:
                raise SystemExit(f"{script} failed: {stderr[-2000:]}")
            print(f"{script}: {seconds:.1f} s, peak RSS {peak:.0f} MiB")
        for label, extra in (("in memory", []), ("streamed", ["--stream"])):
            code, _, seconds, peak = _run(["4_verify.py", "--config", str(config), *extra], work)
            report = json.loads((work / "outputs" / "wide" / "verify.json").read_text())
            print(f"4_verify.py {label:9}: {seconds:5.1f} s, peak RSS {peak:6.0f} MiB (the report says "
                  f"{report['peak_rss_bytes'] / 2**20:.0f}), verdict {report['verdict']} (exit {code}), worst output "
                  f"error {max(row.get('relative', 0) for row in report['outputs']):.2e}")


if __name__ == "__main__":
    main()
