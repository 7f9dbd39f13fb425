"""Checkpoints load without running code from them unless the user says they trust the file.

Each hostile file here would create a marker file if it were unpickled normally (the first test proves
that the bait works); stage 1 must refuse it with exit 2, name the refused type and the two ways
forward, and the marker must not exist afterwards.
"""

import argparse
import builtins
import collections
import json
import os
import shlex

import numpy as np
import pytest
import torch

from tests.conftest import run_script
from tests.tiny_models import randomized_state_dict, torch_net

WAYS_FORWARD = ["--trust-pickle", "trust_pickle = true", "torch.save(model.state_dict()"]


class RunsShell:
    """Unpickles as os.system("touch <marker>")."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


class RunsPython:
    """Unpickles as exec("open(<marker>, 'w').close()")."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",)


# torch.save pickles with protocol 2, which spells builtins as __builtin__.
PAYLOADS = {"os_system": (RunsShell, "posix.system"), "builtins_exec": (RunsPython, "__builtin__.exec")}
PLACES = {
    "whole_file": lambda state, payload: payload,
    "beside_the_tensors": lambda state, payload: {**state, "hook": payload},
    "in_a_training_checkpoint": lambda state, payload: {"state_dict": state, "epoch": 3, "extra": [payload]},
}


def save(obj, path, legacy=False):
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)


def stage1(config, *args):
    return run_script("1_show.py", "--config", str(config), *args)


def assert_one_line_refusal(code, stderr):
    assert code == 2, stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1 and stderr.endswith("\n"), stderr
    assert "weights.pth" in stderr


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_the_bait_works_when_unpickled_normally(tmp_path, payload, legacy):
    """Without this, a refusal test below could pass because the payload never did anything."""
    marker = tmp_path / "pwned"
    save({"hook": payload[0](marker)}, tmp_path / "bait.pth", legacy)
    torch.load(tmp_path / "bait.pth", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("place", PLACES.values(), ids=PLACES.keys())
@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_code_in_a_zip_pth_is_refused_and_never_runs(tiny_project, payload, place):
    make, type_name = payload
    marker = tiny_project.parent / "pwned"
    state = randomized_state_dict(torch_net())
    save(place(state, make(marker)), tiny_project.parent / "weights.pth")
    code, _, stderr = stage1(tiny_project)
    assert_one_line_refusal(code, stderr)
    assert f"refused to unpickle type {type_name}" in stderr
    for way in WAYS_FORWARD:
        assert way in stderr
    assert not marker.exists()
    assert not (tiny_project.parent / "outputs").exists()


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_code_in_a_legacy_pth_is_refused_and_never_runs(tiny_project, payload):
    marker = tiny_project.parent / "pwned"
    save({**randomized_state_dict(torch_net()), "hook": payload[0](marker)}, tiny_project.parent / "weights.pth",
         legacy=True)
    code, _, stderr = stage1(tiny_project)
    assert_one_line_refusal(code, stderr)
    assert "--trust-pickle" in stderr
    assert not marker.exists()
    assert not (tiny_project.parent / "outputs").exists()


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_legacy_refusal_names_the_type_and_both_ways_forward(tiny_project, payload):
    make, type_name = payload
    save({**randomized_state_dict(torch_net()), "hook": make(tiny_project.parent / "pwned")},
         tiny_project.parent / "weights.pth", legacy=True)
    code, _, stderr = stage1(tiny_project)
    assert_one_line_refusal(code, stderr)
    assert type_name in stderr
    for way in WAYS_FORWARD:
        assert way in stderr


def training_checkpoint():
    """What training scripts save: weights under "state_dict" beside harmless bookkeeping."""
    return {
        "state_dict": randomized_state_dict(torch_net()),
        "args": argparse.Namespace(lr=0.1, arch="tiny", milestones=[30, 60], amp=False),
        "epoch": 7,
        "best_acc": np.float64(0.913),
        "step": np.int64(1200),
        "loss_history": np.array([2.3, 1.1, 0.7], dtype=np.float32),
        "class_counts": np.arange(3),
        "splits": ("train", "val"),
    }


def test_plain_legacy_state_dict_loads_without_opting_in(tiny_project):
    save(randomized_state_dict(torch_net()), tiny_project.parent / "weights.pth", legacy=True)
    code, stdout, stderr = stage1(tiny_project)
    assert code == 0, stderr
    assert "torch: 17 tensors, 313 values" in stdout


def test_harmless_extras_in_a_zip_pth_load_without_opting_in(tiny_project):
    save(training_checkpoint(), tiny_project.parent / "weights.pth")
    code, stdout, stderr = stage1(tiny_project)
    assert code == 0, stderr
    assert "torch: 17 tensors, 313 values" in stdout
    assert run_script("2_build_map.py", "--config", str(tiny_project))[0] == 0
    code, stdout, stderr = run_script("3_pth2ckpt.py", "--config", str(tiny_project))
    assert code == 0 and "converted 15" in stdout, stderr


def test_harmless_extras_in_a_legacy_pth_load_without_opting_in(tiny_project):
    save(training_checkpoint(), tiny_project.parent / "weights.pth", legacy=True)
    code, stdout, stderr = stage1(tiny_project)
    assert code == 0, stderr
    assert "torch: 17 tensors, 313 values" in stdout


def test_a_set_in_a_zip_pth_loads_without_opting_in(tiny_project):
    save({**training_checkpoint(), "seen_classes": {0, 2}}, tiny_project.parent / "weights.pth")
    code, _, stderr = stage1(tiny_project)
    assert code == 0, stderr


def whole_model():
    model = torch_net()
    model.load_state_dict(randomized_state_dict(model))
    return model


def test_whole_pickled_model_loads_with_trust_pickle_in_the_config(tiny_project):
    import mindspore as ms

    model = whole_model()
    save(model, tiny_project.parent / "weights.pth")
    text = tiny_project.read_text()
    tiny_project.write_text(text.replace('[torch]\n', '[torch]\ntrust_pickle = true\n', 1))
    for script in ("1_show.py", "2_build_map.py", "3_pth2ckpt.py"):
        code, _, stderr = run_script(script, "--config", str(tiny_project))
        assert code == 0, f"{script}: {stderr}"
    loaded = ms.load_checkpoint(str(tiny_project.parent / "outputs" / "tiny" / "tiny.ckpt"))
    assert np.array_equal(loaded["classifier.weight"].asnumpy(), model.fc.weight.detach().numpy())
    assert np.array_equal(loaded["features.1.moving_variance"].asnumpy(), model.features[1].running_var.numpy())


def test_whole_pickled_model_loads_with_the_trust_pickle_flag(tiny_project):
    save(whole_model(), tiny_project.parent / "weights.pth")
    code, _, stderr = stage1(tiny_project)
    assert code == 2 and "refused to unpickle type tests.tiny_models.TorchNet" in stderr
    code, stdout, stderr = stage1(tiny_project, "--trust-pickle")
    assert code == 0, stderr
    assert "torch: 17 tensors" in stdout


# --- tensors whose layout points outside their storage --------------------------------------------------

class StridedTensor:
    """Pickles as torch's tensor rebuild with a layout of our choosing (torch itself never writes these)."""

    def __init__(self, storage, offset, shape, stride):
        self.args = storage, offset, shape, stride

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (*self.args, False, collections.OrderedDict())


HOSTILE_LAYOUTS = {
    # A negative stride walks backwards out of the buffer: the bytes before it end up in the .ckpt.
    "negative_stride": (0, (3, 4), (4, -1)),
    "negative_offset": (-4, (3, 4), (4, 1)),
    "stride_shorter_than_shape": (0, (3, 4), (4,)),
}


@pytest.mark.parametrize("layout", HOSTILE_LAYOUTS.values(), ids=HOSTILE_LAYOUTS.keys())
def test_tensor_layout_outside_its_storage_is_refused(tiny_project, layout):
    for script in ("1_show.py", "2_build_map.py"):
        assert run_script(script, "--config", str(tiny_project))[0] == 0
    state = randomized_state_dict(torch_net())
    storage = torch.arange(12, dtype=torch.float32).untyped_storage()
    state["fc.weight"] = StridedTensor(torch.storage.TypedStorage(wrap_storage=storage, dtype=torch.float32,
                                                                  _internal=True), *layout)
    save(state, tiny_project.parent / "weights.pth")
    before = json.loads((tiny_project.parent / "maps" / "tiny.json").read_text())
    for script in ("1_show.py", "3_pth2ckpt.py"):
        try:
            code, _, stderr = run_script(script, "--config", str(tiny_project))
        except Exception as error:  # a traceback is a failure too, just a louder one
            pytest.fail(f"{script} crashed: {type(error).__name__}: {error}")
        assert code == 2 and "weights.pth" in stderr.splitlines()[-1], f"{script}: exit {code}, {stderr!r}"
    assert not (tiny_project.parent / "outputs" / "tiny" / "tiny.ckpt").exists()
    assert json.loads((tiny_project.parent / "maps" / "tiny.json").read_text()) == before


@pytest.mark.parametrize("value", ['"false"', '"no"', '"true"', "1", "0"])
def test_trust_pickle_must_be_a_real_boolean(tiny_project, value):
    """A quoted "false" is a non-empty string, truthy in Python: it must be refused, never run the pickle."""
    marker = tiny_project.parent / "pwned"
    save({**randomized_state_dict(torch_net()), "hook": RunsShell(marker)}, tiny_project.parent / "weights.pth")
    text = tiny_project.read_text().replace('checkpoint = "weights.pth"',
                                            f'checkpoint = "weights.pth"\ntrust_pickle = {value}')
    tiny_project.write_text(text)
    code, _, stderr = stage1(tiny_project)
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert "tiny.toml" in stderr and "trust_pickle must be true or false" in stderr
    assert not marker.exists()
    assert not (tiny_project.parent / "outputs").exists()
