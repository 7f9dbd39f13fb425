"""Factory mistakes in a config: named by their config key, with the module's callables (close matches first),
found before either framework is imported."""

import subprocess
import sys
import textwrap

import pytest

from pt2ms.errors import Pt2MsError
from pt2ms.running.build import call_factory
from pt2ms.running.factories import defined_names
from tests.conftest import ROOT, write_config

# Stage 1's main in a fresh process; prints the exit code and whether either framework got imported.
RUN_STAGE_1 = ("import runpy, sys; code = runpy.run_path({script!r})['main'](['--config', {config!r}]); "
               "print(code, 'torch' in sys.modules, 'mindspore' in sys.modules)")


def _stage_1_fresh(config):
    done = subprocess.run([sys.executable, "-c", RUN_STAGE_1.format(script=str(ROOT / "1_show.py"), config=str(config))],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    return done.stdout.split(), done.stderr


def test_a_typo_in_a_factory_file_names_the_key_and_the_right_name_before_any_framework(tmp_path):
    (tmp_path / "my_torch.py").write_text("import torch\n\ndef build():\n    return torch.nn.Linear(2, 2)\n\n"
                                          "def helper():\n    pass\n")
    config = write_config(tmp_path, torch_model="my_torch.py:biuld")
    (code, torch_imported, ms_imported), stderr = _stage_1_fresh(config)
    assert (code, torch_imported, ms_imported) == ("2", "False", "False"), stderr
    assert stderr == (f"error: {config}: [torch] model 'my_torch.py:biuld': 'my_torch.py' has no attribute 'biuld' "
                      "(did you mean 'build'? it has: build, helper, torch)\n")


def test_a_module_that_does_not_exist_fails_before_any_framework(tmp_path):
    (tmp_path / "weights.pth").write_bytes(b"")
    config = write_config(tmp_path, ms_model="tests.tiny_modls:ms_net")
    (code, torch_imported, ms_imported), stderr = _stage_1_fresh(config)
    assert (code, torch_imported, ms_imported) == ("2", "False", "False"), stderr
    assert stderr.startswith(f"error: {config}: [mindspore] model 'tests.tiny_modls:ms_net': no module named "
                             "'tests.tiny_modls' is installed (did you mean 'tests.tiny_models'")
    assert stderr.count("\n") == 1


def test_a_dataset_factory_typo_names_its_key(tmp_path):
    from pt2ms.config import load_config
    from pt2ms.running.factories import check_factories

    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("[verify]\n", '[verify]\ndataset = "tests.tiny_models:randomised_state_dict"\n'))
    with pytest.raises(Pt2MsError, match=r"\[verify\] dataset 'tests.tiny_models:randomised_state_dict': "
                                         r"'tests.tiny_models' has no attribute 'randomised_state_dict' "
                                         r"\(did you mean 'randomized_state_dict'\?"):
        check_factories(load_config(config))


def test_after_the_import_the_error_still_names_the_key_and_suggests(tmp_path):
    with pytest.raises(Pt2MsError) as caught:
        call_factory("tests.tiny_models:ms_nett", {}, tmp_path / "c.toml", "[mindspore] model")
    assert str(caught.value).startswith(f"{tmp_path / 'c.toml'}: [mindspore] model 'tests.tiny_models:ms_nett': "
                                        "'tests.tiny_models' has no attribute 'ms_nett' (did you mean 'ms_net'? "
                                        "it has: ms_net, MsNet, TorchNet, ")


@pytest.mark.parametrize("source, expected", [
    ("def f(): pass\nclass C: pass\nx = 1\nimport os.path\nfrom a import b as c\n",
     {"f": "callable", "C": "callable", "x": "value", "os": "imported", "c": "imported"}),
    ("try:\n    from fast import g\nexcept ImportError:\n    def g(): pass\n", {"g": "imported"}),
    ("from helpers import *\n", None),                       # cannot tell without running it
    ("for name in 'ab':\n    globals()[name] = len\n", None),
    ("def __getattr__(name):\n    return len\n", None),
])
def test_defined_names_read_a_file_without_running_it(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(textwrap.dedent(source))
    assert defined_names(path) == expected
