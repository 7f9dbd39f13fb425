"""The four stages end to end on the tiny pair, through the scripts' main()."""

import json

from tests.conftest import run_script


def test_four_stages_agree(tiny_project):
    out = tiny_project.parent / "outputs" / "tiny"
    assert run_script("1_show.py", "--config", str(tiny_project))[0] == 0
    assert (out / "torch_params.csv").read_text().count("\n") == 1 + 17
    assert "gamma" in (out / "ms_params.txt").read_text()
    code, stdout, _ = run_script("2_build_map.py", "--config", str(tiny_project))
    assert code == 0 and "mapped 15/15" in stdout
    mapping = json.loads((tiny_project.parent / "maps" / "tiny.json").read_text())
    assert mapping["map"]["features.1.gamma"] == "features.1.weight"
    assert mapping["map"]["classifier.weight"] == "fc.weight"
    assert set(mapping["ignored"]["torch"]) == {"features.1.num_batches_tracked", "features.5.num_batches_tracked"}
    code, stdout, _ = run_script("3_pth2ckpt.py", "--config", str(tiny_project))
    assert code == 0 and "converted 15, left at initial value 0, PyTorch tensors unused 0" in stdout
    code, stdout, _ = run_script("4_verify.py", "--config", str(tiny_project))
    report = json.loads((out / "verify.json").read_text())
    assert code == 0, stdout
    assert report["agree"] is True and report["layers_paired"] >= 5
    assert report["outputs"][0]["relative"] < 1e-5
    assert (out / "verify.md").read_text().startswith("# Verification: tiny")
    assert (out / "verify_layers.png").read_bytes()[:4] == b"\x89PNG"


def test_converted_checkpoint_loads_in_mindspore(mapped_project):
    import mindspore as ms
    import torch

    assert run_script("3_pth2ckpt.py", "--config", str(mapped_project))[0] == 0
    loaded = ms.load_checkpoint(str(mapped_project.parent / "outputs" / "tiny" / "tiny.ckpt"))
    source = torch.load(mapped_project.parent / "weights.pth", weights_only=True)
    assert (loaded["features.1.moving_variance"].asnumpy() == source["features.1.running_var"].numpy()).all()
    assert (loaded["classifier.weight"].asnumpy() == source["fc.weight"].numpy()).all()


def test_hand_edit_survives_rerun_and_is_honoured(mapped_project):
    import mindspore as ms

    map_path = mapped_project.parent / "maps" / "tiny.json"
    data = json.loads(map_path.read_text())
    # A deliberate (wrong but shape-compatible) edit: feed the LayerNorm's beta from its gamma's source.
    data["map"]["norm.beta"] = {"torch": "norm.weight", "tied": True}
    data["map"]["norm.gamma"] = {"torch": "norm.weight", "tied": True}
    data["map"]["features.5.beta"] = None
    map_path.write_text(json.dumps(data))
    code, stdout, _ = run_script("2_build_map.py", "--config", str(mapped_project))
    assert code == 0 and "hand edits kept 3" in stdout
    rerun = json.loads(map_path.read_text())
    assert rerun["map"]["norm.beta"] == {"torch": "norm.weight", "tied": True}
    assert rerun["map"]["features.5.beta"] is None
    assert rerun["found"]["norm.beta"]["method"] == "manual"
    code, stdout, _ = run_script("3_pth2ckpt.py", "--config", str(mapped_project))
    assert code == 0 and "left at initial value 1" in stdout
    loaded = ms.load_checkpoint(str(mapped_project.parent / "outputs" / "tiny" / "tiny.ckpt"))
    assert (loaded["norm.beta"].asnumpy() == loaded["norm.gamma"].asnumpy()).all()
    assert "features.5.beta" not in loaded


def test_shape_mismatch_in_map_is_rejected_with_exit_2(mapped_project):
    map_path = mapped_project.parent / "maps" / "tiny.json"
    data = json.loads(map_path.read_text())
    data["map"]["classifier.weight"] = "features.0.weight"
    map_path.write_text(json.dumps(data))
    ckpt = mapped_project.parent / "outputs" / "tiny" / "tiny.ckpt"
    code, _, stderr = run_script("3_pth2ckpt.py", "--config", str(mapped_project))
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("error: ")
    assert "tiny.json" in stderr and "shape mismatch for 'classifier.weight'" in stderr and "[4, 3, 3, 3]" in stderr
    assert not ckpt.exists()


def test_one_torch_tensor_feeding_two_parameters_needs_tied(mapped_project):
    map_path = mapped_project.parent / "maps" / "tiny.json"
    data = json.loads(map_path.read_text())
    data["map"]["norm.beta"] = "norm.weight"
    map_path.write_text(json.dumps(data))
    code, _, stderr = run_script("3_pth2ckpt.py", "--config", str(mapped_project))
    assert code == 2 and "'norm.weight' feeds" in stderr and '"tied": true' in stderr


def test_verify_fails_with_exit_1_when_models_differ(mapped_project):
    config = mapped_project.read_text().replace('model = "tests.tiny_models:ms_net"',
                                                'model = "tests.tiny_models:ms_net"\nkwargs = { eps = 0.5 }')
    mapped_project.write_text(config)
    assert run_script("3_pth2ckpt.py", "--config", str(mapped_project))[0] == 0
    code, stdout, _ = run_script("4_verify.py", "--config", str(mapped_project))
    report = json.loads((mapped_project.parent / "outputs" / "tiny" / "verify.json").read_text())
    assert code == 1 and report["agree"] is False
    assert report["first_divergence_detail"]["torch"] == "norm"
    assert "epsilon" in report["first_divergence"]


def test_safetensors_output_loads_in_mindspore_and_is_verified(mapped_project):
    import mindspore as ms
    import torch

    code, stdout, stderr = run_script("3_pth2ckpt.py", "--config", str(mapped_project), "--format", "safetensors")
    assert code == 0, stderr
    path = mapped_project.parent / "outputs" / "tiny" / "tiny.safetensors"
    loaded = ms.load_checkpoint(str(path), format="safetensors")
    source = torch.load(mapped_project.parent / "weights.pth", weights_only=True)
    assert (loaded["features.1.moving_variance"].asnumpy() == source["features.1.running_var"].numpy()).all()
    assert (loaded["classifier.weight"].asnumpy() == source["fc.weight"].numpy()).all()
    code, _, stderr = run_script("4_verify.py", "--config", str(mapped_project))
    report = json.loads((mapped_project.parent / "outputs" / "tiny" / "verify.json").read_text())
    assert code == 0 and report["agree"] is True and report["mindspore_checkpoint"] == str(path), stderr
