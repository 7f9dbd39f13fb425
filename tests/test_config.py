"""Config loading: defaults, relative paths, unknown keys, factories from packages and files."""

import pytest

from pt2ms.config import DEFAULT_CONFIG, load_config
from pt2ms.errors import Pt2MsError
from pt2ms.running.build import call_factory
from tests.conftest import write_config


def test_default_config_is_the_bundled_example():
    config = load_config()
    assert config.source == DEFAULT_CONFIG and config.name == "efficientnet_b0"
    assert config.verify.inputs[0].shape == [2, 3, 224, 224] and config.verify.inputs[0].dtype == "float32"


def test_paths_are_relative_to_the_config_file(tmp_path):
    config = load_config(write_config(tmp_path))
    assert config.torch.checkpoint == tmp_path / "weights.pth"
    assert config.map_path == tmp_path / "maps" / "tiny.json" and config.output_dir == tmp_path / "outputs" / "tiny"


def test_unknown_key_is_named(tmp_path):
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace("[verify]", "[verify]\nbatch = 3"))
    with pytest.raises(Pt2MsError, match=r"unknown key 'batch' in \[verify\]"):
        load_config(path)


def test_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\n[torch\ncheckpoint = "a"\n')
    with pytest.raises(Pt2MsError, match=r"bad.toml: TOML syntax error: .*line 2"):
        load_config(path)


def test_factory_from_a_file_and_with_a_classmethod(tmp_path):
    (tmp_path / "my_models.py").write_text("class Net:\n    @classmethod\n    def build(cls, width):\n        return ('net', width)\n")
    assert call_factory("my_models.py:Net.build", {"width": 3}, tmp_path / "c.toml") == ("net", 3)


@pytest.mark.parametrize("spec, message", [
    ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
    ("missing.py:f", "factory file .*missing.py not found"),
    ("tests.tiny_models:nope", "has no attribute 'nope'"),
    ("tests.tiny_models:torch_net", "raised TypeError"),
])
def test_factory_failures_are_one_line_errors(tmp_path, spec, message):
    with pytest.raises(Pt2MsError, match=message):
        call_factory(spec, {"bogus": 1} if spec.endswith("torch_net") else {}, tmp_path / "c.toml")


def test_an_input_dtype_that_is_not_supported_names_the_config_file(tmp_path):
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("inputs = [[2, 3, 8, 8]]",
                                                 'inputs = [{ shape = [2, 3], dtype = "complex128" }]'))
    with pytest.raises(Pt2MsError) as caught:
        load_config(config)
    assert str(caught.value) == (f"{config}: [verify] inputs: input 0: dtype 'complex128' is not supported "
                                 "(use one of float32, float16, float64, int64, int32, bool)")
