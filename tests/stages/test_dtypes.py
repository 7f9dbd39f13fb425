"""Dtypes across the pipeline: a bf16 checkpoint into a float32 port and the reverse, cast on load in stage 4."""

import json

import pytest

from tests.conftest import run_script, write_config


def ms_net_in(dtype="float16"):
    """The tiny MindSpore port with its float parameters in `dtype` (a half-precision port)."""
    import mindspore as ms

    from tests.tiny_models import ms_net

    net = ms_net()
    for parameter in net.get_parameters():
        if parameter.dtype == ms.float32:
            parameter.set_dtype(getattr(ms, dtype))
    return net


def _project(tmp_path, checkpoint_dtype, ms_model="tests.tiny_models:ms_net", extra="", verify=""):
    """The tiny pair with its checkpoint saved as safetensors in `checkpoint_dtype`; returns the config path."""
    import torch
    from safetensors.torch import save_file

    from tests.tiny_models import randomized_state_dict, torch_net

    state = randomized_state_dict(torch_net())
    dtype = getattr(torch, checkpoint_dtype)
    save_file({name: value.to(dtype) if value.is_floating_point() else value for name, value in state.items()},
              tmp_path / "weights.safetensors")
    path = write_config(tmp_path, checkpoint="weights.safetensors", ms_model=ms_model, extra=extra)
    path.write_text(path.read_text().replace("[verify]\n", f"[verify]\n{verify}"))  # keys of [verify] itself
    return path


def _four_stages(config):
    for script in ("1_show.py", "2_build_map.py"):
        code, _, stderr = run_script(script, "--config", str(config))
        assert code == 0, stderr
    convert = run_script("3_pth2ckpt.py", "--config", str(config))
    assert convert[0] == 0, convert[2]
    verify = run_script("4_verify.py", "--config", str(config))
    report = json.loads((config.parent / "outputs" / "tiny" / "verify.json").read_text())
    return convert[1], verify, report


def test_bf16_checkpoint_into_a_float32_port_verifies_agree(tmp_path):
    convert_out, (code, stdout, stderr), report = _four_stages(_project(tmp_path, "bfloat16"))
    print(convert_out, stdout)
    assert "the file holds bfloat16, the MindSpore model's parameters are float32: rerun with --cast float32" \
        in convert_out
    assert code == 0 and report["verdict"] == "agree", stdout + stderr
    assert report["casts"] == ("both models computed in float32: cast 15 checkpoint tensors bfloat16 -> float32 on "
                               "the MindSpore side; cast 15 checkpoint tensors bfloat16 -> float32 on the PyTorch side")
    assert report["casts"] in stdout
    assert report["casts"] in (tmp_path / "outputs" / "tiny" / "verify.md").read_text()


def test_the_written_file_keeps_the_checkpoint_dtype_unless_cast(tmp_path):
    import mindspore as ms

    config = _project(tmp_path, "bfloat16")
    for script in ("1_show.py", "2_build_map.py", "3_pth2ckpt.py"):
        assert run_script(script, "--config", str(config))[0] == 0
    written = tmp_path / "outputs" / "tiny" / "tiny.ckpt"
    assert ms.load_checkpoint(str(written))["classifier.weight"].dtype == ms.bfloat16
    code, stdout, _ = run_script("3_pth2ckpt.py", "--config", str(config), "--cast", "float32")
    assert code == 0 and "dtypes:" not in stdout
    assert ms.load_checkpoint(str(written))["classifier.weight"].dtype == ms.float32


@pytest.mark.parametrize("port_dtype", ["float16", "bfloat16"])
def test_float32_checkpoint_into_a_half_precision_port_verifies_agree(tmp_path, port_dtype):
    config = _project(tmp_path, "float32", ms_model="tests.stages.test_dtypes:ms_net_in",
                      extra=f'[mindspore.kwargs]\ndtype = "{port_dtype}"\n')
    convert_out, (code, stdout, stderr), report = _four_stages(config)
    print(convert_out, stdout)
    assert f"the file holds float32, the MindSpore model's parameters are {port_dtype}: rerun with --cast " \
           f"{port_dtype} to match" in convert_out
    assert code == 0 and report["verdict"] == "agree", stdout + stderr
    assert f"cast 15 model parameters {port_dtype} -> float32 on the MindSpore side; nothing cast on the PyTorch " \
           "side" in report["casts"]


def test_both_sides_compute_in_float16_when_verify_dtype_says_so(tmp_path):
    # Outputs only: the per-layer isolation thresholds are float32's (running/compare.py OP_TOLERANCE), so in
    # float16 every normalisation layer would be named a cause; the README says so.
    config = _project(tmp_path, "float32", verify='tolerance = 2e-2\ndtype = "float16"\nlayers = false\n')
    convert_out, (code, stdout, stderr), report = _four_stages(config)
    print(stdout)
    assert code == 0 and report["agree"], stdout + stderr
    assert report["casts"].startswith("both models computed in float16: cast 15 checkpoint tensors float32 -> "
                                      "float16, 15 model parameters float32 -> float16 on the MindSpore side")
    assert 0 < report["outputs"][0]["relative"] < 2e-2  # half precision rounds: not exact, within its tolerance
