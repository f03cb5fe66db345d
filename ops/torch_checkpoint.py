"""Reads PyTorch checkpoint files (torch.save) without torch, and without running anything a file asks for.

A checkpoint is a pickle, and a pickle can name any function to call. This reader unpickles with an allow
list (ALLOWED): the few functions and classes that rebuild tensors, storages and containers, each mapped to
one of our own that only records what it is given. Any other class a file names (a whole pickled model's
`model.RNNModel`, `torch.nn.modules.conv.Conv2d`, a namedtuple genotype) becomes an inert stand-in
(PickledObject) that records its arguments and state so that `_parameters`, `_buffers` and `_modules` can be
walked; it is never imported, and calling one (what a pickle does to run `os.system`) stops the read with
one line before anything runs.

Both formats torch writes are read:
- zip (torch >= 1.6): `<archive>/data.pkl`, whose persistent ids ('storage', type, key, location, numel)
  name the raw storages `<archive>/data/<key>`;
- legacy (torch < 1.6, and `_use_new_zipfile_serialization=False`; the DARTS releases): five pickles and
  the raw data in one stream: the magic number, the protocol version, the system information (byte order),
  the object (persistent ids as above, plus ('module', class, file, source) for a pickled model's classes),
  the sorted storage keys; then per key an int64 element count and the storage's bytes.

Tensors come back as Tensor records, turned into numpy arrays by .numpy(); tensors that share a storage
(a decoder tied to its embedding) share its bytes. state_dict(obj) finds the {name: Tensor} in what was
read: a state dict, a training checkpoint's 'state_dict', or a whole pickled nn.Module.
"""
import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass

import numpy as np

from ops.unreadable_file import UnreadableFileError, describe_read_error, one_line

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL = 1001
# torch's storage classes (torch.FloatStorage, and torch.cuda.FloatStorage in files saved from a GPU).
STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                  "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                  "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


class TorchCheckpointError(UnreadableFileError):
    """A file that is not a PyTorch checkpoint this reader can use, or asks for more than tensors; one line."""


class RefusedCall(Exception):
    """A pickle asked to call something off the allow list; raised before it runs (it is never imported)."""


class Storage:
    """One torch storage: its element type and key; its bytes once read (legacy files store them after the pickle)."""

    def __init__(self, dtype, key, numel):
        self.dtype, self.key, self.numel = np.dtype(dtype), key, numel
        self.array = None


@dataclass
class Tensor:
    """A tensor as torch pickles it: a strided view of a storage."""
    storage: Storage
    offset: int
    shape: tuple
    stride: tuple

    def numpy(self):
        """The tensor's values, a new C-ordered array (a view that reaches outside its storage is an error)."""
        data = self.storage.array
        if data is None:
            raise TorchCheckpointError(f"storage {self.storage.key} was never read")
        shape, stride = tuple(int(n) for n in self.shape), tuple(int(s) for s in self.stride)
        if any(n == 0 for n in shape):
            return np.zeros(shape, data.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(shape, stride))
        if self.offset < 0 or min(stride, default=0) < 0 or last >= data.size:
            raise TorchCheckpointError(f"a tensor of shape {shape} reaches outside its storage {self.storage.key}")
        view = np.lib.stride_tricks.as_strided(data[self.offset:], shape, [s * data.itemsize for s in stride])
        return np.ascontiguousarray(view)

    def __setstate__(self, state):
        """torch 0.3 pickled a Parameter as Parameter(data) then (requires_grad, volatile, hooks): no values."""


class PickledObject:
    """An inert stand-in for any class a checkpoint names that is not on the allow list: it records the
    arguments it was created with (pickle's NEWOBJ) and the state it was given (BUILD). Calling the class
    (pickle's REDUCE, INST, OBJ: how a malicious pickle runs a function) is refused."""
    qualified_name = "?"

    def __new__(cls, *args, **kwargs):
        instance = object.__new__(cls)
        instance.args, instance.state = args, None
        return instance

    def __init__(self, *args, **kwargs):
        raise RefusedCall(f"the file calls {self.qualified_name}, which a checkpoint of tensors and modules "
                          f"has no need of; nothing was run")

    def __setstate__(self, state):
        self.state = state

    def attributes(self):
        """The object's attributes as pickled (an nn.Module's __dict__), {} if it was given none."""
        state = self.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}  # (dict, slots)
        return state if isinstance(state, dict) else {}


def _stand_in(module, name):
    return type(name, (PickledObject,), {"qualified_name": f"{module}.{name}", "__module__": __name__})


def _rebuild_tensor(storage, storage_offset, size, stride, *ignored):
    # torch._utils._rebuild_tensor (torch 0.3/0.4) and _rebuild_tensor_v2 (requires_grad, hooks, metadata)
    if not isinstance(storage, Storage):
        raise RefusedCall("a tensor is rebuilt from something other than a storage")
    return Tensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *ignored):
    # _rebuild_parameter(data, requires_grad, hooks), _with_state(..., state), and torch 0.3's Parameter(data)
    if not isinstance(data, Tensor):
        raise RefusedCall("a parameter is rebuilt from something other than a tensor")
    return Tensor(data.storage, data.offset, data.shape, data.stride)


# (module, name) -> what the unpickler gets instead: the only callables a file can reach.
ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set, ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset, ("__builtin__", "frozenset"): frozenset,
    ("builtins", "range"): range, ("__builtin__", "xrange"): range,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.nn.parameter", "Parameter"): _rebuild_parameter,
}
STORAGE_MODULES = ("torch", "torch.cuda")
# Modules whose other names would be a function or a tensor type we do not know: refused by name, not stood in.
UNKNOWN_TORCH = ("torch", "torch._utils", "torch.cuda", "torch.storage", "torch._tensor", "torch.serialization")


class _RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler whose find_class hands out only ALLOWED callables, storage type names and stand-ins."""

    def __init__(self, file, storages):
        super().__init__(file)
        self.storages = storages  # key -> Storage, shared by the tensors of one file

    def find_class(self, module, name):
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        if module in STORAGE_MODULES and name in STORAGE_DTYPES:
            return _StorageType(name)
        if module in UNKNOWN_TORCH or module.split(".")[0] in ("builtins", "__builtin__", "os", "posix", "nt",
                                                                "subprocess", "sys", "importlib", "runpy"):
            raise RefusedCall(f"the file asks for {module}.{name}, which this reader does not allow")
        return _stand_in(module, name)

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid:
            raise RefusedCall(f"unknown persistent id {pid!r}")
        if pid[0] == "module":  # legacy: ('module', class, source file, source), a pickled model's class
            return pid[1]
        if pid[0] != "storage" or len(pid) < 5:
            raise RefusedCall(f"unknown persistent id {pid[0]!r}")
        storage_type, key, numel = pid[1], str(pid[2]), pid[4]
        if not isinstance(storage_type, _StorageType):
            raise RefusedCall("a storage of an unknown type")
        if len(pid) > 5 and pid[5] is not None:
            raise RefusedCall("storage views (torch < 0.4 shared storages) are not read")
        if key not in self.storages:
            self.storages[key] = Storage(STORAGE_DTYPES[storage_type.name], key, numel)
        return self.storages[key]


@dataclass(frozen=True)
class _StorageType:
    name: str

    def __call__(self, *args):
        raise RefusedCall(f"the file calls the storage type {self.name}")


def _unpickle(data, storages):
    return _RestrictedUnpickler(io.BytesIO(data) if isinstance(data, bytes) else data, storages).load()


def _read_zip(archive):
    pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") and name.count("/") == 1]
    if len(pickles) != 1:
        raise TorchCheckpointError("it is a zip file but not a PyTorch checkpoint (no <archive>/data.pkl)")
    root = pickles[0][:-len("data.pkl")]
    names = set(archive.namelist())
    little = archive.read(root + "byteorder").decode() != "big" if root + "byteorder" in names else True
    storages = {}
    obj = _unpickle(archive.read(pickles[0]), storages)
    for key, storage in storages.items():
        raw = archive.read(f"{root}data/{key}")
        storage.array = _storage_array(raw, storage, little)
    return obj


def _storage_array(raw, storage, little):
    dtype = storage.dtype.newbyteorder("<" if little else ">")
    if len(raw) < storage.numel * dtype.itemsize:
        raise TorchCheckpointError(f"storage {storage.key} is cut short")
    return np.frombuffer(raw, dtype, count=storage.numel).astype(storage.dtype.newbyteorder("="))


def _read_legacy(stream):
    try:
        magic = _unpickle(stream, {})
    except EOFError:
        raise TorchCheckpointError("it is empty or cut short") from None
    except (pickle.UnpicklingError, ValueError, IndexError) as err:
        raise TorchCheckpointError(f"it is not a PyTorch checkpoint ({one_line(err) or type(err).__name__})") \
            from None
    if magic != LEGACY_MAGIC:
        raise TorchCheckpointError("it is a pickle but not a PyTorch checkpoint (no torch magic number)")
    protocol = _unpickle(stream, {})
    if protocol != LEGACY_PROTOCOL:
        raise TorchCheckpointError(f"it has torch's legacy protocol version {protocol!r}, not {LEGACY_PROTOCOL}")
    sys_info = _unpickle(stream, {})
    little = not isinstance(sys_info, dict) or sys_info.get("little_endian", True)
    storages = {}
    obj = _unpickle(stream, storages)
    keys = _unpickle(stream, {})
    if not isinstance(keys, list):
        raise TorchCheckpointError("its list of storage keys is damaged")
    for key in keys:
        count = stream.read(8)
        if len(count) < 8:
            raise TorchCheckpointError(f"it is cut short before storage {key}")
        numel = struct.unpack("<q" if little else ">q", count)[0]
        storage = storages.get(str(key))
        if storage is None or numel != storage.numel:
            raise TorchCheckpointError(f"storage {key} is not the one its tensors name")
        storage.array = _storage_array(stream.read(numel * storage.dtype.itemsize), storage, little)
    return obj


def read_checkpoint(path):
    """What torch.save wrote to `path`: dicts, lists, Tensor records and PickledObject stand-ins.

    A file that is no checkpoint, is damaged, or asks for anything off the allow list is a TorchCheckpointError
    (one line naming the file); nothing from the file is imported or run."""
    try:
        with open(path, "rb") as f:
            if zipfile.is_zipfile(f):
                f.seek(0)
                with zipfile.ZipFile(f) as archive:
                    return _read_zip(archive)
            f.seek(0)
            return _read_legacy(f)
    except TorchCheckpointError as err:
        raise TorchCheckpointError(f"cannot read PyTorch checkpoint {path}: {err}") from None
    except RefusedCall as err:
        raise TorchCheckpointError(f"refused PyTorch checkpoint {path}: {err}") from None
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError, struct.error,
            zipfile.BadZipFile, pickle.UnpicklingError) as err:
        raise TorchCheckpointError(f"cannot read PyTorch checkpoint {path}: {describe_read_error(err)}") from None


def _module_tensors(module, prefix, out):
    """An nn.Module's state_dict as torch builds it: its parameters, its persistent buffers, then its children."""
    attributes = module.attributes()
    skipped = attributes.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        for name, value in (attributes.get(group) or {}).items():
            if isinstance(value, Tensor) and not (group == "_buffers" and name in skipped):
                out[prefix + name] = value
    for name, child in (attributes.get("_modules") or {}).items():
        if isinstance(child, PickledObject):
            _module_tensors(child, f"{prefix}{name}.", out)
    return out


def is_module(obj):
    return isinstance(obj, PickledObject) and "_modules" in obj.attributes()


def state_dict(obj):
    """{name: Tensor} of what a checkpoint holds: a state dict; a training checkpoint's 'state_dict' entry
    (cnn/train_imagenet.py's); or a whole pickled nn.Module (rnn/train.py's), walked as torch's state_dict()
    walks it. The 'module.' prefix of an nn.DataParallel is removed. None if it holds none of these."""
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if is_module(obj):
        tensors = _module_tensors(obj, "", collections.OrderedDict())
    elif isinstance(obj, dict) and obj and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        tensors = collections.OrderedDict(obj)
    else:
        return None
    if tensors and all(name.startswith("module.") for name in tensors):
        tensors = collections.OrderedDict((name[len("module."):], value) for name, value in tensors.items())
    return tensors
