"""Reading PyTorch .pth/.pt/.bin files without running code from them, and without loading all the data.

A .pth (torch >= 1.6) is a zip: `data.pkl`, a pickle of the saved object whose tensors point to raw
storage files `data/<key>` beside it. We unpickle `data.pkl` with a restricted unpickler that builds only
containers, tensors and a few harmless types (the list below), and turns each tensor into a LazyTensor that
reads its bytes from the zip when asked. Any other type is refused by name, before it can run.
"""

import _compat_pickle
import argparse
import collections
import io
import math
import os
import pickle
import pickletools
import re
import struct
import warnings
import zipfile
from functools import partial

import numpy as np

from pt2ms.errors import Pt2MsError
from pt2ms.formats.tensors import NUMPY_DTYPES, LazyTensor, from_numpy, read_bytes

STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
    "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
}


# Dtypes torch can save that have no NumPy equivalent here: refused by name when a tensor uses one.
UNSUPPORTED_DTYPES = ("complex32", "complex64", "complex128", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
                      "float8_e5m2fnuz", "quint8", "qint8", "qint32")


MAX_PICKLE_DEPTH = 100            # a checkpoint nests a few levels; deeper is damage or an attack
MAX_PICKLE_NODES = 10_000_000     # objects a legacy pickle, operations a zip data.pkl may hold
MAX_PICKLE_BYTES = 1 << 30        # data.pkl, decompressed
MAX_PICKLE_RATIO = 64             # decompressed / compressed for a deflated data.pkl (torch stores it raw)


class _StorageType:
    """Stands in for torch.FloatStorage and friends: only its dtype matters."""

    def __init__(self, dtype):
        self.dtype = dtype


def _rebuild_tensor(storage, offset, shape, stride, *_ignored):
    return storage.view(int(offset), tuple(shape), tuple(stride))


def _rebuild_tensor_v3(storage, offset, shape, stride, requires_grad, hooks, dtype, *_ignored):
    """torch writes uint16/32/64 tensors this way: an untyped (byte) storage, the dtype named beside it."""
    return storage.with_dtype(dtype).view(int(offset), tuple(shape), tuple(stride))


def _rebuild_parameter(tensor, *_ignored):
    return tensor


def _numpy_reconstruct(*args):
    return np.core.multiarray._reconstruct(*args)


# Everything the unpickler may build. Each is data, not behaviour: none of them runs code of the file's choosing.
SAFE_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "UntypedStorage"): _StorageType("uint8"),
    ("argparse", "Namespace"): argparse.Namespace,
    ("_codecs", "encode"): lambda text, encoding="utf-8": text.encode(encoding),
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "scalar"): np.core.multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): np.core.multiarray.scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("torch", "Size"): tuple,
}
SAFE_GLOBALS.update({("torch", name): _StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()})
SAFE_GLOBALS.update({("torch", "ComplexFloatStorage"): _StorageType("complex64"),
                     ("torch", "ComplexDoubleStorage"): _StorageType("complex128")})
SAFE_GLOBALS.update({("torch", dtype): dtype for dtype in (*NUMPY_DTYPES, *UNSUPPORTED_DTYPES)})
SAFE_GLOBALS.update({("numpy.dtypes", f"{name.capitalize()}DType"): type(np.dtype(name))
                     for name in ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")
                     if hasattr(np, "dtypes")})


class UnsafePickle(Pt2MsError):
    """The pickle needs a type outside SAFE_GLOBALS."""

    def __init__(self, path, type_name):
        self.type_name = type_name
        super().__init__(
            f"{path}: refused to unpickle type {type_name}: loading it could run code from the file. "
            "If you trust the file, rerun with --trust-pickle (or trust_pickle = true under [torch]); "
            "or re-save only the weights: torch.save(model.state_dict(), path)")


class _Storage:
    """One raw storage file inside the zip; tensors are views into it."""

    def __init__(self, path, offset, size, dtype, key):
        self.path, self.offset, self.size, self.dtype, self.key = path, offset, size, dtype, key

    def with_dtype(self, dtype):
        return _Storage(self.path, self.offset, self.size, dtype, self.key)

    def view(self, offset, shape, stride):
        if self.dtype not in NUMPY_DTYPES:
            raise Pt2MsError(f"{self.path}: tensor in data/{self.key} has dtype {self.dtype}, which pt2ms cannot "
                             "convert; drop it from the state dict or cast it before saving")
        # torch never writes these layouts; accepting them would read bytes from outside the storage.
        if len(stride) != len(shape) or min((offset, *shape, *stride)) < 0:
            raise Pt2MsError(f"{self.path}: tensor in data/{self.key} has an impossible layout (offset {offset}, "
                             f"shape {list(shape)}, stride {list(stride)}): file is corrupt")
        itemsize = np.dtype(NUMPY_DTYPES[self.dtype]).itemsize
        numel = math.prod(shape)  # exact: a corrupt [2**32, 2**32] must not wrap around to 0
        span = 1 + sum((n - 1) * s for n, s in zip(shape, stride)) if numel else 0
        if (offset + span) * itemsize > self.size:
            raise Pt2MsError(f"{self.path}: tensor data runs past its storage data/{self.key}: file is corrupt")
        return LazyTensor(self.dtype, shape, partial(self._read, offset, shape, stride, span),
                          str(self.path), storage=self.key)

    def _read(self, offset, shape, stride, span):
        flat = read_bytes(self.path, self.offset + offset * np.dtype(NUMPY_DTYPES[self.dtype]).itemsize,
                          self.dtype, (span,))
        contiguous = all(s == e for s, e, n in zip(stride, _contiguous_strides(shape), shape) if n > 1)
        if contiguous:
            return flat[: int(np.prod(shape, dtype=np.int64))].reshape(shape)
        itemsize = flat.itemsize
        view = np.lib.stride_tricks.as_strided(flat, shape, [s * itemsize for s in stride])
        return np.require(view, requirements="C")


def _contiguous_strides(shape):
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return list(reversed(strides))


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, data, path, storages):
        super().__init__(io.BytesIO(data))
        self.path, self.storages = path, storages

    def find_class(self, module, name):
        # Protocol 2 pickles (torch.save's) spell Python 3 names the Python 2 way, e.g. __builtin__.set.
        found = SAFE_GLOBALS.get(_python3_name(module, name))
        if found is None:
            raise UnsafePickle(self.path, f"{module}.{name}")
        return found

    def persistent_load(self, saved_id):
        if not (isinstance(saved_id, tuple) and saved_id[0] == "storage"):
            raise Pt2MsError(f"{self.path}: unknown persistent id in pickle: file is corrupt or not a torch checkpoint")
        storage_type, key = saved_id[1], str(saved_id[2])
        if not isinstance(storage_type, _StorageType):
            raise UnsafePickle(self.path, repr(storage_type))
        if key not in self.storages:
            raise Pt2MsError(f"{self.path}: storage data/{key} missing from the archive: file is corrupt")
        offset, size = self.storages[key]
        return _Storage(self.path, offset, size, storage_type.dtype, key)


def _python3_name(module, name):
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _member_offsets(path, archive):
    """Byte offset and size of each stored (uncompressed) storage file, keyed by storage key."""
    storages, file_size = {}, os.path.getsize(path)
    with open(path, "rb") as handle:
        for info in archive.infolist():
            parts = info.filename.split("/")
            if len(parts) < 3 or parts[-2] != "data":
                continue
            if info.compress_type != zipfile.ZIP_STORED:
                raise Pt2MsError(f"{path}: storage {info.filename} is compressed; re-save it with torch.save")
            handle.seek(info.header_offset)
            header = handle.read(30)
            name_length = int.from_bytes(header[26:28], "little")
            extra_length = int.from_bytes(header[28:30], "little")
            start = info.header_offset + 30 + name_length + extra_length
            if start + info.file_size > file_size:  # checked here, before a tensor's array is allocated
                raise Pt2MsError(f"{path}: storage {info.filename} claims {info.file_size:,} bytes past the end of "
                                 "the file: file is truncated or corrupt")
            storages[parts[-1]] = (start, info.file_size)
    return storages


def _bad_zip(path, error):
    return Pt2MsError(f"{path}: cannot read the zip archive ({error}): file is truncated or corrupt")


def _read_pickle(path, archive, info):
    """data.pkl's bytes; its declared size is checked first (zipfile reads no more than it declares)."""
    cap = min(MAX_PICKLE_BYTES, info.compress_size * MAX_PICKLE_RATIO + (1 << 20))
    if info.file_size > cap:
        raise Pt2MsError(f"{path}: data.pkl would unpack to {info.file_size:,} bytes from {info.compress_size:,} "
                         f"(at most {cap:,}): not a torch checkpoint (a decompression bomb?)")
    return archive.read(info)


def _check_pickle_size(path, data):
    """Refuse a pickle that would build more objects than a checkpoint ever does, before building any.

    One pass over its opcodes: the unpickler itself has no budget, and a small pickle can make millions of
    objects (memo references, repeated appends). A state dict takes a few operations per tensor.
    """
    try:
        for count, _ in enumerate(pickletools.genops(data)):
            if count > MAX_PICKLE_NODES:
                raise Pt2MsError(f"{path}: data.pkl holds more than {MAX_PICKLE_NODES:,} pickle operations: "
                                 "not a torch checkpoint")
    except (ValueError, IndexError) as error:  # genops on damaged bytes
        raise Pt2MsError(f"{path}: corrupt pickle in data.pkl ({error})") from None


def load_zip_pickle(path):
    """Unpickle a zip-format torch file safely; tensors come back as LazyTensors."""
    # zipfile raises many kinds of error on a damaged directory; all of them mean the same to the user.
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name.endswith("data.pkl")]
            if not pickles:
                raise Pt2MsError(f"{path}: zip archive without data.pkl: not a torch checkpoint")
            data = _read_pickle(path, archive, archive.getinfo(pickles[0]))
            storages = _member_offsets(path, archive)
    except (zipfile.BadZipFile, EOFError, OSError, UnicodeDecodeError, NotImplementedError, ValueError,
            struct.error) as error:
        raise _bad_zip(path, error) from None
    _check_pickle_size(path, data)
    try:
        return _SafeUnpickler(data, path, storages).load()
    except Pt2MsError:
        raise
    except Exception as error:
        raise Pt2MsError(f"{path}: corrupt pickle in data.pkl ({type(error).__name__}: {error})") from None


# Harmless extras that training scripts save beside the weights; torch's weights_only loader refuses them.
def _legacy_safe_globals():
    numpy_types = [np.dtype, np.ndarray, np.core.multiarray.scalar, np.core.multiarray._reconstruct]
    numpy_types += [type(np.dtype(name)) for name in NUMPY_DTYPES.values()]
    return [argparse.Namespace, collections.OrderedDict, set, frozenset, slice, *numpy_types]


def load_with_torch(path, trust_pickle):
    """Let torch read the file: legacy (non-zip) formats, or full trust when the user asked for it."""
    import torch

    try:
        # A damaged file can make torch warn (e.g. about a pickle protocol) on stderr, beside our one line.
        with torch.serialization.safe_globals(_legacy_safe_globals()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as error:
        refused = _refused_global(path, str(error))
        if refused and not trust_pickle:
            raise UnsafePickle(path, refused) from None
        raise _corrupt(path, error) from None
    except Exception as error:
        raise _corrupt(path, error) from None
    return _torch_to_lazy(loaded, str(path))


def _corrupt(path, error):
    # torch's own messages run to paragraphs of advice about weights_only; one short line of cause is enough.
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines() if line.strip()]
    cause = "" if isinstance(error, pickle.UnpicklingError) or not lines else f": {lines[0][:100]}"
    return Pt2MsError(f"{path}: not a torch checkpoint, or it is truncated or corrupt ({type(error).__name__}{cause})")


def _refused_global(path, message):
    """The full name of the type torch refused, as the file spells it, or None if torch named none."""
    match = re.search(r"GLOBAL ([\w.]+)", message)
    if not match:
        return None
    reported = match.group(1)
    for full_name in _pickle_globals(path):
        if full_name == reported or full_name.endswith("." + reported):
            return full_name
    return reported


def _pickle_globals(path, pickles=5):
    """Names the GLOBAL opcodes of a legacy file's leading pickles import, without unpickling anything."""
    names = []
    with open(path, "rb") as handle:
        try:
            for _ in range(pickles):
                names += [arg.replace(" ", ".") for op, arg, _ in pickletools.genops(handle) if op.name == "GLOBAL"]
        except Exception:  # the rest of the file is raw tensor data, not pickles
            pass
    return names


def _torch_to_lazy(loaded, source):
    """Replace torch tensors (and a whole pickled model) by LazyTensors, recursively.

    Each object is converted once (a 1 KB pickle of lists that share references has 2**60 paths), and the
    walk has a depth and a node budget, so that no small file can make it hang or overflow the stack.
    """
    import torch

    done, budget = {}, [MAX_PICKLE_NODES]

    def convert(value, depth):
        if id(value) in done:
            return done[id(value)]
        budget[0] -= 1
        if depth > MAX_PICKLE_DEPTH or budget[0] < 0:
            what = f"objects nested over {MAX_PICKLE_DEPTH} levels deep" if depth > MAX_PICKLE_DEPTH else \
                f"over {MAX_PICKLE_NODES:,} objects"
            raise Pt2MsError(f"{source}: the pickle holds {what}: not a checkpoint of weights")
        original = value
        if isinstance(value, torch.nn.Module):
            value = value.state_dict()
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            dtype = str(tensor.dtype).removeprefix("torch.")
            if dtype == "bfloat16":
                result = from_numpy(tensor.view(torch.int16).numpy().view(np.uint16), "bfloat16", source)
            else:
                result = from_numpy(tensor.numpy(), dtype, source)
        elif isinstance(value, dict):
            items = [(key, convert(item, depth + 1)) for key, item in value.items()]
            result = type(value)(items) if isinstance(value, collections.OrderedDict) else dict(items)
        elif isinstance(value, (list, tuple)):
            items = [convert(item, depth + 1) for item in value]
            result = items if isinstance(value, list) else tuple(items)
        else:
            result = value
        done[id(original)] = result
        return result

    return convert(loaded, 0)


def load_pth(path, trust_pickle=False):
    """Read a torch checkpoint file into nested Python objects with LazyTensors for tensors."""
    try:
        is_zip = zipfile.is_zipfile(path)
    except zipfile.BadZipFile as error:
        raise _bad_zip(path, error) from None
    except OSError as error:
        raise Pt2MsError(f"{path}: cannot read it ({error.strerror or error})") from None
    if trust_pickle or not is_zip:
        return load_with_torch(path, trust_pickle)
    return load_zip_pickle(path)
