"""Stage 3's sharded output (pt2ms.formats.shards): MindSpore loads it, --reverse and stage 4 read it."""

import json

import numpy as np
import pytest

from pt2ms.errors import Pt2MsError
from pt2ms.formats.shards import INDEX_NAME, parse_size, plan_shards
from tests.conftest import run_script


@pytest.mark.parametrize("text, size", [("4GB", 4 * 10**9), ("500MB", 500 * 10**6), ("2GiB", 2 * 2**30),
                                        ("1000", 1000), ("1.5kb", 1500)])
def test_sizes_read_as_hugging_face_reads_max_shard_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "4 parsecs", "-1GB", "0", "GB"])
def test_a_size_that_is_no_size_is_refused_in_one_line(text):
    with pytest.raises(Pt2MsError, match="--max-shard-size"):
        parse_size(text)


def test_shards_keep_the_order_and_a_tensor_larger_than_the_limit_goes_alone():
    specs = [("a", "float32", (10,)), ("b", "float32", (10,)), ("big", "float32", (100,)), ("c", "float16", (4,))]
    assert [[name for name, _, _ in group] for group in plan_shards(specs, 80)] == [["a", "b"], ["big"], ["c"]]


def _sharded(project, size="150"):
    code, stdout, stderr = run_script("3_pth2ckpt.py", "--config", str(project), "--max-shard-size", size)
    assert code == 0, stderr
    return project.parent / "outputs" / "tiny" / "tiny.shards", stdout


def test_sharded_output_loads_strictly_into_mindspore_and_through_its_distributed_loader(mapped_project):
    import mindspore as ms
    import torch

    from tests.tiny_models import ms_net

    folder, stdout = _sharded(mapped_project)
    index = json.loads((folder / INDEX_NAME).read_text())
    shards = sorted(path.name for path in folder.glob("*.safetensors"))
    print(stdout, shards)
    assert len(shards) >= 3 and sorted(set(index["weight_map"].values())) == shards
    assert f"{len(shards)} safetensors shards" in stdout and "read back and checked 15" in stdout
    assert index["metadata"]["total_size"] == sum((folder / name).stat().st_size for name in shards)
    net, params = ms_net(), {}
    for name in shards:
        params.update(ms.load_checkpoint(str(folder / name), format="safetensors"))
    assert ms.load_param_into_net(net, params, strict_load=True) == ([], [])
    source = torch.load(mapped_project.parent / "weights.pth", weights_only=True)
    assert np.array_equal(net.parameters_dict()["classifier.weight"].asnumpy(), source["fc.weight"].numpy())
    # MindSpore's own loader of a unified safetensors folder (the one that reshards for parallel training).
    fresh = ms_net()
    assert ms.load_distributed_checkpoint(fresh, format="safetensors", unified_safetensors_dir=str(folder)) == ([], [])
    assert np.array_equal(fresh.parameters_dict()["features.1.moving_variance"].asnumpy(),
                          source["features.1.running_var"].numpy())


def test_shards_round_trip_byte_for_byte_with_reverse_and_verify_agree(mapped_project):
    import torch
    from safetensors.torch import load_file

    folder, _ = _sharded(mapped_project)
    code, stdout, stderr = run_script("3_pth2ckpt.py", "--config", str(mapped_project), "--reverse", "--format",
                                      "safetensors")
    assert code == 0 and f"from {folder / INDEX_NAME}" in stdout, stderr
    restored = load_file(mapped_project.parent / "outputs" / "tiny" / "tiny.reversed.safetensors")
    source = torch.load(mapped_project.parent / "weights.pth", weights_only=True)
    assert len(restored) == 15
    for name, tensor in restored.items():
        assert tensor.dtype == source[name].dtype and tensor.numpy().tobytes() == source[name].numpy().tobytes(), name
    code, stdout, stderr = run_script("4_verify.py", "--config", str(mapped_project))
    report = json.loads((mapped_project.parent / "outputs" / "tiny" / "verify.json").read_text())
    assert code == 0 and report["agree"] is True, stdout + stderr
    assert report["mindspore_checkpoint"] == str(folder / INDEX_NAME)


def test_a_failed_sharded_write_leaves_the_previous_shards_and_no_staging_folder(mapped_project):
    import torch

    folder, _ = _sharded(mapped_project)
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    weights = mapped_project.parent / "weights.pth"
    state = torch.load(weights, weights_only=True)
    state["fc.bias"][0] = float("nan")  # the last tensor: earlier shards are already written when it fails
    torch.save(state, weights)
    code, _, stderr = run_script("3_pth2ckpt.py", "--config", str(mapped_project), "--max-shard-size", "150")
    assert code == 2 and stderr.count("\n") == 1 and "NaN" in stderr
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before
    assert [path.name for path in folder.parent.iterdir() if path.name.startswith(".")] == []


def test_max_shard_size_with_format_ckpt_is_refused(mapped_project):
    code, _, stderr = run_script("3_pth2ckpt.py", "--config", str(mapped_project), "--max-shard-size", "4GB",
                                 "--format", "ckpt")
    assert code == 2 and "--max-shard-size writes safetensors shards" in stderr


def test_a_missing_shard_is_one_line_naming_the_index(mapped_project):
    folder, _ = _sharded(mapped_project)
    next(folder.glob("*.safetensors")).unlink()
    code, _, stderr = run_script("4_verify.py", "--config", str(mapped_project))
    assert code == 2 and stderr.count("\n") == 1 and INDEX_NAME in stderr and "is missing" in stderr
