"""Stage 3 imports only what it uses, and proves its file with a CRC-32 taken while writing."""

import subprocess
import sys

import numpy as np
import pytest

from pt2ms.errors import Pt2MsError
from pt2ms.formats.checkpoint import check_file
from pt2ms.formats.ckpt import write_ckpt
from pt2ms.formats.files import file_crc
from pt2ms.formats.safetensors_file import write_safetensors
from tests.conftest import ROOT


def test_stage_3_does_not_import_the_matcher_or_scipy():
    code = ("import runpy, sys; runpy.run_path('3_pth2ckpt.py'); "
            "print(sorted(m for m in ('scipy', 'pt2ms.mapping.matching', 'pt2ms.stages.build_map', 'torch', 'mindspore') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("write", [write_ckpt, write_safetensors])
def test_the_crc_taken_while_writing_is_the_files_and_a_changed_byte_is_caught(tmp_path, write):
    arrays = [np.arange(12, dtype=np.float32).reshape(3, 4), np.ones(5 << 20, dtype=np.int8)]  # one over a chunk
    specs = [("a", "float32", (3, 4)), ("b", "int8", (5 << 20,))]
    path = tmp_path / f"out.{'ckpt' if write is write_ckpt else 'safetensors'}"
    crc = write(path, specs, iter(arrays))
    assert crc == file_crc(path) and check_file(path, crc, specs) == 2
    with pytest.raises(Pt2MsError, match="holds nothing"):
        check_file(path, crc, specs + [("c", "float32", (1,))])
    data = bytearray(path.read_bytes())
    data[-3] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(Pt2MsError, match="differs from what was written"):
        check_file(path, crc, specs)
