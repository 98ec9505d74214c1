"""Typed configs from YAML files and ``key=value`` overrides (nested keys with dots: ``loss.recon=100``).

Unknown keys are rejected with the list of known ones; values are parsed as YAML scalars and checked
against the field's type. A YAML file may start from another with ``base: other.yaml`` (a path relative to
the file's folder): the base's keys first, then the file's own on top (nested mappings merged key by key).
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml

from model.errors import FormatError
from model.jsonfile import read_text_file

__all__ = ["config_from_dict", "config_to_dict", "load_config", "parse_overrides"]

C = TypeVar("C")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except (TypeError, ValueError) as e:
                errors.append(str(e))
        raise ValueError(f"{where}: {value!r} does not fit {tp}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a mapping")
        return config_from_dict(tp, value, where + ".")
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a mapping")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def config_from_dict(cls: type[C], data: Mapping[str, Any], prefix: str = "") -> C:
    """Build dataclass ``cls`` from ``data``; unknown keys raise ``ValueError`` naming them."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown config key(s) {', '.join(prefix + u for u in unknown)}; known: {', '.join(sorted(fields))}")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, YAML/JSON-serialisable dict of a (nested) dataclass config."""
    d = dataclasses.asdict(cfg)

    def clean(v: Any) -> Any:
        if isinstance(v, tuple):
            return [clean(x) for x in v]
        if isinstance(v, list):
            return [clean(x) for x in v]
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return clean(d)


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["a=1", "loss.recon=100"]`` -> ``{"a": 1, "loss": {"recon": 100}}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ValueError(f"override {item!r}: cannot parse the value ({e})") from None
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping in the YAML file ``path``, merged on top of the file its ``base:`` key names (relative
    to ``path``'s folder, followed recursively). :class:`FormatError` naming the file for an unreadable or
    malformed file, a missing base or a cycle of bases."""
    here = path.resolve()
    if here in chain:
        cycle = " -> ".join(str(c) for c in chain + (here,))
        raise FormatError(path, "base", f"the bases form a cycle ({cycle}); remove one base: line")
    text = read_text_file(path)
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise FormatError(path, None, f"not valid YAML: {e}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, Mapping):
        raise FormatError(path, None, "expected a mapping of config keys")
    loaded = dict(loaded)
    base = loaded.pop("base", None)
    if base is None:
        return loaded
    if not isinstance(base, str) or not base.strip():
        raise FormatError(path, "base", f"expected the path of another YAML config, got {base!r}")
    base_path = Path(base) if Path(base).is_absolute() else path.parent / base
    if not base_path.is_file():
        raise FormatError(path, "base", f"{base} not found (looked for {base_path}); give a path relative "
                          "to this file's folder")
    return _merge(_read_yaml(base_path, chain + (here,)), loaded)


def load_config(cls: type[C], path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()) -> C:
    """Defaults of ``cls``, updated by the YAML file at ``path`` (and the files its ``base:`` keys name)
    and then by ``key=value`` overrides.

    Raises :class:`FormatError` for an unreadable or malformed file, ``ValueError`` for unknown keys or
    values of the wrong type.
    """
    data: dict[str, Any] = config_to_dict(cls())
    if path is not None:
        p = Path(path)
        loaded = _read_yaml(p)
        try:
            config_from_dict(cls, _merge(config_to_dict(cls()), loaded))
        except ValueError as e:
            raise FormatError(p, None, str(e)) from None
        _merge(data, loaded)
    _merge(data, parse_overrides(overrides))
    return config_from_dict(cls, data)
