"""Fuzzing: real checkpoints, configs and maps, mutated by hypothesis, fed to the stage that reads them.

Each mutation (a truncation, bit flips, a length field set to an extreme, bytes inserted, a value of the
wrong type) must end in exit 2 with one line `error: ...` and no traceback, or in exit 0 when the mutation
happened to be harmless. Either way every earlier artifact stays byte for byte as it was (on exit 0 the
stage may rewrite its own outputs, nothing else), and the process's peak memory stays under a cap. The
budget is fixed (derandomized, 40 examples per file kind; PT2MS_FUZZ_EXAMPLES=N for more) so that the whole file runs in CI.
"""

import json
import os
import resource
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import run_script, write_config
from tests.stages.test_bad_inputs import ALL_STAGES, snapshot
from tests.tiny_models import ms_net, randomized_state_dict, torch_net

EXAMPLES = int(os.environ.get("PT2MS_FUZZ_EXAMPLES", 40))  # raise it for a deeper run
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
MEMORY_CAP_KB = 1 << 20  # peak RSS may grow by at most 1 GiB over the whole file (a bomb would take several)
STAGE_OUTPUTS = {"1_show.py": {"outputs/tiny/torch_params.csv", "outputs/tiny/torch_params.txt",
                               "outputs/tiny/ms_params.csv", "outputs/tiny/ms_params.txt"},
                 "3_pth2ckpt.py": {"outputs/tiny/tiny.ckpt"}}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny project after stages 1 to 4, with every kind of input file beside it; built once."""
    import mindspore as ms
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("fuzz")
    state = randomized_state_dict(torch_net())
    torch.save(state, root / "weights.pth")
    torch.save(state, root / "legacy.pth", _use_new_zipfile_serialization=False)
    save_file(state, root / "weights.safetensors")
    ms.save_checkpoint(ms_net(), str(root / "template.ckpt"))
    (root / "template.ckpt").chmod(0o600)
    config = write_config(root)
    for script in ALL_STAGES:
        assert run_script(script, "--config", str(config))[0] == 0
    return root


@pytest.fixture(scope="module")
def memory_baseline():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# --- mutations --------------------------------------------------------------------------------------------

EXTREMES = [b"\xff" * 8, b"\x00" * 8, (2**63 - 1).to_bytes(8, "little"), (2**31).to_bytes(8, "little"),
            b"\xff\xff\xff\xff\xff\xff\xff\x7f", b"\x80" * 8]


@st.composite
def mutated(draw, data):
    """`data` after one to three byte-level mutations."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "flip", "extreme", "insert", "zero_run"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip":
            if data:
                data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "extreme":
            data[at:at + 8] = draw(st.sampled_from(EXTREMES))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[at:at + draw(st.integers(1, 64))] = b"\0" * 8
    return bytes(data)


SWAPS = [5, -1, 0, 2**70, 1.5, "x", "", True, [], [0], {}, {"a": None}, None, "9" * 5000]


@st.composite
def json_type_swapped(draw, data):
    """A JSON document with one value somewhere inside replaced by a value of another type."""
    document = json.loads(data)
    parent, key = None, None
    node = document
    for _ in range(draw(st.integers(1, 4))):
        keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        if not keys:
            break
        parent, key = node, draw(st.sampled_from(keys))
        node = node[key]
    if parent is None:
        return json.dumps(draw(st.sampled_from(SWAPS))).encode()
    parent[key] = draw(st.sampled_from(SWAPS))
    return json.dumps(document, indent=2).encode()


TOML_VALUES = ['5', '-1', '"x"', 'true', '[]', '[[0]]', '[["a"]]', '{ a = 1 }', 'nan', '1e400', '"\\u0000"',
               '[[2147483647, 2147483647]]', '"../../.."', '"/"']


@st.composite
def toml_type_swapped(draw, data):
    """A TOML file with one key's value replaced by a value of another type."""
    lines = data.decode().splitlines()
    keyed = [index for index, line in enumerate(lines) if " = " in line]
    index = draw(st.sampled_from(keyed))
    key = lines[index].split(" = ")[0]
    lines[index] = f"{key} = {draw(st.sampled_from(TOML_VALUES))}"
    return ("\n".join(lines) + "\n").encode()


# --- the check --------------------------------------------------------------------------------------------

def check_stage(base, memory_baseline, script, target, content, config_edit=None):
    """Copy the project, write the mutated `target`, run `script`; check exit code, stderr and the disk."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "project"
        shutil.copytree(base, root)
        config = root / "tiny.toml"
        if config_edit:
            config.write_text(config_edit(config.read_text()))
        path = root / target
        path.write_bytes(content)
        before = snapshot(root)
        code, _, stderr = run_script(script, "--config", str(config))
        after = snapshot(root)
    assert "Traceback" not in stderr, stderr
    if code == 2:
        assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
        assert after == before, "a refused run changed the disk"
    else:
        assert code == 0, f"exit {code}: {stderr}"
        changed = {name for name in before if after.get(name) != before[name]}
        assert changed <= STAGE_OUTPUTS.get(script, set()), changed
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - memory_baseline
    assert grown < MEMORY_CAP_KB, f"peak memory grew by {grown // 1024} MB"


def _use(old, new):
    return lambda text: text.replace(old, new, 1)


def _read(base, name):
    return (base / name).read_bytes()


# --- the targets ------------------------------------------------------------------------------------------

@FUZZ
@given(data=st.data())
def test_fuzz_zip_pth(base, memory_baseline, data):
    content = data.draw(mutated(_read(base, "weights.pth")))
    check_stage(base, memory_baseline, "1_show.py", "weights.pth", content)


@FUZZ
@given(data=st.data())
def test_fuzz_legacy_pth(base, memory_baseline, data):
    content = data.draw(mutated(_read(base, "legacy.pth")))
    check_stage(base, memory_baseline, "1_show.py", "legacy.pth", content,
                _use('checkpoint = "weights.pth"', 'checkpoint = "legacy.pth"'))


@FUZZ
@given(data=st.data())
def test_fuzz_safetensors(base, memory_baseline, data):
    original = _read(base, "weights.safetensors")
    header_end = 8 + int.from_bytes(original[:8], "little")
    if data.draw(st.booleans()):  # the header's JSON: values of the wrong type
        header = data.draw(json_type_swapped(original[8:header_end]))
        content = len(header).to_bytes(8, "little") + header + original[header_end:]
    else:
        content = data.draw(mutated(original))
    check_stage(base, memory_baseline, "1_show.py", "weights.safetensors", content,
                _use('checkpoint = "weights.pth"', 'checkpoint = "weights.safetensors"'))


@FUZZ
@given(data=st.data())
def test_fuzz_template_ckpt(base, memory_baseline, data):
    content = data.draw(mutated(_read(base, "template.ckpt")))
    check_stage(base, memory_baseline, "3_pth2ckpt.py", "template.ckpt", content,
                _use("[mindspore]\n", '[mindspore]\ntemplate = "template.ckpt"\n'))


@FUZZ
@given(data=st.data())
def test_fuzz_config(base, memory_baseline, data):
    original = _read(base, "tiny.toml")
    content = data.draw(st.one_of(toml_type_swapped(original), mutated(original)))
    check_stage(base, memory_baseline, "1_show.py", "tiny.toml", content)


@FUZZ
@given(data=st.data())
def test_fuzz_map(base, memory_baseline, data):
    original = _read(base, "maps/tiny.json")
    content = data.draw(st.one_of(json_type_swapped(original), mutated(original)))
    check_stage(base, memory_baseline, "3_pth2ckpt.py", "maps/tiny.json", content)


def test_a_damaged_legacy_pth_warns_nothing_beside_the_one_line(base):
    """torch warns about an odd pickle protocol through `warnings`, which a terminal would show on stderr."""
    import warnings

    from pt2ms.formats.checkpoint import open_torch_checkpoint

    data = bytearray(_read(base, "legacy.pth"))
    data[1] = 77  # the first pickle's protocol byte
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "legacy.pth"
        path.write_bytes(bytes(data))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert list(open_torch_checkpoint(path)) == list(randomized_state_dict(torch_net()))  # torch reads it
    assert [str(warning.message) for warning in caught] == []
