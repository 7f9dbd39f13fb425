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


def _broken_txt(*args, **kwargs):
    raise KeyError("layer_type")  # a bug of ours, deep inside stage 1: not bad input


def test_an_unexpected_exception_is_one_line_and_exit_4(tiny_project, monkeypatch):
    import pt2ms.formats.inventory

    monkeypatch.setattr(pt2ms.formats.inventory, "to_txt", _broken_txt)
    code, _, stderr = run_script("1_show.py", "--config", str(tiny_project))
    assert code == 4
    assert stderr == ("error: internal error in 1_show.py: KeyError: 'layer_type' "
                      "(rerun with --debug for the traceback)\n")
    code, _, stderr = run_script("1_show.py", "--config", str(tiny_project), "--debug")
    assert code == 4 and "Traceback (most recent call last)" in stderr and "_broken_txt" in stderr
    assert stderr.splitlines()[-1] == "error: internal error in 1_show.py: KeyError: 'layer_type'"


@pytest.mark.parametrize("command, message", [
    ("shwo", "error: unknown command 'shwo' (did you mean 'show'?)"),
    ("make-exmaple", "error: unknown command 'make-exmaple' (did you mean 'make-example'?)"),
    ("frobnicate", "error: unknown command 'frobnicate' (one of: show, map, convert, verify, make-example)"),
])
def test_an_unknown_pt2ms_command_is_an_error_line_and_exit_2(command, message, capsys):
    from pt2ms.__main__ import main

    assert main([command]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == message
