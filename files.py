"""Files on disk: atomic writes, JSON, folder locks, dataset folders and safe checkpoint loading.

Everything a run writes goes through ``atomic_write_bytes`` (a reader sees the old file or the
new one, never half of one); a dataset folder is complete only once its ``meta.json`` exists;
a folder being written is held by one process (``claim``); checkpoints are read with
``torch.load(weights_only=True)`` only. ``error_line`` is the one line a script prints for a
failed file operation; ``load_official_slots`` reads the C-JEPA release's slot pickles.
"""

import contextlib
import dataclasses
import errno
import io
import json
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch


# ---------------------------------------------------------------------------------------
# Writing and reading files, and the errors of doing so
# ---------------------------------------------------------------------------------------
def atomic_write_bytes(path, data: bytes):
    """Write ``data`` to ``path`` so that a reader sees either the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_results_path(path, kind, keys):
    """Refuse ``path`` as the place for a ``kind`` results JSON unless it ends in .json and is
    new or an earlier results file (a JSON object with ``keys``), and its folder is writable:
    a results file never replaces a checkpoint, config or dataset file. ValueError otherwise."""
    path = Path(path)
    if path.suffix != ".json":
        raise ValueError(f"--out {path}: {kind} results are a .json file")
    if path.exists():
        try:
            earlier = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            earlier = None
        if not isinstance(earlier, dict) or not set(keys) <= set(earlier):
            raise ValueError(f"--out {path} exists and is not a {kind} results file: choose another path")
    folder = path.parent if path.parent != Path("") else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        raise ValueError(f"--out {path}: cannot write in {folder} ({err.strerror})") from err


def atomic_write_json(path, obj):
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def atomic_write_png(path, image):
    """A PIL image written as a PNG, atomically."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def read_json(path):
    """The JSON in ``path``; a file cut short or edited by hand is a ValueError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}): it was cut short or edited; restore it "
                         "or make it again") from err


def os_error_line(err: OSError) -> str:
    """One line for a failed file operation: which file, what went wrong, what to do. Our own
    errors (no errno) keep their message."""
    if err.errno is None:
        return str(err)
    where = err.filename or "a file"
    if isinstance(err, PermissionError):
        return f"no permission to write {where}: choose another path (--out) or change its permissions"
    if isinstance(err, (FileExistsError, NotADirectoryError)):
        return f"cannot make a folder at {where}: a file stands in the way; move it or choose another path"
    if err.errno == errno.ENOSPC:
        return f"no space left on the device while writing {where}: free some and rerun with --resume"
    return f"{where}: {err.strerror or err}"


def check_free_space(folder, need_bytes, what, advice):
    """Stop before writing ``need_bytes`` into ``folder`` when its disk has less free: a large
    memory-mapped file would otherwise fill the disk hours into the stage that writes it."""
    free = shutil.disk_usage(folder).free
    size = lambda n: f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.2f} MB"
    if need_bytes > free:
        raise OSError(f"{what} need {size(need_bytes)} in {folder}, where {size(free)} are free: {advice}")


def error_line(err: Exception) -> str:
    """The one line a script prints for an error it stops on."""
    return os_error_line(err) if isinstance(err, OSError) else str(err)


class DatasetError(ValueError):
    """A dataset folder that is missing, incomplete, corrupted or made for another config."""


def read_dataset_meta(path, fmt, config_cls, expect=None):
    """Read and check ``path/meta.json`` of a dataset folder; returns (meta, config).

    A folder is complete only once its ``meta.json`` exists (it is written last). Checks
    the format tag, that the recorded config is a ``config_cls`` (and equals ``expect``
    when given) and the byte size of every file in ``meta["file_bytes"]``; raises
    DatasetError saying what was expected and what was found.
    """
    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        hint = " (an interrupted run leaves only a .partial folder)" if path.with_name(
            path.name + ".partial").exists() else ""
        raise DatasetError(f"{path} is not a dataset: {meta_path} is missing{hint}")
    try:
        meta = read_json(meta_path)
    except ValueError as err:
        raise DatasetError(str(err)) from err
    if meta.get("format") != fmt:
        raise DatasetError(f"{path}: expected format {fmt!r}, found {meta.get('format')!r}")
    names = {f.name for f in dataclasses.fields(config_cls)}
    if set(meta["config"]) != names:
        raise DatasetError(f"{path} was written by an older version of this code (config fields "
                           f"{sorted(meta['config'])}, expected {sorted(names)}); older datasets are not "
                           "converted: make it again (docs/training.md#older-runs)")
    cfg = config_cls(**meta["config"])   # the fields were checked just above
    if expect is not None and cfg != expect:
        diff = {k: (v, getattr(cfg, k)) for k, v in dataclasses.asdict(expect).items()
                if getattr(cfg, k) != v}
        raise DatasetError(f"{path} was made with another config; (expected, found): {diff}")
    for name, size in meta["file_bytes"].items():
        actual = (path / name).stat().st_size if (path / name).is_file() else None
        if actual != size:
            raise DatasetError(f"{path / name}: expected {size} bytes, found {actual} "
                               "(truncated or replaced); make the dataset again")
    return meta, cfg


def load_array(file, shape, dtype):
    """Memory-map one ``.npy`` file and check its shape and dtype (DatasetError otherwise)."""
    try:
        array = np.load(file, mmap_mode="r")
    except (ValueError, OSError) as err:
        raise DatasetError(f"{file} cannot be read: {err}") from err
    if array.shape != tuple(shape) or array.dtype != np.dtype(dtype):
        raise DatasetError(f"{file}: expected {np.dtype(dtype)} {tuple(shape)}, found "
                           f"{array.dtype} {array.shape}")
    return array


@contextlib.contextmanager
def claim(folder, what):
    """Hold ``folder`` (its ``<folder>.lock`` file, with this process's pid) while writing
    ``what`` into it: a second process gets FileExistsError saying who holds it, instead of
    both writing. A lock whose process is gone is taken over."""
    lock = Path(folder).with_name(Path(folder).name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                pid = int(lock.read_text() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _alive(pid):
                raise FileExistsError(f"{folder} is being written by process {pid} ({what}): wait for it to "
                                      f"finish, or remove {lock} if that process is gone") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
    else:
        raise FileExistsError(f"{lock} could not be taken")
    with os.fdopen(fd, "w") as fh:
        fh.write(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def check_replaceable(out, fmt, overwrite):
    """Before collecting into ``out``: it must not exist, or, with ``overwrite``, be a dataset
    folder of format ``fmt`` (its meta.json says so): --overwrite never deletes anything else."""
    out = Path(out)
    if not out.exists():
        return
    if not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    try:
        found = json.loads((out / "meta.json").read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        found = None
    if found != fmt:
        raise FileExistsError(f"{out} exists and is not a {fmt} dataset (no meta.json saying so): "
                              "--overwrite only replaces a dataset; choose another --out")


def publish_dataset(tmp, out, meta):
    """Finish a dataset folder: record every file's byte size in ``meta``, write
    ``meta.json`` last, then move the finished ``tmp`` folder to ``out`` (replacing it)."""
    tmp, out = Path(tmp), Path(out)
    files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
    atomic_write_json(tmp / "meta.json", {**meta, "file_bytes": files})
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


# ---------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------
def load_weights(path, map_location="cpu"):
    """``torch.load(path, weights_only=True)``: tensors and plain values only, never arbitrary
    objects. A file that is not one is a ValueError naming it (torch's own message would
    suggest the unsafe ``weights_only=False``, which this project never does)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if found:
            raise ValueError(f"{path} holds an object of class {found.group(1)}, which a safe "
                             "(weights-only) load refuses: it was not written by this project; use a "
                             "checkpoint that train.py or vqa.py wrote") from err
        first = str(err).splitlines()[0].split(". ")[0] if str(err) else type(err).__name__
        if "weights_only" in first:  # torch's advice to load unsafely is not passed on
            first = "not a weights-only pickle"
        raise ValueError(f"{path} is not a readable checkpoint ({first}): it was cut short or is "
                         "another kind of file; make it again") from err


def _video_index(split, key):
    """The integer prefix of a video key: '12_pixels.mp4' -> 12."""
    match = re.match(r"(\d+)_", str(key))
    if match is None:
        raise ValueError(f"expected video keys like '12_pixels.mp4' in split {split!r}, got {key!r}")
    return int(match.group(1))


def load_official_slots(path):
    """Read the C-JEPA release's slot pickle -> {split: [float32 array (T, S, D), ...]}.

    The pickle holds {'train': {'0_pixels.mp4': array (T, S, D), ...}, 'val': ..., 'test': ...};
    videos are ordered by the integer before the first '_' ('10_...' after '2_...'), and all
    must share S and D. Unpickling can run arbitrary code: only load files from a trusted source.
    """
    with open(path, "rb") as f:
        data = pickle.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"expected a dict of splits in {path}, got {type(data).__name__}")
    out, shape = {}, None
    for split, videos in data.items():
        if not isinstance(videos, dict):
            raise ValueError(f"expected split {split!r} to map video names to arrays, got {type(videos).__name__}")
        out[split] = []
        for key in sorted(videos, key=lambda k: _video_index(split, k)):
            slots = np.asarray(videos[key], dtype=np.float32)
            if slots.ndim != 3:
                raise ValueError(f"expected slots of shape (T, S, D) for {split}/{key}, got {slots.shape}")
            if shape is None:
                shape = slots.shape[1:]
            if slots.shape[1:] != shape:
                raise ValueError(
                    f"expected slots of shape (T, {shape[0]}, {shape[1]}) like the first video, "
                    f"got {slots.shape} for {split}/{key}"
                )
            out[split].append(slots)
    return out
