"""4_verify.py with and without --train on the bundled examples: verdicts, wall time and peak memory.

For each example, in a temporary folder: `python -m pt2ms make-example`, stages 1-3, then `4_verify.py` and
`4_verify.py --train`, each in its own process (imports count); peak RSS is the child's own (os.wait4).
The issue's bound: --train within 3 times inference's peak memory.

    .venv/bin/python benchmarks/train_parity.py                    # efficientnet_b0 resnet50
    .venv/bin/python benchmarks/train_parity.py efficientnet_b0
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEMORY_BOUND = 3.0


def run(args):
    """Exit code, wall seconds, peak RSS (GB) and the last stdout line of one child process."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    lines = [line for line in output.splitlines() if line and not line.startswith(("wrote", "  "))]
    return os.waitstatus_to_exitcode(status), time.perf_counter() - start, usage.ru_maxrss / 1024**2, lines


def local_config(name, work):
    """The bundled config with its artifacts moved under `work`."""
    text = (ROOT / "configs" / f"{name}.toml").read_text()
    text = text.replace('checkpoint = "../outputs/', f'checkpoint = "{work}/outputs/')
    path = work / f"{name}.toml"
    path.write_text(text.replace("[torch]", "[paths]\nmaps = \"maps\"\noutputs = \"outputs\"\n\n[torch]", 1)
                    .replace('template = "../outputs/', f'template = "{work}/outputs/'))
    return path


def main(names):
    for name in names or ["efficientnet_b0", "resnet50"]:
        with tempfile.TemporaryDirectory() as folder:
            config = str(local_config(name, Path(folder)))
            for step in (["-m", "pt2ms", "make-example"], ["1_show.py"], ["2_build_map.py"], ["3_pth2ckpt.py"]):
                code, *_ = run([*step, "--config", config])
                if code:
                    raise SystemExit(f"{name}: {' '.join(step)} exited {code}")
            inference = run(["4_verify.py", "--config", config])
            training = run(["4_verify.py", "--config", config, "--train"])
        ratio = training[2] / inference[2]
        print(f"{name}: 4_verify.py exit {inference[0]}, {inference[1]:.0f} s, {inference[2]:.2f} GB peak RSS; "
              f"--train exit {training[0]}, {training[1]:.0f} s, {training[2]:.2f} GB ({ratio:.2f}x inference's "
              f"peak, bound {MEMORY_BOUND:g}x)")
        print("  " + next((line for line in training[3] if line.startswith("training")), "no training line"))


if __name__ == "__main__":
    main(sys.argv[1:])
