"""The four stages on the bundled examples, each as a user runs it: wall time and peak memory, stage by stage.

Each config is copied into a fresh work folder (its outputs and maps go there: nothing in the checkout is
touched, no earlier map or hand edit counts), its seeded example checkpoint is made first (`pt2ms
make-example`, not timed), then 1_show.py, 2_build_map.py, 3_pth2ckpt.py and 4_verify.py run one after the
other as separate processes, so imports count. CPU time (user + system) and peak RSS are each child's own
(os.wait4): on a shared machine its CPU time says more than its wall time. The table also says
what stage 2's probe decided and stage 4's verdict, from their summaries.

    .venv/bin/python benchmarks/stages.py                       # the four bundled examples
    .venv/bin/python benchmarks/stages.py --tiny                # and the tests' tiny pair (tests/tiny_models.py)
    .venv/bin/python benchmarks/stages.py --configs configs/resnet50.toml --repeat 3   # best of 3 per stage
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ["configs/efficientnet_b0.toml", "configs/resnet50.toml", "configs/minilm_l6.toml",
           "configs/yolos_tiny.toml"]
STAGES = ["1_show.py", "2_build_map.py", "3_pth2ckpt.py", "4_verify.py"]
# What the table shows of each stage's summary: a pattern in its stdout (the first match's groups, joined).
SAID = {"1_show.py": r"^(torch: [\d,]+ tensors)[^\n]*\n(?:.*\n)*?(mindspore: [\d,]+ tensors)",
        "2_build_map.py": r"^probe(?: skipped)?: ([^\n]*)", "3_pth2ckpt.py": r"([\d.,]+ MB in [\d.]+ s)",
        "4_verify.py": r"^(agree[^:]*|differ[^:]*|not verified[^:]*|not compared[^:]*):"}
TINY = """\
name = "tiny"
[torch]
checkpoint = "weights.pth"
model = "tests.tiny_models:torch_net"
[mindspore]
model = "tests.tiny_models:ms_net"
[verify]
inputs = [[2, 3, 8, 8]]
"""


def run(args):
    """(exit code, wall seconds, CPU seconds, peak RSS in MB, stdout) of one child process, from os.wait4."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        child = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        return child.returncode, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.read()


def work_copy(config, work):
    """The config copied into work/configs/, its maps and outputs under work/ (the checkpoint path kept)."""
    folder = work / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / config.name
    text = config.read_text()
    if "[paths]" not in text:
        text += '\n[paths]\nmaps = "../maps"\noutputs = "../outputs"\n'
    copy.write_text(text)
    return copy


def tiny_copy(work):
    """The tests' tiny pair (tests/tiny_models.py) with a seeded checkpoint, as tests/conftest.py makes it."""
    folder = work / "tiny"
    folder.mkdir(parents=True, exist_ok=True)
    code = ("import sys, torch; sys.path.insert(0, '.'); from tests.tiny_models import randomized_state_dict, "
            f"torch_net; torch.save(randomized_state_dict(torch_net()), {str(folder / 'weights.pth')!r})")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    (folder / "tiny.toml").write_text(TINY + '[paths]\nmaps = "maps"\noutputs = "outputs"\n')
    return folder / "tiny.toml"


def said(script, stdout):
    """What the table shows of a stage's summary (the probe's line for stage 2), or its last line."""
    found = re.search(SAID[script], stdout, re.MULTILINE)
    if found:
        return ", ".join(found.groups())
    return stdout.strip().splitlines()[-1][:110] if stdout.strip() else ""


def bench(config, repeat):
    """Rows (stage, code, best wall, its CPU seconds and peak MB, summary) for one config, stages in order."""
    rows = []
    for script in STAGES:
        runs = [run([script, "--config", str(config)]) for _ in range(repeat)]
        code, wall, cpu, peak, stdout = min(runs, key=lambda result: result[1])
        rows.append((script, code, wall, cpu, peak, said(script, stdout)))
        if code not in (0, 1):  # a later stage needs this one's outputs
            print(stdout, file=sys.stderr)
            break
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=BUNDLED, help="configs to run (default: the four bundled)")
    parser.add_argument("--tiny", action="store_true",
                        help="also the tests' tiny pair (tests/tiny_models.py: 17 PyTorch tensors, 15 MindSpore)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per stage; the fastest is shown")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (its path is printed)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pt2ms-stages-"))
    configs = [work_copy(ROOT / config, work) for config in args.configs] + ([tiny_copy(work)] if args.tiny else [])
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs); "
          f"python {sys.version.split()[0]}; work folder {work}")
    print("| example | stage | wall s | CPU s | peak RSS MB | exit | says |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    try:
        for config in configs:
            if config.stem != "tiny":
                code, _, _, _, stdout = run(["-m", "pt2ms", "make-example", "--config", str(config)])
                if code:
                    print(f"| {config.stem} | make-example | | | {code} | {stdout.strip().splitlines()[-1]} |")
                    continue
            for script, code, wall, cpu, peak, line in bench(config, args.repeat):
                print(f"| {config.stem} | {script} | {wall:.1f} | {cpu:.1f} | {peak:,.0f} | {code} | "
                      f"{line.replace('|', '/')} |", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
