"""Plumbing shared by every script: dataclass configs with named presets, atomic writes.

Every script describes its settings as one dataclass whose defaults are the small CPU
values, plus a dict of named presets (``paper`` holds the values from the paper). The
command line is built from the dataclass fields, so ``--preset paper --batch-size 64``
starts from the paper preset and overrides one field.
"""

import argparse
import dataclasses
import json
import os
import shutil
import tempfile
import typing
from pathlib import Path

import numpy as np


def build_parser(cls, presets, description=None):
    """An argparse parser with ``--preset`` plus one ``--flag`` per field of ``cls``.

    Field defaults are not put into argparse: a flag left out keeps the preset's value.
    Booleans become ``--flag / --no-flag``; tuples become ``nargs='+'``.
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--preset", choices=sorted(presets), default=None,
        help="named set of values to start from (flags override it)",
    )
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        origin = typing.get_origin(kind)
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None, help=help_text)
        elif origin is tuple:
            (item, *_) = typing.get_args(kind)
            parser.add_argument(flag, dest=f.name, type=item, nargs="+", default=None,
                                help=help_text)
        else:
            choices = f.metadata.get("choices")
            parser.add_argument(flag, dest=f.name, type=kind, default=None, choices=choices,
                                help=help_text)
    return parser


def config_from_args(cls, presets, args, default_preset):
    """Instantiate ``cls`` from a preset and the flags that were given."""
    name = args.preset or default_preset
    base = presets[name]
    overrides = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if value is not None:
            overrides[f.name] = tuple(value) if isinstance(value, list) else value
    return dataclasses.replace(base, **overrides)


def parse_config(cls, presets, argv=None, default_preset="cpu", description=None):
    """Parse the command line into an instance of the config dataclass ``cls``."""
    parser = build_parser(cls, presets, description)
    args = parser.parse_args(argv)
    return config_from_args(cls, presets, args, default_preset)


def config_to_dict(cfg):
    """A JSON-friendly dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def config_from_dict(cls, d):
    """Rebuild a config dataclass from ``config_to_dict``'s output; unknown keys are an error."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"config has fields {unknown} that {cls.__name__} does not know")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return cls(**values)


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


def atomic_write_json(path, obj):
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


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
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{meta_path} is not valid JSON: {err}") from err
    if meta.get("format") != fmt:
        raise DatasetError(f"{path}: expected format {fmt!r}, found {meta.get('format')!r}")
    names = {f.name for f in dataclasses.fields(config_cls)}
    if set(meta["config"]) != names:
        raise DatasetError(f"{path}: config fields {sorted(meta['config'])}, expected {sorted(names)}")
    cfg = config_from_dict(config_cls, meta["config"])
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


def publish_dataset(tmp, out, meta):
    """Finish a dataset folder: record every file's byte size in ``meta``, write
    ``meta.json`` last, then move the finished ``tmp`` folder to ``out`` (replacing it)."""
    tmp, out = Path(tmp), Path(out)
    files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
    atomic_write_json(tmp / "meta.json", {**meta, "file_bytes": files})
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
