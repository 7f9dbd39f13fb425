"""Stages 1 and 4 of a pair under a memory limit smaller than the two models together (a child in a cgroup).

The limit is set with cgroup v1 (`memory.limit_in_bytes` of a child group of this process's own); where that
is not mounted or not writable (not root, another kind of machine) the tests skip and say why.
"""

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.big_models import torch_shapes, write_checkpoint

ROOT = Path(__file__).resolve().parents[2]
SIZE = {"hidden": 2048, "layers": 8, "vocab": 1000}  # 273 M values a side: 1.09 GB in float32, 2.18 GB for both
LIMIT = int(1.6e9)


def _own_memory_cgroup():
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory") / path.lstrip("/")
    return None


@pytest.fixture
def limited(tmp_path):
    """A memory cgroup with LIMIT; yields a function that runs a command in it and returns (result, peak bytes)."""
    parent = _own_memory_cgroup()
    if parent is None or not (parent / "memory.limit_in_bytes").exists():
        pytest.skip("no cgroup v1 memory controller mounted at /sys/fs/cgroup/memory")
    group = parent / f"pt2ms_test_{os.getpid()}_{tmp_path.name}"
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(LIMIT))
    except OSError as error:
        if group.exists():
            group.rmdir()
        pytest.skip(f"cannot create a memory cgroup under {parent} ({error.strerror}); run as root")

    def run(args, cwd):
        (group / "memory.max_usage_in_bytes").write_text("0")  # resets the peak
        result = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=900,
                                preexec_fn=lambda: (group / "cgroup.procs").write_text(str(os.getpid())))
        return result, int((group / "memory.max_usage_in_bytes").read_text())

    yield run
    group.rmdir()


def _project(directory):
    values = write_checkpoint(directory / "model.safetensors", **SIZE)
    kwargs = ", ".join(f"{key} = {value}" for key, value in SIZE.items())
    (directory / "big.toml").write_text(textwrap.dedent(f"""\
        name = "big"
        [torch]
        checkpoint = "model.safetensors"
        model = "tests.big_models:torch_model"
        kwargs = {{ {kwargs} }}
        [mindspore]
        model = "tests.big_models:ms_model"
        kwargs = {{ {kwargs} }}
        [verify]
        inputs = [{{ shape = [2, 16], dtype = "int64", low = 0, high = {SIZE["vocab"]} }}]
        [paths]
        maps = "maps"
        outputs = "outputs"
        """))
    return directory / "big.toml", values


def test_stages_1_and_4_run_under_a_limit_smaller_than_the_two_models(tmp_path, limited):
    config, values = _project(tmp_path)
    assert values == sum(math.prod(shape) for shape in torch_shapes(**SIZE).values())
    assert LIMIT < 2 * 4 * values, "the limit must be smaller than both models in float32"
    # Built whole, as stage 1 did before, the two models do not fit: the child is killed.
    whole = (f"import tests.big_models as b; t = b.torch_model(**{SIZE}); m = b.ms_model(**{SIZE}); "
             "m.init_parameters_data(); print('built')")
    result, _ = limited(["-c", whole], ROOT)
    assert result.returncode != 0 and "built" not in result.stdout
    result, peak = limited([str(ROOT / "1_show.py"), "--config", str(config)], ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    print(f"stage 1 peak {peak / 1e9:.2f} GB under a {LIMIT / 1e9:.1f} GB limit, models {8 * values / 1e9:.2f} GB")
    assert "warning" not in result.stdout, result.stdout
    rows = (tmp_path / "outputs" / "big" / "torch_params.csv").read_text().splitlines()
    header = rows[0].split(",")
    order = [int(row.split(",")[header.index("execution_order")]) for row in rows[1:]]
    assert len(order) == len(torch_shapes(**SIZE)) and min(order) >= 0  # the forward ran: every layer has its place
    for script in ("2_build_map.py", "3_pth2ckpt.py"):  # not what this test is about: no limit
        done = subprocess.run([sys.executable, str(ROOT / script), "--config", str(config)], cwd=ROOT,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
    # Stage 4 sees that both models do not fit under the limit and streams by itself.
    result, peak = limited([str(ROOT / "4_verify.py"), "--config", str(config)], ROOT)
    print(f"stage 4 peak {peak / 1e9:.2f} GB under a {LIMIT / 1e9:.1f} GB limit")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "agree" in result.stdout and "streamed block by block" in result.stdout, result.stdout
