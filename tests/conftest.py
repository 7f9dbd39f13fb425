"""Shared fixtures: a tiny paired project on disk, and running the numbered scripts in-process."""

import contextlib
import io
import runpy
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_script(script, *args):
    """Run a numbered script's main() in this process; returns (exit code, stdout, stderr)."""
    module = runpy.run_path(str(ROOT / script))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = module["main"](list(args))
    return code, out.getvalue(), err.getvalue()


def write_config(directory, name="tiny", torch_model="tests.tiny_models:torch_net",
                 ms_model="tests.tiny_models:ms_net", checkpoint="weights.pth", extra=""):
    """Write a config whose artifacts stay under `directory`; returns its path."""
    path = Path(directory) / f"{name}.toml"
    path.write_text(textwrap.dedent(f"""\
        name = "{name}"
        [torch]
        checkpoint = "{checkpoint}"
        model = "{torch_model}"
        [mindspore]
        model = "{ms_model}"
        [verify]
        inputs = [[2, 3, 8, 8]]
        [paths]
        maps = "maps"
        outputs = "outputs"
        """) + textwrap.dedent(extra))
    return path


@pytest.fixture
def tiny_project(tmp_path):
    """A tiny torch/MindSpore pair with a real seeded .pth: returns the config path."""
    import torch

    from tests.tiny_models import randomized_state_dict, torch_net

    torch.save(randomized_state_dict(torch_net()), tmp_path / "weights.pth")
    return write_config(tmp_path)


@pytest.fixture
def mapped_project(tiny_project):
    """The tiny project after stages 1 and 2."""
    assert run_script("1_show.py", "--config", str(tiny_project))[0] == 0
    assert run_script("2_build_map.py", "--config", str(tiny_project))[0] == 0
    return tiny_project
