"""Atomic file writes: an artifact is either the old one or the complete new one, never half of each."""

import contextlib
import json
import os
import tempfile
import zlib
from pathlib import Path


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """Open a temporary file beside `path`; rename it onto `path` only if the block finishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it 0600; artifacts get the usual permissions
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # A previous artifact may be read-only (MindSpore saves checkpoints 0400); rename replaces it anyway.
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


CHUNK_BYTES = 4 << 20  # small enough to stay in cache between the checksum and the write


class CrcWriter:
    """A binary file handle that takes the CRC-32 of every byte written through it, chunk by chunk.

    Each chunk is checksummed just before it is written, while it is still in cache: one pass over memory.
    """

    def __init__(self, handle):
        self.handle, self.crc = handle, 0

    def write(self, data):
        data = memoryview(data).cast("B")
        for start in range(0, len(data), CHUNK_BYTES):
            piece = data[start:start + CHUNK_BYTES]
            self.crc = zlib.crc32(piece, self.crc)
            self.handle.write(piece)
        return len(data)


def file_crc(path):
    """CRC-32 of a whole file, read in chunks into one reused buffer."""
    crc, buffer = 0, bytearray(CHUNK_BYTES)
    with open(path, "rb", buffering=0) as handle:
        while got := handle.readinto(buffer):
            crc = zlib.crc32(memoryview(buffer)[:got], crc)
    return crc


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_parts(path):
    """Delete temporary files a killed earlier write of `path` left behind; returns how many."""
    path = Path(path)
    stale = list(path.parent.glob(f".{path.name}.*.part"))
    for part in stale:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
    return len(stale)


def write_text(path, text):
    """Write a text file atomically."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_json(path, data):
    """Write a JSON file atomically, 2-space indented."""
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
