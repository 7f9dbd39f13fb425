"""Broken and hostile inputs: each stage refuses them with exit 2 and one line naming the file and the problem.

Every case runs on a copy of a project that has been through all four stages (a converted .ckpt, a
verify.json, a hand edit in maps/tiny.json), and checks that nothing on disk changed: no temporary
`.part` file, no new artifact, every earlier file byte for byte as it was. The last test kills a
conversion mid-write and checks that the previous .ckpt survives.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from tests.conftest import ROOT, run_script, write_config
from tests.tiny_models import ms_net, randomized_state_dict, torch_net

ALL_STAGES = ["1_show.py", "2_build_map.py", "3_pth2ckpt.py", "4_verify.py"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The tiny project after stages 1 to 4, with one hand edit in its map; built once per module."""
    root = tmp_path_factory.mktemp("converted")
    torch.save(randomized_state_dict(torch_net()), root / "weights.pth")
    config = write_config(root)
    for script in ALL_STAGES[:2]:
        assert run_script(script, "--config", str(config))[0] == 0
    map_path = root / "maps" / "tiny.json"
    data = json.loads(map_path.read_text())
    data["map"]["classifier.weight"] = {"torch": "fc.weight"}  # the user's (right) edit, in the long form
    map_path.write_text(json.dumps(data, indent=2) + "\n")
    for script in ALL_STAGES[2:]:
        assert run_script(script, "--config", str(config))[0] == 0
    for artifact in ("outputs/tiny/tiny.ckpt", "outputs/tiny/verify.json", "outputs/tiny/ms_params.csv"):
        assert (root / artifact).is_file()
    return root


@pytest.fixture
def project(converted, tmp_path):
    """A private copy of the converted project: returns its config path."""
    shutil.copytree(converted, tmp_path / "project")
    return tmp_path / "project" / "tiny.toml"


def snapshot(root):
    """Every file under `root` (bytecode caches aside) -> its bytes."""
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts}


def assert_refused(config, script, *args, names, says=(), one_line=True):
    """Run a stage that must refuse its input; check the message and that the disk is untouched.

    With one_line=False only the last line of stderr is checked (see the progress-bar tests below).
    """
    root = config.parent
    before = snapshot(root)
    code, _, stderr = run_script(script, "--config", str(config), *args)
    assert code == 2, f"exit {code}, stderr {stderr!r}"
    assert stderr.endswith("\n"), stderr
    if one_line:
        assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    message = stderr.splitlines()[-1]
    assert message.startswith("error: "), stderr
    assert names in message, f"{names!r} not named in {message!r}"
    # The test's own folder name must not satisfy a fragment such as "corrupt" or "truncated".
    detail = message.replace(str(root), "<project>")
    for fragment in says:
        assert fragment.lower() in detail.lower(), f"{fragment!r} not in {detail!r}"
    after = snapshot(root)
    assert [name for name in after if name.endswith(".part")] == []
    assert sorted(set(after) - set(before)) == [], "new files"
    assert sorted(set(before) - set(after)) == [], "files removed"
    assert [name for name in before if before[name] != after[name]] == [], "files changed"
    return message


def set_config(config, old, new):
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new, 1))


# --- damaged and hostile checkpoints ----------------------------------------------------------------------

@pytest.mark.parametrize("script", ["1_show.py", "3_pth2ckpt.py"])
def test_missing_checkpoint(project, script):
    (project.parent / "weights.pth").unlink()
    assert_refused(project, script, names="weights.pth", says=["not found"])


def test_truncated_pth(project):
    path = project.parent / "weights.pth"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_refused(project, "1_show.py", names="weights.pth", says=["corrupt"])


@pytest.mark.parametrize("damage", ["random_bytes", "legacy_cut_in_half", "legacy_cut_short"])
def test_corrupt_pth_is_called_corrupt_without_suggesting_trust(project, damage):
    path = project.parent / "weights.pth"
    if damage == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4000))
    else:
        torch.save(randomized_state_dict(torch_net()), path, _use_new_zipfile_serialization=False)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] if damage == "legacy_cut_in_half" else data[:100])
    message = assert_refused(project, "1_show.py", names="weights.pth", says=["corrupt"])
    assert "--trust-pickle" not in message


def _first_central_entry(data):
    return data.index(b"PK\x01\x02")


def _bad_utf8_name(data):
    entry = _first_central_entry(data)
    data[entry + 8] |= 0x08  # general purpose flag bit 11 (0x800): the name is UTF-8 ...
    data[entry + 46] = 0xFF  # ... and its first byte is not
    return data


def _future_zip_version(data):
    data[_first_central_entry(data) + 6] = 200  # "version needed to extract" 20.0
    return data


def _multi_disk_zip64(data):
    locator = data.index(b"PK\x06\x07")
    data[locator + 4] = 1  # the zip64 directory is on "disk 1"
    return data


@pytest.mark.parametrize("damage", [_bad_utf8_name, _future_zip_version, _multi_disk_zip64],
                         ids=lambda f: f.__name__.strip("_"))
def test_damaged_zip_directory_in_pth(project, damage):
    path = project.parent / "weights.pth"
    path.write_bytes(bytes(damage(bytearray(path.read_bytes()))))
    assert_refused(project, "1_show.py", names="weights.pth", says=["corrupt"])


@pytest.fixture
def safetensors_project(project):
    """The project reading its weights from weights.safetensors instead of the .pth."""
    from safetensors.torch import save_file

    save_file(randomized_state_dict(torch_net()), project.parent / "weights.safetensors")
    set_config(project, 'checkpoint = "weights.pth"', 'checkpoint = "weights.safetensors"')
    return project


def test_truncated_safetensors(safetensors_project):
    path = safetensors_project.parent / "weights.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_refused(safetensors_project, "1_show.py", names="weights.safetensors", says=["truncated"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_corrupt_safetensors(safetensors_project, seed):
    (safetensors_project.parent / "weights.safetensors").write_bytes(np.random.default_rng(seed).bytes(3000))
    assert_refused(safetensors_project, "1_show.py", names="weights.safetensors", says=["safetensors"])


def _safetensors_with_header(header, data=b""):
    encoded = json.dumps(header).encode()
    return len(encoded).to_bytes(8, "little") + encoded + data


def test_safetensors_header_that_is_not_json(safetensors_project):
    (safetensors_project.parent / "weights.safetensors").write_bytes(_safetensors_with_header({})[:8] + b"{" * 2)
    assert_refused(safetensors_project, "1_show.py", names="weights.safetensors", says=["corrupt"])


HOSTILE_HEADERS = {
    "list": [],
    "entry_not_an_object": {"w": 1},
    "entry_without_offsets": {"w": {"dtype": "F32", "shape": [1]}},
    "shape_not_numbers": {"w": {"dtype": "F32", "shape": ["x"], "data_offsets": [0, 4]}},
    "negative_offsets": {"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}},
}


@pytest.mark.parametrize("header", HOSTILE_HEADERS.values(), ids=HOSTILE_HEADERS.keys())
def test_safetensors_header_of_the_wrong_structure(safetensors_project, header):
    (safetensors_project.parent / "weights.safetensors").write_bytes(_safetensors_with_header(header, b"\0" * 4))
    assert_refused(safetensors_project, "1_show.py", names="weights.safetensors", says=["corrupt"])


@pytest.fixture
def template_project(project):
    """The project taking its MindSpore names from template.ckpt."""
    import mindspore as ms

    ms.save_checkpoint(ms_net(), str(project.parent / "template.ckpt"))
    set_config(project, "[mindspore]\n", '[mindspore]\ntemplate = "template.ckpt"\n')
    return project


def test_template_ckpt_works_before_it_is_damaged(template_project):
    assert run_script("1_show.py", "--config", str(template_project))[0] == 0


@pytest.mark.parametrize("script", ["1_show.py", "3_pth2ckpt.py"])
def test_truncated_template_ckpt(template_project, script):
    path = template_project.parent / "template.ckpt"
    data = path.read_bytes()
    path.chmod(0o600)  # MindSpore saves checkpoints read-only
    path.write_bytes(data[: len(data) // 2])
    assert_refused(template_project, script, names="template.ckpt", says=["truncated"])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_corrupt_template_ckpt(template_project, seed):
    path = template_project.parent / "template.ckpt"
    path.chmod(0o600)
    path.write_bytes(np.random.default_rng(seed).bytes(3000))
    assert_refused(template_project, "1_show.py", names="template.ckpt", says=["checkpoint"])


# --- pickles that are not a state dict --------------------------------------------------------------------

def test_pickled_list_of_tensors(project):
    torch.save(list(randomized_state_dict(torch_net()).values()), project.parent / "weights.pth")
    assert_refused(project, "1_show.py", names="weights.pth", says=["holds a list", "not a state dict"])


def test_whole_pickled_model_is_refused_by_default(project):
    torch.save(torch_net(), project.parent / "weights.pth")
    assert_refused(project, "1_show.py", names="weights.pth",
                   says=["refused to unpickle type tests.tiny_models.TorchNet", "--trust-pickle",
                         "trust_pickle = true", "torch.save(model.state_dict()"])


def test_empty_state_dict(project):
    torch.save({}, project.parent / "weights.pth")
    assert_refused(project, "1_show.py", names="weights.pth", says=["empty"])


def test_dict_without_tensors(project):
    torch.save({"epoch": 3, "note": "weights were never saved"}, project.parent / "weights.pth")
    assert_refused(project, "1_show.py", names="weights.pth", says=["holds no tensors", "epoch"])


# --- configs ----------------------------------------------------------------------------------------------

BAD_CONFIGS = {
    # (what to replace, replacement, what the message must say)
    "syntax_error": ('checkpoint = "weights.pth"', 'checkpoint "weights.pth"', ["syntax", "line 3"]),
    "missing_name": ('name = "tiny"\n', "", ["'name'"]),
    "missing_checkpoint": ('checkpoint = "weights.pth"\n', "", ["'checkpoint'", "[torch]"]),
    "unknown_top_level_key": ('name = "tiny"\n', 'name = "tiny"\nepochs = 3\n', ["unknown key 'epochs'"]),
    "unknown_section_key": ('checkpoint = "weights.pth"', 'checkpiont = "weights.pth"',
                            ["unknown key 'checkpiont' in [torch]"]),
    "complex_input": ("inputs = [[2, 3, 8, 8]]", 'inputs = [{ shape = [2, 3, 8, 8], dtype = "complex128" }]',
                      ["[verify] inputs: input 0: dtype 'complex128' is not supported"]),
}


@pytest.mark.parametrize("script", ALL_STAGES)
@pytest.mark.parametrize("case", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_config(project, script, case):
    old, new, says = case
    set_config(project, old, new)
    assert_refused(project, script, names="tiny.toml", says=says)


# --- model factories --------------------------------------------------------------------------------------

FACTORY_FILE = '''\
def raises(**kwargs):
    raise ValueError("width must be positive")


def returns_a_dict(**kwargs):
    return {}
'''

BAD_FACTORIES = {
    "no_such_module": ("torch", "no_such_module_pt2ms:net",
                       ["[torch] model", "no module named 'no_such_module_pt2ms' is installed"]),
    "no_such_file": ("torch", "no_such_file.py:net", ["no_such_file.py", "not found"]),
    "no_such_attribute": ("torch", "tests.tiny_models:no_such_factory", ["has no attribute 'no_such_factory'"]),
    "raises": ("torch", "factories.py:raises", ["raised ValueError: width must be positive"]),
    "wrong_type": ("torch", "factories.py:returns_a_dict", ["returned dict", "torch.nn.Module"]),
    "ms_no_such_attribute": ("mindspore", "tests.tiny_models:no_such_cell", ["has no attribute 'no_such_cell'"]),
    "typo": ("mindspore", "tests.tiny_models:ms_nte", ["[mindspore] model", "did you mean 'ms_net'?"]),
    "ms_raises": ("mindspore", "factories.py:raises", ["raised ValueError"]),
    "no_colon": ("torch", "tests.tiny_models.torch_net", ["must look like"]),
}


@pytest.mark.parametrize("case", BAD_FACTORIES.values(), ids=BAD_FACTORIES.keys())
def test_bad_factory(project, case):
    side, spec, says = case
    (project.parent / "factories.py").write_text(FACTORY_FILE)
    default = {"torch": "tests.tiny_models:torch_net", "mindspore": "tests.tiny_models:ms_net"}[side]
    set_config(project, f'model = "{default}"', f'model = "{spec}"')
    assert_refused(project, "1_show.py", names="tiny.toml", says=says)


# --- maps -------------------------------------------------------------------------------------------------

def edit_map(project, **entries):
    map_path = project.parent / "maps" / "tiny.json"
    data = json.loads(map_path.read_text())
    data["map"].update(entries)
    map_path.write_text(json.dumps(data, indent=2) + "\n")


@pytest.mark.parametrize("script", ["2_build_map.py", "3_pth2ckpt.py"])
def test_map_with_a_json_syntax_error_is_refused_and_kept(project, script):
    map_path = project.parent / "maps" / "tiny.json"
    text = map_path.read_text()
    broken = text.replace('"norm.gamma": "norm.weight",', '"norm.gamma": "norm.weight"', 1)  # a dropped comma
    assert broken != text
    map_path.write_text(broken)
    with pytest.raises(json.JSONDecodeError) as syntax:
        json.loads(broken)
    assert_refused(project, script, names="tiny.json",
                   says=[f"line {syntax.value.lineno}, column {syntax.value.colno}"])


def test_map_entry_for_a_parameter_the_target_lacks(project):
    edit_map(project, **{"features.9.weight": "features.0.weight"})
    assert_refused(project, "3_pth2ckpt.py", names="tiny.json", says=["'features.9.weight'", "no MindSpore parameter"])


def test_map_entry_reading_a_tensor_the_checkpoint_lacks(project):
    edit_map(project, **{"classifier.weight": "head.weight"})
    assert_refused(project, "3_pth2ckpt.py", names="tiny.json", says=["'classifier.weight'", "'head.weight'", "lacks"])


def test_map_entry_wrong_on_both_sides(project):
    edit_map(project, **{"no.such.parameter": "no.such.tensor"})
    assert_refused(project, "3_pth2ckpt.py", names="tiny.json", says=["'no.such.parameter'"])


def test_one_torch_tensor_feeding_two_parameters_by_mistake(project):
    edit_map(project, **{"norm.beta": "norm.weight"})
    assert_refused(project, "3_pth2ckpt.py", names="tiny.json",
                   says=["'norm.weight' feeds", "norm.gamma", "norm.beta", '"tied": true'])


def test_shape_mismatch(project):
    edit_map(project, **{"classifier.weight": "features.0.weight"})
    assert_refused(project, "3_pth2ckpt.py", names="tiny.json",
                   says=["shape mismatch for 'classifier.weight'", "[3, 4]", "[4, 3, 3, 3]"])


def test_parameters_stage_2_found_nothing_for_are_refused_and_listed(project):
    """Stage 2's own null ("no PyTorch tensor fits") would leave random weights: one line, then the list."""
    map_path = project.parent / "maps" / "tiny.json"
    data = json.loads(map_path.read_text())
    for name in ("norm.gamma", "norm.beta"):
        data["map"][name] = data["suggested"][name] = None
    map_path.write_text(json.dumps(data, indent=2) + "\n")
    before = snapshot(project.parent)
    code, _, stderr = run_script("3_pth2ckpt.py", "--config", str(project))
    lines = stderr.splitlines()
    assert code == 2 and lines[0].startswith("error: ") and str(map_path) in lines[0], stderr
    assert "2 MindSpore parameter(s) would keep their initial (random) values" in lines[0]
    assert lines[1:] == ["  left at initial value: norm.gamma", "  left at initial value: norm.beta",
                         "  unused PyTorch tensor: norm.weight", "  unused PyTorch tensor: norm.bias",
                         "  (2 left at initial value, 2 PyTorch tensors unused in all)"]
    assert snapshot(project.parent) == before, "nothing written, the earlier .ckpt intact"


# --- values that cannot be converted ----------------------------------------------------------------------

def save_weights_with(project, fill):
    """Rewrite weights.pth with the first values of fc.weight replaced by `fill`."""
    state = randomized_state_dict(torch_net())
    flat = state["fc.weight"].view(-1)
    for index, value in enumerate(fill):
        flat[index] = value
    torch.save(state, project.parent / "weights.pth")


NAN_AND_INF = [float("nan")] * 3 + [float("inf"), float("-inf")]


def test_nan_and_inf_in_the_weights(project):
    save_weights_with(project, NAN_AND_INF)
    assert_refused(project, "3_pth2ckpt.py", names="weights.pth", one_line=False,
                   says=["'fc.weight'", "5 NaN/Inf", "--allow-nonfinite"])


def test_nan_and_inf_in_the_weights_is_one_line(project):
    save_weights_with(project, NAN_AND_INF)
    assert_refused(project, "3_pth2ckpt.py", names="weights.pth", says=["5 NaN/Inf"])


def test_cast_that_overflows(project):
    save_weights_with(project, [1e6] * 6 + [-1e6])
    assert_refused(project, "3_pth2ckpt.py", "--cast", "float16", names="weights.pth", one_line=False,
                   says=["'fc.weight'", "float16", "7 value", "--allow-overflow"])


def test_cast_that_overflows_is_one_line(project):
    save_weights_with(project, [1e6] * 6 + [-1e6])
    assert_refused(project, "3_pth2ckpt.py", "--cast", "float16", names="weights.pth", says=["7 value"])


def test_overflow_allowed_converts_and_counts(project):
    """The way forward that the overflow message names works on its own, and says what it did."""
    save_weights_with(project, [1e6] * 7)
    code, stdout, stderr = run_script("3_pth2ckpt.py", "--config", str(project), "--cast", "float16",
                                      "--allow-overflow")
    assert code == 0, stderr
    assert "warning: 7 value(s) of classifier.weight overflowed" in stdout


def test_damaged_converted_ckpt_in_a_fresh_process(project):
    """Stage 4 through MindSpore's own loader, whose C++ side could write to stderr behind Python's back."""
    ckpt = project.parent / "outputs" / "tiny" / "tiny.ckpt"
    data = ckpt.read_bytes()
    ckpt.chmod(0o600)
    ckpt.write_bytes(data[: len(data) // 2])
    before = snapshot(project.parent)
    done = subprocess.run([sys.executable, str(ROOT / "4_verify.py"), "--config", str(project)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: {ckpt}: ") and done.stderr.count("\n") == 1, done.stderr
    assert "corrupt" in done.stderr
    assert snapshot(project.parent) == before


# --- a conversion killed while it writes ------------------------------------------------------------------

def test_killed_conversion_leaves_the_previous_ckpt_intact(tmp_path):
    import mindspore as ms

    config, out = _big_conversion(tmp_path)  # 40 x 10 MB of float32
    previous = out / "big.ckpt"
    ms.save_checkpoint([{"name": "old.weight", "data": ms.Tensor(np.arange(6, dtype=np.float32).reshape(2, 3))}],
                       str(previous))
    previous_bytes = previous.read_bytes()

    try:
        sizes = kill_once_writing(config, out)
        assert 0 < sizes[-1] < 40 * 1024 * 2560 * 4
        assert previous.read_bytes() == previous_bytes
        loaded = ms.load_checkpoint(str(previous))
        assert list(loaded) == ["old.weight"] and loaded["old.weight"].asnumpy().tolist() == [[0, 1, 2], [3, 4, 5]]
    finally:
        # pytest keeps recent temporary folders: leave no 800 MB behind. (Nothing can remove the killed
        # run's .part but a later cleanup.)
        for big in [tmp_path / "big.pth", *out.glob(".big.ckpt.*.part")]:
            big.unlink()


def kill_once_writing(config, out):
    """Start stage 3 and SIGKILL it once its temporary .part file is growing; returns the sizes seen."""
    process = subprocess.Popen([sys.executable, str(ROOT / "3_pth2ckpt.py"), "--config", str(config)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sizes, killed, deadline = [], False, time.monotonic() + 60
    try:
        while time.monotonic() < deadline and process.poll() is None:
            parts = list(out.glob(".big.ckpt.*.part"))
            if parts:
                sizes.append(parts[0].stat().st_size)
                if len(sizes) >= 2 and 0 < sizes[-2] < sizes[-1]:
                    process.send_signal(signal.SIGKILL)
                    killed = True
                    break
            time.sleep(0.005)
    finally:
        process.kill()
        process.wait()
    assert killed and process.returncode == -signal.SIGKILL, \
        f"not killed mid-write (exit {process.returncode}, .part sizes seen {sizes}): make the checkpoint bigger"
    return sizes


# --- names that would reach outside maps/ and outputs/ ----------------------------------------------------

@pytest.mark.parametrize("name", ["..", ".", "../escape", "a/../..", ".hidden", "a\\\\b", "x" * 101, ""])
@pytest.mark.parametrize("script", ["1_show.py", "3_pth2ckpt.py"])
def test_a_name_cannot_leave_the_output_folders(project, script, name):
    set_config(project, 'name = "tiny"', f'name = "{name}"')
    beside = snapshot(project.parent.parent)  # the folder above the project, where ".." would write
    assert_refused(project, script, names="tiny.toml", says=["'name'"])
    assert snapshot(project.parent.parent) == beside


def test_an_output_folder_linked_outside_is_refused(project, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    set_config(project, 'name = "tiny"', 'name = "linked"')
    (project.parent / "outputs" / "linked").symlink_to(elsewhere, target_is_directory=True)
    assert_refused(project, "1_show.py", names="tiny.toml", says=["outside"])
    assert list(elsewhere.iterdir()) == []


# --- configs of the wrong kind: every key checked against one schema when the config is read ---------------

BAD_VALUES = {
    # (section line it goes under, the line, what the message must say)
    "inputs_a_number": ("[verify]", "inputs = 5", ["[verify] inputs must be a list"]),
    "input_not_a_shape": ("[verify]", "inputs = [7]", ["[verify] inputs: input 0 must be a shape list"]),
    "shape_of_strings": ("[verify]", 'inputs = [["a"]]', ["input 0 shape must be a list of positive integers"]),
    "shape_too_big": ("[verify]", "inputs = [[100000, 3, 224, 224]]", ["15,052,800,000 values"]),
    "shape_overflowing_int64": ("[verify]", "inputs = [[4294967296, 4294967296]]", ["values, more than"]),
    "low_above_high": ("[verify]", 'inputs = [{ shape = [2], dtype = "int64", low = 5, high = 1 }]',
                       ["low (5) must be below high (1)"]),
    "seed_a_string": ("[verify]", 'seed = "x"', ["[verify] seed must be an integer"]),
    "negative_tolerance": ("[verify]", "tolerance = -1.0", ["[verify] tolerance must be a positive number"]),
    "nan_tolerance": ("[verify]", "tolerance = nan", ["[verify] tolerance must be a positive number"]),
    "zero_batches": ("[verify]", "batches = 0", ["[verify] batches must be a positive integer"]),
    "batch_size_bool": ("[verify]", "batch_size = true", ["[verify] batch_size must be a positive integer"]),
    "kwargs_a_string": ("[torch]", 'kwargs = "width=3"', ["[torch] kwargs must be a table"]),
    "model_a_number": ("[mindspore]", "template = 3", ["[mindspore] template must be a string"]),
    "quoted_boolean": ("[verify]", 'layers = "false"', ["[verify] layers must be true or false"]),
    "path_with_nul": ("[mindspore]", 'template = "a\\u0000b"', ["[mindspore] template must be a string"]),
    "section_a_string": (None, 'example = "x"', ["[example] must be a table"]),
}


@pytest.mark.parametrize("case", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_config_value_of_the_wrong_kind(tmp_path, case):
    from pt2ms.config import load_config
    from pt2ms.errors import Pt2MsError

    section, line, says = case
    config = write_config(tmp_path)
    text = config.read_text()
    text = text.replace(f"{section}\n", f"{section}\n{line}\n", 1) if section else f"{line}\n{text}"
    config.write_text(text.replace("inputs = [[2, 3, 8, 8]]\n", "", 1) if "inputs" in line else text)
    with pytest.raises(Pt2MsError) as caught:
        load_config(config)
    message = str(caught.value)
    assert message.startswith(f"{config}: ") and "\n" not in message
    for fragment in says:
        assert fragment in message, message


def test_verify_train_table_passes_through(tmp_path):
    from pt2ms.config import load_config

    config = write_config(tmp_path, extra="[verify.train]\nsteps = 2\n")
    assert load_config(config).verify.train.steps == 2


@pytest.mark.parametrize("damage", ["folder", "not_utf8", "outputs_a_file", "symlink_loop"])
def test_config_that_cannot_be_read(project, damage):
    config = project
    if damage == "folder":
        config = project.parent / "folder.toml"
        config.mkdir()
        says = ["is a folder"]
    elif damage == "not_utf8":
        config.write_bytes(config.read_bytes() + b"# \xff\xfe\n")
        says = ["not UTF-8"]
    elif damage == "outputs_a_file":
        set_config(config, 'outputs = "outputs"', 'outputs = "weights.pth"')
        says = ["[paths] outputs", "is a file"]
    else:
        (project.parent / "loop_a").symlink_to(project.parent / "loop_b")
        (project.parent / "loop_b").symlink_to(project.parent / "loop_a")
        set_config(config, 'checkpoint = "weights.pth"', 'checkpoint = "loop_a/weights.pth"')
        says = ["loop"]
    assert_refused(config, "1_show.py", names=config.name, says=says)


# --- maps of the wrong structure --------------------------------------------------------------------------

BAD_MAPS = {
    # (edit of the map's data, what the message must say)
    "transform_a_number": (lambda data: data["map"].update({"classifier.weight": {"torch": "fc.weight", "transform": 5}}),
                           ["entry 'classifier.weight' must be a PyTorch name"]),
    "tied_a_string": (lambda data: data["map"].update({"classifier.weight": {"torch": "fc.weight", "tied": "yes"}}),
                      ["entry 'classifier.weight' must be"]),
    "ignored_a_list": (lambda data: data.update(ignored=["fc.bias"]), ['"ignored" must be']),
    "ignored_side_a_list": (lambda data: data.update(ignored={"torch": ["fc.bias"]}), ['"ignored" must be']),
    "suggested_a_string": (lambda data: data.update(suggested="all"), ['"suggested" must be an object']),
    "long_number": (lambda data: data["map"].update({"classifier.weight": {"torch": "fc.weight",
                                                                           "transform": f"reshape({'9' * 5000})"}}),
                    ["entry 'classifier.weight'", "transform of 5,009 characters"]),
    "number_out_of_range": (lambda data: data["map"].update({"classifier.weight": {
        "torch": "fc.weight", "transform": f"reshape({2**62}, 4)"}}), ["numbers out of range"]),
}


@pytest.mark.parametrize("case", BAD_MAPS.values(), ids=BAD_MAPS.keys())
@pytest.mark.parametrize("script", ["2_build_map.py", "3_pth2ckpt.py"])
def test_map_of_the_wrong_structure(project, script, case):
    edit, says = case
    map_path = project.parent / "maps" / "tiny.json"
    data = json.loads(map_path.read_text())
    edit(data)
    map_path.write_text(json.dumps(data, indent=2) + "\n")
    assert_refused(project, script, names="tiny.json", says=says)


def test_cat_dim_out_of_range_is_a_conflict_then_refused(project):
    edit_map(project, **{"classifier.weight": {"torch": ["fc.weight", "fc.weight"], "transform": "cat(7)", "tied": True}})
    code, _, stderr = run_script("2_build_map.py", "--config", str(project))
    conflicts = json.loads((project.parent / "maps" / "tiny.json").read_text())["conflicts"]
    assert code == 0 and [item["ms_name"] for item in conflicts] == ["classifier.weight"], stderr
    assert "cat(7) does not fit shapes" in conflicts[0]["problem"]
    assert_refused(project, "3_pth2ckpt.py", names="tiny.json", says=["cat(7) does not fit shapes [[3, 4], [3, 4]]"])


@pytest.mark.parametrize("text", ["[" * 20000 + "]" * 20000, '{"map": {"a": ' + "[" * 5000 + "]" * 5000 + "}}",
                                  '{"map": {}, "x": ' + "9" * 5000 + "}"])
def test_map_nested_too_deep_or_with_a_huge_number(project, text):
    (project.parent / "maps" / "tiny.json").write_text(text)
    assert_refused(project, "3_pth2ckpt.py", names="tiny.json",
                   says=["nested"] if text.count("[") > 1000 else ["exceeds the limit"])


# --- sharded indexes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("index, says", [
    ({"weight_map": {"fc.weight": "model.safetensors.index.json"}}, ["is an index itself"]),
    ({"weight_map": {"fc.weight": "../weights.safetensors"}}, ["outside the index's folder"]),
    ({"weight_map": {"fc.weight": "/etc/passwd"}}, ["outside the index's folder"]),
    ({"weight_map": ["fc.weight"]}, ['"weight_map" must be']),
    ({"weight_map": {"fc.weight": 3}}, ['"weight_map" must be']),
    ({"weight_map": {}}, ['"weight_map" must be']),
    ({"metadata": {}}, ["not a sharded-checkpoint index"]),
    ([1, 2], ["not a sharded-checkpoint index"]),
])
def test_bad_sharded_index(project, index, says):
    shards = project.parent / "shards"
    shards.mkdir()
    (shards / "model.safetensors.index.json").write_text(json.dumps(index))
    set_config(project, 'checkpoint = "weights.pth"', 'checkpoint = "shards/model.safetensors.index.json"')
    assert_refused(project, "1_show.py", names="model.safetensors.index.json", says=says)


# --- sizes a file declares: checked against the file and a cap before anything is allocated -----------------

def test_safetensors_header_over_the_cap(safetensors_project, monkeypatch):
    import pt2ms.formats.safetensors_file

    monkeypatch.setattr(pt2ms.formats.safetensors_file, "MAX_HEADER_BYTES", 1000)
    header = {f"w{index}": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]} for index in range(100)}
    (safetensors_project.parent / "weights.safetensors").write_bytes(_safetensors_with_header(header, b"\0" * 4))
    assert_refused(safetensors_project, "1_show.py", names="weights.safetensors", says=["more than 1,000"])


@pytest.mark.parametrize("shape", [[2**32, 2**32], [2**62, 2**62, 4]])
def test_safetensors_shape_that_overflows_int64(safetensors_project, shape):
    header = {"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]}}
    (safetensors_project.parent / "weights.safetensors").write_bytes(_safetensors_with_header(header))
    assert_refused(safetensors_project, "1_show.py", names="weights.safetensors", says=["out of bounds"])


def _varint(value):
    from pt2ms.formats.ckpt import _varint

    return _varint(value)


CKPT_LIES = {
    # a Value whose inner field claims more bytes than the Value (and the file) hold
    "tag_length": lambda: b"\x0a" + _varint(4) + b"\x0a" + _varint(2**40) + b"ab",
    "tensor_length": lambda: b"\x0a" + _varint(6) + b"\x0a\x01w\x12" + _varint(2**62),
    "dtype_name_length": lambda: b"\x0a" + _varint(9) + b"\x0a\x01w\x12\x04\x12" + _varint(2**30) + b"F",
    "content_length": lambda: b"\x0a" + _varint(13) + b"\x0a\x01w\x12\x08\x08\x01\x12\x01F\x1a" + _varint(2**50),
}


@pytest.mark.parametrize("lie", CKPT_LIES.values(), ids=CKPT_LIES.keys())
def test_ckpt_field_length_that_lies(template_project, lie):
    path = template_project.parent / "template.ckpt"
    path.chmod(0o600)
    path.write_bytes(lie())
    assert_refused(template_project, "1_show.py", names="template.ckpt", says=["corrupt MindSpore checkpoint"])


def test_deflated_data_pkl_bomb(project):
    import resource
    import zipfile

    path = project.parent / "weights.pth"
    source = zipfile.ZipFile(path)
    members = [(info.filename, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w") as out:
        for name, data in members:
            bomb = name.endswith("data.pkl")
            out.writestr(name, data + b"\0" * (300 << 20) if bomb else data,
                         compress_type=zipfile.ZIP_DEFLATED if bomb else zipfile.ZIP_STORED)
    assert path.stat().st_size < 1 << 20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert_refused(project, "1_show.py", names="weights.pth", says=["decompression bomb"])
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 100 << 10  # KiB: under 100 MB more


def test_legacy_pth_whose_lists_share_references(project):
    from pt2ms.formats.checkpoint import open_torch_checkpoint

    shared = [torch.zeros(1)]
    for _ in range(60):  # 2**60 paths through 61 lists
        shared = [shared, shared]
    path = project.parent / "weights.pth"
    torch.save({"w": torch.ones(2), "junk": shared}, path, _use_new_zipfile_serialization=False)
    assert path.stat().st_size < 2000
    assert list(open_torch_checkpoint(path)) == ["w"]


@pytest.mark.parametrize("zip_format", [False, True])
def test_20000_nested_dicts(project, zip_format):
    nested = {}
    for _ in range(20000):
        nested = {"a": nested}
    path = project.parent / "weights.pth"
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(50000)  # torch.save pickles recursively
    try:
        torch.save({"deep": nested}, path, _use_new_zipfile_serialization=zip_format)
    finally:
        sys.setrecursionlimit(limit)
    says = ["holds no tensors"] if zip_format else ["nested over 100 levels deep"]
    assert_refused(project, "1_show.py", names="weights.pth", says=says)


# --- errors of the system and of the user's own code, turned into one line at the boundary ------------------

BROKEN_DATASET = '''\
from tests.broken_models import MyDataset


class Broken(MyDataset):
    def __getitem__(self, index):
        if index == 3:
            raise ValueError("sample 3 is unreadable")
        return super().__getitem__(index)
'''


def test_dataset_that_raises_mid_iteration(project):
    (project.parent / "data.py").write_text(BROKEN_DATASET)
    set_config(project, "inputs = [[2, 3, 8, 8]]", 'dataset = "data.py:Broken"\nbatch_size = 2\nbatches = 3')
    assert_refused(project, "4_verify.py", names="tiny.toml",
                   says=["dataset 'data.py:Broken' failed while reading samples: ValueError: sample 3 is unreadable"])


@pytest.fixture
def read_only_outputs(project):
    out = project.parent / "outputs" / "tiny"
    mode = out.stat().st_mode
    out.chmod(0o555)
    if os.access(out, os.W_OK):  # root ignores permissions
        out.chmod(mode)
        pytest.skip("running as root: a read-only folder is still writable")
    yield project
    out.chmod(mode)


@pytest.mark.parametrize("script", ["1_show.py", "3_pth2ckpt.py", "4_verify.py"])
def test_read_only_output_folder(read_only_outputs, script):
    assert_refused(read_only_outputs, script, names="outputs/tiny", says=["permission denied"])


def test_output_path_that_is_a_folder(project):
    ckpt = project.parent / "outputs" / "tiny" / "tiny.ckpt"
    ckpt.unlink()
    ckpt.mkdir()
    assert_refused(project, "3_pth2ckpt.py", names="tiny.ckpt", says=["cannot write it", "directory"])


def test_file_size_limit_while_writing(project):
    """`ulimit -f` (or a full disk): the write fails with EFBIG; Python ignores SIGXFSZ, so it is an OSError."""
    script = (f"import resource, sys; sys.path.insert(0, {str(ROOT)!r}); import runpy; "
              "resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100)); "
              f"sys.argv = ['3_pth2ckpt.py', '--config', {str(project)!r}]; "
              f"runpy.run_path({str(ROOT / '3_pth2ckpt.py')!r}, run_name='__main__')")
    before = snapshot(project.parent)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "tiny.ckpt: cannot write it (File too large)" in done.stderr
    assert snapshot(project.parent) == before


def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    config, out = _big_conversion(tmp_path)
    process = subprocess.Popen([sys.executable, str(ROOT / "3_pth2ckpt.py"), "--config", str(config)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_growing_part(process, out)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
        (tmp_path / "big.pth").unlink()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.splitlines()[-1] == "terminated: earlier outputs are untouched"
    assert list(out.glob("*.part")) + list(out.glob(".*.part")) == []
    assert not (out / "big.ckpt").exists()


def test_second_run_on_one_config_is_refused_while_the_first_writes(tmp_path):
    config, out = _big_conversion(tmp_path)
    process = subprocess.Popen([sys.executable, str(ROOT / "3_pth2ckpt.py"), "--config", str(config)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        part = _wait_for_growing_part(process, out)
        code, _, stderr = run_script("3_pth2ckpt.py", "--config", str(config))
        assert part.exists(), "the second run deleted the first one's live .part"
        _, first_stderr = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()
        (tmp_path / "big.pth").unlink()
    assert code == 2 and stderr.count("\n") == 1 and "another pt2ms run on this config is writing here" in stderr
    assert process.returncode == 0, first_stderr
    assert (out / "big.ckpt").is_file() and list(out.glob(".*.part")) == []
    (out / "big.ckpt").unlink()


def test_a_part_is_removed_only_when_its_writer_is_gone(tmp_path):
    from pt2ms.formats.files import remove_stale_parts

    target = tmp_path / "a.ckpt"
    sleeper = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        live = tmp_path / f".a.ckpt.{sleeper.pid}.x1.part"
        live.write_bytes(b"live")
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        dead = tmp_path / f".a.ckpt.{int(gone.stdout)}.x2.part"
        dead.write_bytes(b"dead")
        assert remove_stale_parts(target) == 1
        assert live.exists() and not dead.exists()
    finally:
        sleeper.communicate(b"")


def _big_conversion(tmp_path):
    """A project whose stage 3 writes 400 MB, slowly enough to be caught mid-write."""
    from pt2ms.formats.inventory import TensorInfo, to_csv_text

    names, shape = [f"layers.{index}.weight" for index in range(40)], (1024, 2560)
    torch.save({name: torch.full(shape, float(index)) for index, name in enumerate(names)}, tmp_path / "big.pth")
    config = write_config(tmp_path, name="big", checkpoint="big.pth")
    out = tmp_path / "outputs" / "big"
    out.mkdir(parents=True)
    (out / "ms_params.csv").write_text(to_csv_text([TensorInfo(name, shape, "float32") for name in names]))
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "big.json").write_text(json.dumps({"map": {name: name for name in names}}, indent=2))
    return config, out


def _wait_for_growing_part(process, out):
    sizes, deadline = [], time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        parts = list(out.glob(".big.ckpt.*.part"))
        if parts:
            sizes.append(parts[0].stat().st_size)
            if len(sizes) >= 2 and 0 < sizes[-2] < sizes[-1]:
                return parts[0]
        time.sleep(0.005)
    raise AssertionError(f"no growing .part seen (exit {process.poll()}, sizes {sizes})")


@pytest.mark.parametrize("name", ["fc.\udc80weight", b"fc.weight", 7])
def test_tensor_name_that_is_not_valid_unicode_or_not_a_string(project, name):
    state = randomized_state_dict(torch_net())
    state[name] = torch.zeros(2)
    torch.save(state, project.parent / "weights.pth")
    assert_refused(project, "1_show.py", names="weights.pth", says=["tensor name"])


def test_a_refused_first_run_leaves_no_output_folder(tiny_project):
    (tiny_project.parent / "weights.pth").unlink()
    code, _, stderr = run_script("1_show.py", "--config", str(tiny_project))
    assert code == 2 and "checkpoint file not found" in stderr
    assert not (tiny_project.parent / "outputs" / "tiny").exists()


def test_a_zip_pth_whose_small_pickle_builds_millions_of_objects_is_refused(project, monkeypatch):
    """A 2 MB data.pkl of repeated memo references would build 10 million list entries: refused unbuilt."""
    import io
    import pickle
    import zipfile

    from pt2ms.formats import pth

    monkeypatch.setattr(pth, "MAX_PICKLE_NODES", 100_000)
    body = bytearray(b"\x80\x02]q\x00(")  # PROTO 2, EMPTY_LIST, BINPUT 0, MARK
    body += b"h\x00" * 200_000            # BINGET 0, again and again
    body += b"e."                          # APPENDS, STOP
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("weights/data.pkl", bytes(body))
    (project.parent / "weights.pth").write_bytes(buffer.getvalue())
    assert_refused(project, "1_show.py", names="weights.pth", says=["pickle operations"])
    assert pickle.loads(bytes(body))  # the bait is a real pickle
