"""Stage configs at the edge: a job spec section and a command's flags are validated against a stage config.

A stage config is the library's frozen dataclass itself (e.g. :class:`ccs_dist.attribution.run.AttributionConfig`).
Its fields are the spec section's keys and the command's flags; a field's ``metadata`` says the rest:

* ``help``: the flag's help line (and the field's documentation);
* ``ge`` / ``gt`` / ``le`` / ``min_length`` / ``pattern``: checked at the edge, one-line problems;
* ``internal: True``: set by the stage, not by a spec or flag (e.g. ``data_root``, ``progress``).
* ``spec_only: True``: a spec field that is no flag (``attribution.enabled``);
* ``flat: True`` (a nested config): its flags drop the field's name (``--base-url``, not ``--labeler-base-url``);
* ``check``: a function of the value returning a problem or None;
* ``parse``: how a flag's text becomes the value (``evaluation.heads``' ``NAME=L11.H5,...;...``).

:func:`validate` turns a mapping into the dataclass or raises :class:`ConfigError`, which lists every bad field
(path, problem); :func:`dump` is the JSON-ready mapping of the settable fields (stage keys hash it).

The configs not yet moved onto their library dataclass still derive from :class:`StageConfig` (pydantic).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, field_validator

from ccs_dist.core.errors import UserError

Problem = tuple[tuple[str, ...], str]  # (field path, what is wrong)


class ConfigError(ValueError):
    """Every bad field of one config: ``problems`` are (path, message) pairs."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(p)}: {m}" for p, m in problems))


def spec_fields(cls) -> tuple[dataclasses.Field, ...]:
    """The fields a spec or a flag sets (all but ``internal`` ones), in declaration order."""
    return tuple(f for f in dataclasses.fields(cls) if not f.metadata.get("internal"))


@functools.cache
def field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def _adapter(tp) -> TypeAdapter:
    return TypeAdapter(tp)


def nested_config(tp) -> type | None:
    """The dataclass a field holds (``X`` or ``X | None``), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType")) and len(args) == 1:
        return nested_config(args[0])
    return None


def _is_bool_type(tp) -> bool:
    return tp is bool or bool in typing.get_args(tp)


def _check_constraints(value: Any, meta: Mapping[str, Any]) -> str | None:
    if value is None:
        return None
    for key, ok, words in (("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"), ("le", lambda v, b: v <= b, "<=")):
        if key in meta and isinstance(value, (int, float)) and not ok(value, meta[key]):
            return f"must be {words} {meta[key]}, got {value!r}"
    if "min_length" in meta and len(value) < meta["min_length"]:
        return f"give at least {meta['min_length']} value(s), got {len(value)}"
    if "pattern" in meta and isinstance(value, str) and not re.fullmatch(meta["pattern"], value):
        return f"{value!r} does not match {meta['pattern']}"
    return None


def _pydantic_problem(err: dict) -> str:
    if err["type"] == "literal_error":
        return f"got {err.get('input')!r}, expected {err['ctx']['expected']}"
    return err["msg"]


def _validate(cls, data: Any, path: tuple[str, ...], problems: list[Problem]):
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        problems.append((path, f"expected a mapping of {', '.join(f.name for f in spec_fields(cls))}, got {data!r}"))
        return None
    fields = {f.name: f for f in spec_fields(cls)}
    problems += [((*path, str(k)), "unknown field") for k in data if k not in fields]
    types = field_types(cls)
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name not in fields:
            continue
        where, tp, meta = (*path, name), types[name], fields[name].metadata
        inner = nested_config(tp)
        if inner is not None and value is not None:
            values[name] = _validate(inner, value, where, problems)
            continue
        args = typing.get_args(tp)
        if typing.get_origin(tp) is tuple and args and dataclasses.is_dataclass(args[0]) and isinstance(value, (list, tuple)):
            values[name] = tuple(_validate(args[0], v, (*where, str(i)), problems) for i, v in enumerate(value))
            continue
        if isinstance(value, bool) and not _is_bool_type(tp):  # pydantic reads true as 1
            problems.append((where, f"got {str(value).lower()}, expected a number or a list, not true/false"))
            continue
        try:
            value = _adapter(tp).validate_python(value)
        except ValidationError as e:
            problems += [((*where, *(str(p) for p in err["loc"])), _pydantic_problem(err)) for err in e.errors()]
            continue
        bad = _check_constraints(value, meta) or (meta["check"](value) if "check" in meta else None)
        if bad:
            problems.append((where, bad))
        else:
            values[name] = value
    if problems:
        return None
    try:
        return cls(**values)
    except UserError as e:  # the dataclass's own cross-field checks
        problems.append((path, str(e)))
        return None


def validate(cls, data: Any, path: tuple[str, ...] = ()):
    """``data`` (a mapping from a spec or the flags; unset fields keep the dataclass defaults) -> ``cls``, or
    :class:`ConfigError` naming every bad field."""
    problems: list[Problem] = []
    out = _validate(cls, data, path, problems)
    if problems:
        raise ConfigError(problems)
    return out


def _json(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dump(value)
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, PurePath):
        return str(value)
    return value


def dump(config) -> dict[str, Any]:
    """The settable fields of ``config``, JSON-ready (tuples as lists, paths as strings, nested configs as mappings)."""
    return {f.name: _json(getattr(config, f.name)) for f in spec_fields(type(config))}


def replace(config, **changes):
    """``dataclasses.replace`` (a frozen config with some fields changed)."""
    return dataclasses.replace(config, **changes)


class StageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, v, info):
        """pydantic reads ``true`` as 1 for an int field; a spec saying ``layers: true`` is a mistake."""
        if isinstance(v, bool) and "bool" not in str(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"got {str(v).lower()}, expected a number or a list, not true/false")
        return v

    @classmethod
    def build(cls, **values: Any):
        """The config from keyword values (the CLI's flags): a bad value is one-line UserError naming the field."""
        try:
            return cls(**values)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise UserError(f"{where}={first.get('input')!r}: {first['msg']}") from None
