"""Atomic file writes: an artifact is either the old one or the complete new one, never half of each."""

import contextlib
import json
import os
import tempfile
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
