"""Stage 4 streamed block by block gives what stage 4 in memory gives: the same verdict, cause and per-layer
errors (to float rounding), on pairs that agree and pairs that differ (tests/diagnosis_models.py), and says
that it streamed and how much memory it took."""

import math

import pytest

from pt2ms.config import load_config
from pt2ms.errors import Pt2MsError
from pt2ms.running import memory
from pt2ms.verify import streamed
from tests.verify.test_diagnosis import _edit_map, project
from tests.verify.test_verify import run_verify


def _shift_blocks(entries):
    """MindSpore block i reads PyTorch block i - 1: a map wrong by one block, each layer right alone."""
    for name in list(entries):
        for index in range(3):
            if name.startswith(f"blocks.{index}."):
                entries[name] = entries[name].replace(f"blocks.{index}.", f"blocks.{(index - 1) % 3}.")


PAIRS = {
    # name: (torch factory, MindSpore factory, its kwargs, [verify] inputs, map edit)
    "gelu approximation": ("torch_mlp", "ms_mlp", "tanh_gelu=true", "inputs = [[2, 5, 8]]", None),
    "blocks off by one": ("torch_stack", "ms_stack", "", "inputs = [[2, 8]]", _shift_blocks),
    "stem that agrees": ("torch_stem", "ms_stem", "", "inputs = [[2, 3, 8, 8]]", None),
    "same padding": ("torch_stem", "ms_stem", "same_padding=true", "inputs = [[2, 3, 8, 8]]", None),
}


def _close(a, b):
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-9)


def _errors(row):
    return [row.get("relative"), row.get("inputs", {}).get("relative"), row.get("isolated", {}).get("relative")]


@pytest.mark.parametrize("case", list(PAIRS))
def test_streamed_and_in_memory_stage_4_give_the_same_verdict_cause_and_layer_errors(tmp_path, case):
    torch_model, ms_model, kwargs, inputs, edit = PAIRS[case]
    config = project(tmp_path, torch_model, ms_model, kwargs, verify=inputs)
    if edit:
        _edit_map(config, edit)
    in_memory, stream = run_verify(config), run_verify(config, "--stream")
    assert stream.report["streamed"] is True and in_memory.report["streamed"] is False
    assert (stream.code, stream.report["verdict"], stream.report["cause"]) == \
        (in_memory.code, in_memory.report["verdict"], in_memory.report["cause"])
    assert stream.report["first_divergence"] == in_memory.report["first_divergence"]
    memory_rows, stream_rows = in_memory.report["layers"], stream.report["layers"]
    assert [(r["torch"], r["mindspore"], r["verdict"]) for r in stream_rows] == \
        [(r["torch"], r["mindspore"], r["verdict"]) for r in memory_rows]
    for memory_row, stream_row in zip(memory_rows, stream_rows):
        assert all(_close(a, b) for a, b in zip(_errors(stream_row), _errors(memory_row))), (memory_row, stream_row)
    for memory_out, stream_out in zip(in_memory.report["outputs"], stream.report["outputs"]):
        assert _close(stream_out.get("relative"), memory_out.get("relative"))
    assert "Streamed block by block (asked for (--stream))" in stream.markdown
    assert "peak memory" in stream.stdout and stream.report["peak_rss_bytes"] > 0


def test_the_wrong_map_is_still_found_when_streamed(tmp_path):
    """Not only the same as in memory: the cause itself (the map, read one block at a time)."""
    torch_model, ms_model, kwargs, inputs, edit = PAIRS["blocks off by one"]
    config = project(tmp_path, torch_model, ms_model, kwargs, verify=inputs)
    _edit_map(config, edit)
    run = run_verify(config, "--stream")
    assert run.code == 1 and run.report["first_divergence_detail"]["kind"] == "map"


def test_stage_4_streams_by_itself_when_both_models_would_not_fit(tmp_path):
    config = load_config(project(tmp_path, "torch_stack", "ms_stack", verify="inputs = [[2, 8]]"))
    needed = streamed.both_models_bytes(config)
    # TorchStack and MsStack: 3 x Linear(8, 8) and Linear(8, 3) each, in float32 on both sides.
    assert needed == 2 * 4 * (3 * (64 + 8) + 24 + 3)
    stream, reason = streamed.choose(config, asked=False, available=(needed - 1, "available on this machine"))
    assert stream is True and reason.startswith("both models in float32 take 0.00 GB, more than the 0.00 GB "
                                                "available on this machine")
    assert streamed.choose(config, asked=False, available=(needed, "available")) == (False, None)
    assert streamed.choose(config, asked=True, available=(None, ""))[0] is True


def test_a_block_that_cannot_be_held_is_refused_in_one_line_before_anything_is_built(tmp_path):
    config = load_config(project(tmp_path, "torch_stack", "ms_stack", verify="inputs = [[2, 8]]"))
    with pytest.raises(Pt2MsError, match="even one block does not fit: the largest"):
        streamed.refuse_unholdable(config, available=(1000, "left under this process's memory limit"))
    streamed.refuse_unholdable(config, available=(8 * memory.GB, "available"))


def test_training_is_refused_when_streaming(tmp_path):
    config = project(tmp_path, "torch_stack", "ms_stack", verify="inputs = [[2, 8]]")
    from tests.conftest import run_script

    code, _, stderr = run_script("4_verify.py", "--config", str(config), "--stream", "--train")
    assert code == 2 and "--train needs both models in memory" in stderr


def test_streamed_models_hold_only_the_block_a_layer_run_alone_needs(tmp_path):
    from pt2ms.mapping.mapfile import read_map
    from pt2ms.stages.verify import converted_checkpoint

    config = load_config(project(tmp_path, "torch_stack", "ms_stack", verify="inputs = [[2, 8]]"))
    run = streamed.open_streamed(config, converted_checkpoint(config), read_map(config.map_path), "a test")
    try:
        assert all(parameter.is_meta for parameter in run.model.parameters())  # built empty, nothing read yet

        def held():  # the blocks whose Parameters hold data now (blocks.N.0.weight: block blocks.N)
            return sorted({parameter.name.rsplit(".", 2)[0] for _, cell in run.net.cells_and_names()
                           for parameter in cell._params.values()
                           if not parameter.has_init and parameter.name.startswith("blocks.")})
        assert held() == []
        with run.weights_for("blocks.1.0"):  # a Dense inside block 1: block 1 is read for it
            assert held() == ["blocks.1"]
        with run.weights_for("blocks.1.1"):  # the next layer of the same block: still that block only
            assert held() == ["blocks.1"]
        with run.weights_for("blocks.2.0"):
            assert held() == ["blocks.2"]
        with run.weights_for("blocks.2"):  # a block itself reads its weights as it runs (hooks): none held
            assert held() == []
    finally:
        run.close()
    assert held() == [] and run.figures()["largest_block_bytes"] == 4 * (64 + 8)
