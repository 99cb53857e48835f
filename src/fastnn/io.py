"""Saving and loading models: one zip file of ``.npy`` arrays plus JSON, never pickle.

Why a zip of ``.npy``: both formats are documented and read by NumPy alone
(``np.load(allow_pickle=False)`` cannot execute code), the zip's CRC-32 catches
corrupted bytes, and any tool can list and read the parts.  (safetensors would
be equally safe but is an extra dependency and has no place for the JSON state
besides a string header.)

Layout of a ``.fnn`` file::

    fastnn.json          format name and version, architecture, optimizer and loss
                         configuration, counters, RNG state, per-layer state
    params/NNNN.npy      every parameter, in model order
    optim/NAME.npy       optimizer state buffers
    buffers/LAYER/NAME.npy  non-trained layer buffers (batch norm's running statistics;
                         also in the layer state, which ``load`` reads)

Format versions: 1 stored the optimizer state of the trainable ranges only, back to
back, with one step count; 2 (written now) stores every state buffer over the whole
flat parameter buffer and each parameter range's step count (``optimizer.steps``, as
:meth:`fastnn.optim.Optimizer.param_steps`).  Both are read.

Writes are atomic: a temporary file in the same directory, fsync, rename.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import threading
import zipfile
from typing import Any

import numpy as np

FORMAT = "fastnn-model"
VERSION = 2
#: model file versions this fastnn reads
READ_VERSIONS = (1, 2)
#: version of the weights-only format (unchanged)
WEIGHTS_VERSION = 1
_MAX_JSON = 16 * 1024 * 1024
_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's file-mode creation mask, read without changing it.

    Linux reports it in ``/proc/self/status`` (``Umask:``, since 4.7).  Elsewhere the
    only way is ``os.umask``, which sets it: that set-and-restore runs under a lock so
    two fastnn saves never race (other code changing the umask at that very moment
    still could).
    """
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def atomic_write(path: str | os.PathLike, write: Any) -> None:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, fsync, then rename."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise FileNotFoundError(2, f"cannot save {path!r}: directory {d!r} does not exist "
                                   "(create it first)", d)
    fd, tmp = tempfile.mkstemp(prefix=".fastnn-", suffix=".tmp", dir=d)
    try:
        # mkstemp creates 0600: keep an existing file's mode, else what open() would give
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            mode = 0o666 & ~current_umask()
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        try:  # make the rename itself durable
            dfd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save_model(model: Any, path: str | os.PathLike) -> None:
    """Write ``model`` to ``path`` (see the module docstring for the format)."""
    atomic_write(path, lambda f: _write_model(model, f))


def model_to_bytes(model: Any) -> bytes:
    """The model file's bytes, in memory (what pickling and deep copies use)."""
    buf = io.BytesIO()
    _write_model(model, buf)
    return buf.getvalue()


def model_from_bytes(data: bytes, model_class: Any, loss: Any = None) -> Any:
    """A ``model_class`` from :func:`model_to_bytes`' bytes (``loss``: a Loss object to use
    instead of the stored name, for losses that are not built in).
    """
    return load_model(io.BytesIO(data), model_class, loss)


def _write_model(model: Any, f: Any) -> None:
    """Write the model file's zip to the binary file object ``f``."""
    params = [p for layer in model.layers for p in layer.params]
    opt = model.optimizer
    if opt is not None:  # its state over the current trainable layers (a layer frozen since
        model.trainer.attach()  # the last step): what training would continue from, and load
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": model.get_config(),
        "trainable": [layer.trainable for layer in model.layers],
        "layer_state": [layer.state() for layer in model.layers],
        "n_params": len(params),
        # non-trained buffers (batch norm's running statistics) by layer name, also as
        # buffers/<layer>/<buffer>.npy (what load_weights reads; load uses layer_state)
        "buffers": {layer.name: list(layer.buffers()) for layer in model.layers
                    if layer.buffers()},
        "epoch": model.epoch,
        "step": model.step,
        "rng": _jsonable(model.rng.bit_generator.state),
        "loss": None if model.loss is None else model.loss.name,
        "optimizer": None if opt is None else {
            "type": type(opt).__name__, "config": opt.get_config(),
            "step_count": opt.step_count, "steps": opt.param_steps(),
            "state": sorted(opt.state)},
    }

    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("fastnn.json", json.dumps(meta, indent=1))
        for i, p in enumerate(params):
            z.writestr(f"params/{i:04d}.npy", _npy_bytes(p))
        for layer in model.layers:
            for bname, b in layer.buffers().items():
                z.writestr(f"buffers/{layer.name}/{bname}.npy", _npy_bytes(np.asarray(b)))
        if opt is not None:
            for name, arr in opt.state.items():
                z.writestr(f"optim/{name}.npy", _npy_bytes(arr))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.integer | int):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def _read_npy(z: zipfile.ZipFile, name: str, max_elements: int | None = None) -> np.ndarray:
    """Entry ``name`` as an array; with ``max_elements``, an entry too large to hold at
    most that many elements (of 8 bytes, plus a header) is refused before it is read.
    """
    try:
        info = z.getinfo(name)
    except KeyError:
        raise ValueError(f"model file is missing {name}") from None
    if max_elements is not None and info.file_size > 8 * max_elements + 65536:
        raise ValueError(f"model file entry {name} is larger ({info.file_size} bytes) than "
                         f"its architecture allows")
    data = z.read(info)
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 -- any parse failure is a corrupt file
        raise ValueError(f"model file entry {name} is not a valid .npy array: {exc}") from None
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"model file entry {name} has unsupported dtype {arr.dtype}")
    return arr


def _open_archive(path: Any, what: str, formats: tuple[str, ...]
                  ) -> tuple[zipfile.ZipFile, dict]:
    """Open a fastnn zip (a path, or a binary file object such as ``io.BytesIO``), check
    every entry's CRC and read its bounded JSON header.

    Returns the open ZipFile (the caller closes it) and the header; ValueError naming
    ``what`` ("model", "weights") for a foreign, corrupt or malformed file.
    """
    shown = os.fspath(path) if isinstance(path, str | os.PathLike) else "<bytes>"
    try:
        z = zipfile.ZipFile(path)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # noqa: BLE001 -- zipfile raises many types on foreign bytes
        raise ValueError(f"{shown!r} is not a fastnn {what} file (not a readable "
                         f"zip: {type(exc).__name__}: {exc})") from None
    try:
        bad = z.testzip()
        if bad is not None:
            raise ValueError(f"{what} file is corrupted (CRC mismatch in {bad})")
        try:
            info = z.getinfo("fastnn.json")
        except KeyError:
            raise ValueError(f"not a fastnn {what} file (no fastnn.json)") from None
        if info.file_size > _MAX_JSON:
            raise ValueError(f"{what} file header is implausibly large")
        try:
            meta = json.loads(z.read("fastnn.json"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{what} file header is not valid JSON: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") not in formats:
            raise ValueError(f"not a fastnn {what} file (wrong format tag)")
    except BaseException as exc:
        z.close()
        if isinstance(exc, ValueError | MemoryError) or not isinstance(exc, Exception):
            raise
        raise ValueError(f"{what} file is malformed: {type(exc).__name__}: {exc}") from None
    return z, meta


def _npy_shape(z: zipfile.ZipFile, name: str) -> tuple[int, ...]:
    """The shape in entry ``name``'s .npy header (the data is not read)."""
    try:
        f = z.open(name)
    except KeyError:
        raise ValueError(f"file is missing {name}") from None
    with f:
        try:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0}[version]
            shape, _, _ = read(f)
        except Exception as exc:  # noqa: BLE001 -- any parse failure is a corrupt file
            raise ValueError(f"file entry {name} is not a valid .npy array: {exc}") from None
    return tuple(shape)


def load_model(path: Any, model_class: Any, loss: Any = None) -> Any:
    """Read a model written by :func:`save_model` into a new ``model_class`` (``fastnn.load``
    passes :class:`fastnn.Sequential`); ValueError for any bad file.

    ``path`` may be a binary file object; ``loss``: a Loss object to use instead of the
    stored name (for losses that are not built in).
    """
    z, meta = _open_archive(path, "model", (FORMAT,))
    try:
        with z:
            version = meta.get("version")
            if type(version) is not int or version not in READ_VERSIONS:
                raise ValueError(f"unsupported fastnn model file version {meta.get('version')!r}"
                                 f" (this fastnn reads versions {list(READ_VERSIONS)})")
            return _build(z, meta, model_class, loss)
    except ValueError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 -- any other failure means a malformed file
        raise ValueError(f"model file is malformed: {type(exc).__name__}: {exc}") from None


def _build(z: zipfile.ZipFile, meta: dict, Sequential: Any,  # noqa: N803 -- a class
           loss: Any = None) -> Any:
    from . import layers as layers_mod
    from . import optim as optim_mod
    from .losses import OutputLossError

    cfg = meta["model"]
    if not isinstance(cfg, dict) or not isinstance(cfg.get("layers"), list):
        raise ValueError("model file header has no layer list")
    layers = []
    for spec in cfg["layers"]:
        cls = layers_mod.LAYER_TYPES.get(spec["type"])
        if cls is None:
            raise ValueError(f"model file names an unknown layer type {spec['type']!r}")
        kwargs = dict(spec["config"])
        trainable = kwargs.pop("trainable", True)
        layer = cls(**kwargs)
        layer.trainable = bool(trainable)
        layers.append(layer)
    # Parameters are drawn at construction: refuse an architecture the file cannot
    # fill before allocating it (each element needs at least one stored byte).
    shapes = [shp for layer in layers for shp in layer.param_shapes(None)]
    needed = sum(int(np.prod(shp, dtype=object)) for shp in shapes)
    stored = sum(i.file_size for i in z.infolist() if i.filename.startswith("params/"))
    if needed > stored:
        raise ValueError(f"model file's architecture has {needed} parameters but the file "
                         f"stores only {stored} bytes of them")
    model = Sequential(layers, dtype=cfg["dtype"], seed=cfg["seed"],
                       input_shape=cfg["input_shape"], name=cfg["name"])
    params = [p for layer in model.layers for p in layer.params]
    if meta["n_params"] != len(params):
        raise ValueError("model file's parameter count does not match its architecture")
    arrays = [_read_npy(z, f"params/{i:04d}.npy", p.size) for i, p in enumerate(params)]
    model.set_weights(arrays)
    for layer, st, tr in zip(model.layers, meta["layer_state"], meta["trainable"]):
        layer.set_state(st)
        layer.trainable = bool(tr)
    model.epoch, model.step = int(meta["epoch"]), int(meta["step"])
    if model.epoch < 0 or model.step < 0:
        raise ValueError("model file has negative epoch or step counters")
    model.rng.bit_generator.state = meta["rng"]
    opt_meta = meta.get("optimizer")
    if opt_meta is not None:
        cls = getattr(optim_mod, opt_meta["type"], None)
        if not (isinstance(cls, type) and issubclass(cls, optim_mod.Optimizer)):
            raise ValueError(f"model file names an unknown optimizer {opt_meta['type']!r}")
        conf = dict(opt_meta["config"])
        if "betas" in conf:
            conf["betas"] = tuple(conf["betas"])
        try:
            model.compile(optimizer=cls(**conf), loss=loss or meta["loss"] or "cross_entropy")
        except OutputLossError as exc:  # a pair fastnn now refuses (saved by an older one)
            raise ValueError(f"this model file's output layer and loss do not fit together: "
                             f"{exc}. Build the corrected model and take the weights with "
                             f"model.load_weights(path)") from None
        n_opt = model.count_params()
        state = {name: _read_npy(z, f"optim/{name}.npy", n_opt) for name in opt_meta["state"]}
        sd = {"step_count": opt_meta["step_count"], "state": state}
        if meta["version"] >= 2:
            sd["steps"] = opt_meta["steps"]
        model.optimizer.load_state_dict(sd)
    elif loss is not None or meta.get("loss"):
        from .losses import get_loss

        model.loss = get_loss(loss or meta["loss"])
    return model


WEIGHTS_FORMAT = "fastnn-weights"


def save_weights(model: Any, path: str | os.PathLike) -> None:
    """Write only the parameters, keyed by layer name (``<layer>/<param>.npy``), atomically."""
    meta = {"format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION,
            "layers": {layer.name: list(layer.param_names[:len(layer.params)])
                       for layer in model.layers if layer.params},
            # non-trained buffers (batch norm's running statistics), as <layer>/<buffer>.npy
            "buffers": {layer.name: list(layer.buffers()) for layer in model.layers
                        if layer.buffers()}}

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
            z.writestr("fastnn.json", json.dumps(meta, indent=1))
            for layer in model.layers:
                for pname, p in zip(layer.param_names, layer.params):
                    z.writestr(f"{layer.name}/{pname}.npy", _npy_bytes(p))
                for bname, b in layer.buffers().items():
                    z.writestr(f"{layer.name}/{bname}.npy", _npy_bytes(np.asarray(b)))

    atomic_write(path, write)


def load_weights(model: Any, path: str | os.PathLike, skip_mismatch: bool = False) -> list[str]:
    """Set the parameters of ``model``'s layers from a weights file, matching layers by name.

    Every matching array is read and shape-checked before any is assigned.  Layers
    of the model missing from the file keep their values; layers of the file
    missing from the model are ignored.

    Parameters
    ----------
    model : Sequential
    path : str or PathLike
    skip_mismatch : bool
        Skip layers whose shapes differ instead of raising ValueError.

    Returns
    -------
    list of str
        Names of the layers that were loaded.
    """
    z, meta = _open_archive(path, "weights", (WEIGHTS_FORMAT, FORMAT))
    with z:
        if meta["format"] == FORMAT:  # a whole-model file: map its params to layer names
            entries = _model_file_entries(meta)
        else:
            entries = {name: [f"{name}/{pn}.npy" for pn in pnames]
                       for name, pnames in meta["layers"].items()}
        plan = []
        buffer_plan = _buffers_to_load(model, z, meta, skip_mismatch)
        for layer in model.layers:
            names = entries.get(layer.name)
            if not names or not layer.params:
                continue
            # shapes from the .npy headers first: a mismatch reads no data, and every
            # array read is bounded by the size of the parameter it fills
            shapes = [_npy_shape(z, e) for e in names]
            if shapes != [p.shape for p in layer.params]:
                if skip_mismatch:
                    continue
                raise ValueError(
                    f"load_weights: layer {layer.name!r} has parameter shapes "
                    f"{[p.shape for p in layer.params]}, the file has {shapes}")
            arrays = [_read_npy(z, e, p.size) for e, p in zip(names, layer.params)]
            plan.append((layer, arrays))
    for layer, arrays in plan:  # every array was read and checked: now assign
        for p, a in zip(layer.params, arrays):
            p[...] = a
    for layer, values in buffer_plan:
        layer.set_buffers(values)
    loaded = [layer.name for layer, _ in plan]
    return loaded + [layer.name for layer, _ in buffer_plan if layer.name not in loaded]


def _buffers_to_load(model: Any, z: zipfile.ZipFile, meta: dict,
                     skip_mismatch: bool) -> list[tuple[Any, dict[str, np.ndarray]]]:
    """(layer, {buffer: array}) for the model's layers whose buffers the file holds, read
    and shape-checked (nothing assigned): the ``<layer>/<buffer>.npy`` entries of a
    weights file, ``buffers/<layer>/<buffer>.npy`` of a model file.
    """
    stored = meta.get("buffers", {})
    prefix = "buffers/" if meta["format"] == FORMAT else ""
    out = []
    for layer in model.layers:
        mine = layer.buffers()
        have = stored.get(layer.name)
        if not mine or not have:
            continue
        values = {k: _read_npy(z, f"{prefix}{layer.name}/{k}.npy", mine[k].size)
                  for k in have if k in mine}
        values = {k: v.reshape(mine[k].shape) if v.size == mine[k].size else v
                  for k, v in values.items()}  # (.npy stores a 0-d count as (1,))
        if set(values) != set(mine) or any(values[k].shape != mine[k].shape for k in mine):
            if skip_mismatch:
                continue
            raise ValueError(f"load_weights: layer {layer.name!r} has buffers "
                             f"{ {k: v.shape for k, v in mine.items()} }, the file has "
                             f"{ {k: v.shape for k, v in values.items()} }")
        out.append((layer, values))
    return out


def _model_file_entries(meta: dict) -> dict[str, list[str]]:
    """Layer name -> its parameters' entries in a whole-model file (stored in model order)."""
    from . import layers as layers_mod

    idx = 0
    entries: dict[str, list[str]] = {}
    for spec in meta["model"]["layers"]:
        cls = layers_mod.LAYER_TYPES.get(spec["type"])
        if cls is None:
            raise ValueError(f"model file names an unknown layer type {spec['type']!r}")
        cfg = dict(spec["config"])
        cfg.pop("trainable", None)
        n = len(cls(**cfg).param_names)
        entries[cfg.get("name")] = [f"params/{i:04d}.npy" for i in range(idx, idx + n)]
        idx += n
    return entries
