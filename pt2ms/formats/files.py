"""Atomic file writes: an artifact is either the old one or the complete new one, never half of each.

A write goes to `.<name>.<pid>.<random>.part` beside the artifact and is renamed over it when complete, so
that a leftover `.part` names the process that wrote it and is removed only once that process is gone. A
run holds a lock on its output folder, so that two runs on one config cannot write there at once.
"""

import contextlib
import errno
import fcntl
import json
import os
import re
import tempfile
import zlib
from pathlib import Path

from pt2ms.errors import Pt2MsError


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """Open a temporary file beside `path`; rename it onto `path` only if the block finishes.

    An OSError while writing (full disk, EFBIG under `ulimit -f`, a read-only folder, `path` a folder)
    becomes a Pt2MsError naming `path`; the temporary file is removed either way.
    """
    path = Path(path)
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".part")
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it 0600; artifacts get the usual permissions
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # A previous artifact may be read-only (MindSpore saves checkpoints 0400); rename replaces it anyway.
        os.replace(tmp_name, path)
    except BaseException as error:
        if tmp_name:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
        # An error that names another file (a source read while streaming) is that file's, not ours.
        if isinstance(error, OSError) and error.filename in (None, tmp_name, str(path), str(path.parent)):
            raise Pt2MsError(f"{path}: cannot write it ({error.strerror or error})") from None
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


def owner_alive(pid):
    """Whether the process that wrote a temporary file (its pid in the name) still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_parts(path):
    """Delete temporary files that killed earlier writes of `path` left behind; returns how many.

    A `.part` whose writer is still running (its pid is in the name) is left alone.
    """
    path = Path(path)
    stale = 0
    for part in path.parent.glob(f".{path.name}.*.part"):
        owner = re.match(rf"\.{re.escape(path.name)}\.(\d+)\.", part.name)
        if owner and (int(owner.group(1)) == os.getpid() or owner_alive(int(owner.group(1)))):
            continue
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
            stale += 1
    return stale


@contextlib.contextmanager
def locked_folder(folder):
    """Hold an exclusive lock on `folder` (created if missing, removed again if it stayed empty) in the block.

    The folder itself is locked (flock on its descriptor), so no lock file is left beside the artifacts. A
    second run on the same folder is refused at once rather than left waiting.
    """
    folder = Path(folder)
    created = [path for path in (folder, *folder.parents) if not path.exists()]  # innermost first
    fd = _lock(folder)
    try:
        yield folder
    finally:
        os.close(fd)
        try:
            for path in created:
                path.rmdir()
        except OSError:  # not empty: the run wrote something there
            pass


def _lock(folder):
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        raise Pt2MsError(f"{folder}: cannot use it as the output folder ({error.strerror or error})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
            raise Pt2MsError(f"{folder}: another pt2ms run on this config is writing here; wait for it to finish "
                             "(or stop it) and run again") from None
        raise Pt2MsError(f"{folder}: cannot lock it ({error.strerror or error})") from None
    return fd


def write_text(path, text):
    """Write a text file atomically."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_json(path, data):
    """Write a JSON file atomically, 2-space indented."""
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
