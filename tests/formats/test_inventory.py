"""Stage 1's inventories: the txt stays proportional to its input, the CSV keeps every name whole."""

import numpy as np
from safetensors.numpy import save_file

from pt2ms.formats.inventory import TXT_NAME_LIMIT, TensorInfo, cut_name, to_txt
from tests.conftest import run_script, write_config


def test_a_long_name_is_cut_in_the_txt_with_a_marker():
    name = "layer." + "x" * 5000
    assert cut_name(name) == name[:TXT_NAME_LIMIT] + f"…(+{len(name) - TXT_NAME_LIMIT:,} chars)"
    assert cut_name("short.weight") == "short.weight"
    rows = [TensorInfo(name=name, shape=(2,), dtype="float32")] + \
        [TensorInfo(name=f"t{i}.weight", shape=(2,), dtype="float32") for i in range(100)]
    text = to_txt(rows, "PyTorch x")
    assert len(text) < 100 * 300 and "…(+4,846 chars)" in text


def test_stage_1_txt_stays_small_with_one_huge_name_among_many_tensors(tmp_path):
    """Seen: one 1 MB name among 4,000 tensors padded every txt row to 1 MB (4 GB, out of memory); here
    100 KB among 1,000 (100 MB before the cut)."""
    huge = "h" * 100_000
    tensors = {f"extra.{i}": np.zeros(1, np.float32) for i in range(999)} | {huge: np.ones(1, np.float32)}
    save_file(tensors, str(tmp_path / "weights.safetensors"))
    config = write_config(tmp_path, checkpoint="weights.safetensors")
    config.write_text(config.read_text().replace('model = "tests.tiny_models:torch_net"\n', ""))
    code, _, stderr = run_script("1_show.py", "--config", str(config))
    assert code == 0, stderr
    out = tmp_path / "outputs" / "tiny"
    txt = (out / "torch_params.txt").stat().st_size
    assert txt < 400_000, f"txt {txt:,} bytes"
    assert huge in (out / "torch_params.csv").read_text()  # the CSV keeps it whole
