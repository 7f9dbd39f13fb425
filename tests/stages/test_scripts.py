"""The numbered scripts: --help works, the README documents each, bad input is one line and exit 2."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_script

SCRIPTS = ["1_show.py", "2_build_map.py", "3_pth2ckpt.py", "4_verify.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_runs_in_a_fresh_process(script):
    done = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert "--config" in done.stdout and "--trust-pickle" in done.stdout


def test_readme_starts_with_the_two_commands_and_documents_every_script():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block
    for script in SCRIPTS:
        assert f"`{script}`" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("script", SCRIPTS)
def test_missing_config_is_one_line_and_exit_2(script, tmp_path):
    code, stdout, stderr = run_script(script, "--config", str(tmp_path / "nope.toml"))
    assert code == 2
    assert stderr == f"error: {tmp_path / 'nope.toml'}: config file not found\n"
