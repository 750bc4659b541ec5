"""Flags derived, never listed: a command is a function whose parameters are its flags.

A parameter annotated with a stage config (a frozen dataclass, :mod:`ccs_dist.stages.config`) contributes one
flag per settable field, named as in the job spec with dashes (``--batch-size``; a nested config's field as
``--stability-resamples``), its help from the field's ``metadata["help"]``; any other parameter is one flag,
its help from the docstring's ``Args:``. Flags not given keep the config's defaults, so a default lives in
the dataclass alone. Values are validated like a spec section; a problem is one line naming the flag.

argparse (not fire's signature reflection) because the help must show the documented spelling and readable
types (``--base-url str``, ``--limit int | none``), and a bad flag must be one ``error:`` line.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from ccs_dist.core.errors import UserError
from ccs_dist.stages.config import ConfigError, field_types, nested_config, spec_fields, validate

_NONE_WORDS = ("none", "None", "null", "")
_TRUE, _FALSE = ("true", "True", "1", "yes"), ("false", "False", "0", "no")


def flag_name(path: tuple[str, ...]) -> str:
    return "--" + "-".join(path).replace("_", "-")


def _union_args(tp) -> tuple | None:
    return typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else None


def type_name(tp) -> str:
    """``int``, ``float | none``, ``exact | faiss``, ``int, ...`` (a comma-separated list)."""
    if tp is type(None):
        return "none"
    if typing.get_origin(tp) is Literal:
        return " | ".join(str(a) for a in typing.get_args(tp))
    args = _union_args(tp)
    if args:
        return " | ".join(type_name(a) for a in args)
    if typing.get_origin(tp) in (tuple, list):
        return f"{type_name(typing.get_args(tp)[0])},..."
    if typing.get_origin(tp) is dict:
        return "NAME=VALUE;..."
    if tp is Path:
        return "path"
    return getattr(tp, "__name__", str(tp)).lower()


def _items(text: str) -> list[str]:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return [p.strip().strip("'\"") for p in text.split(",") if p.strip()]


def convert(tp, text: str, flag: str) -> Any:
    """The command-line text of ``flag`` as a value of type ``tp``, or a one-line UserError naming the flag."""
    args = _union_args(tp)
    if args:
        if type(None) in args and text in _NONE_WORDS:
            return None
        rest = [a for a in args if a is not type(None)]
        if len(rest) > 1 and any(typing.get_origin(a) in (tuple, list) for a in rest) and ("," in text or "[" in text):
            return convert(next(a for a in rest if typing.get_origin(a) in (tuple, list)), text, flag)
        return convert(rest[0], text, flag)
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if text not in choices:
            raise UserError(f"unknown {flag.lstrip('-').replace('-', '_')} {text!r} ({flag}): use {' or '.join(map(str, choices))}")
        return text
    if origin in (tuple, list):
        inner = typing.get_args(tp)[0]
        return tuple(convert(inner, item, flag) for item in _items(text))
    if origin is dict:
        return dict(_pair(item, flag) for item in text.split(";") if item.strip())
    if tp is bool:
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise UserError(f"{flag} must be true or false, got {text!r}")
    if tp in (int, float):
        try:
            return tp(text)
        except ValueError:
            raise UserError(f"{flag} must be {'an integer' if tp is int else 'a number'}, got {text!r}") from None
    return tp(text)


def _pair(item: str, flag: str) -> tuple[str, str]:
    name, eq, value = item.partition("=")
    if not eq or not name.strip():
        raise UserError(f"{flag}: give NAME=VALUE entries separated by ';', got {item!r}")
    return name.strip(), value.strip()


@dataclasses.dataclass(frozen=True)
class Flag:
    name: str  # --batch-size
    dest: tuple[str, ...]  # (parameter, field, ...)
    tp: Any
    default: Any
    help: str
    aliases: tuple[str, ...] = ()  # earlier spellings that still parse (a command's ``flag_aliases``)
    parse: Callable[[str], Any] | None = None  # the field's own reading of the text (``metadata["parse"]``)


def _config_flags(cls, param: str, prefix: tuple[str, ...] = (), named: tuple[str, ...] = ()) -> list[Flag]:
    """``named``: the part of ``prefix`` the flag names carry (a ``flat`` nested config's flags carry none of its own)."""
    out = []
    hints = field_types(cls)
    for f in spec_fields(cls):
        if f.metadata.get("spec_only"):  # meaningful in a job only (attribution.enabled)
            continue
        tp, path = hints[f.name], (*prefix, f.name)
        inner = nested_config(tp)
        if inner is not None:
            out += _config_flags(inner, param, path, named if f.metadata.get("flat") else (*named, f.name))
            continue
        if typing.get_origin(tp) is tuple and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            continue  # a list of configs (the judges) is no flag: the command says how it is given
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out.append(Flag(flag_name((*named, f.name)), (param, *path), tp, default, f.metadata.get("help", ""),
                        parse=f.metadata.get("parse")))
    return out


def _docstring_args(func) -> dict[str, str]:
    """``Args:`` of a Google-style docstring: name -> its (joined) description."""
    doc = inspect.getdoc(func) or ""
    found: dict[str, str] = {}
    current = None
    for line in doc.partition("Args:")[2].splitlines():
        m = re.match(r"^    (\w+): (.*)$", line)
        if m:
            current = m.group(1)
            found[current] = m.group(2).strip()
        elif current and line.startswith("        "):
            found[current] += " " + line.strip()
        elif line.strip() and not line.startswith(" "):
            break
    return found


def command_flags(func: Callable) -> list[Flag]:
    """Every flag of ``func``: its config parameters' fields, then its own parameters."""
    hints = typing.get_type_hints(func)
    docs = _docstring_args(func)
    flags: list[Flag] = []
    for name, p in inspect.signature(func).parameters.items():
        if name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        tp = hints.get(name, str)
        if dataclasses.is_dataclass(tp):
            flags += _config_flags(tp, name)
        else:
            flags.append(Flag(flag_name((name,)), (name,), tp, p.default, docs.get(name, "")))
    aliases = getattr(func, "flag_aliases", {})  # {"--old-spelling": "--flag"}
    unknown = set(aliases.values()) - {f.name for f in flags}
    if unknown:
        raise RuntimeError(f"{func.__name__}: aliases of flags it does not have: {sorted(unknown)}")
    flags = [dataclasses.replace(f, aliases=tuple(a for a, n in aliases.items() if n == f.name)) for f in flags]
    names = [n for f in flags for n in (f.name, *f.aliases)]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise RuntimeError(f"{func.__name__}: flags {sorted(dupes)} come from two places")
    return flags


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, never argparse's usage block
        raise UserError(f"{message}: see {self.prog} --help")


def _is_bool(tp) -> bool:
    return tp is bool


def build_parser(prog: str, func: Callable) -> argparse.ArgumentParser:
    doc = (inspect.getdoc(func) or "").partition("Args:")[0].strip()
    parser = _Parser(prog=prog, usage=f"{prog} [--flag VALUE ...]", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
                     allow_abbrev=False, add_help=True)
    for f in command_flags(func):
        default = "none" if f.default is None else ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
        shown = f"{f.help} (default: {default})" if f.help else f"(default: {default})"
        if _is_bool(f.tp):
            for names, text in (((f.name, *f.aliases), shown), ((f"--no-{f.name[2:]}",), argparse.SUPPRESS)):
                parser.add_argument(*names, dest=".".join(f.dest), nargs="?", const="true", default=argparse.SUPPRESS,
                                    metavar="bool", help=text if text is argparse.SUPPRESS else text.replace("%", "%%"),
                                    action=_BoolAction)
        else:
            parser.add_argument(f.name, *f.aliases, dest=".".join(f.dest), default=argparse.SUPPRESS, metavar=type_name(f.tp),
                                help=shown.replace("%", "%%"))
    return parser


class _BoolAction(argparse.Action):
    """``--flag``, ``--flag=false``, ``--no-flag``."""

    def __call__(self, parser, namespace, values, option_string=None):
        value = convert(bool, values, self.option_strings[0])
        setattr(namespace, self.dest, not value if option_string.startswith("--no-") else value)


def _fire_spelling(args: list[str], bools: set[str]) -> list[str]:
    """Flags as fire took them: ``--base_url`` is ``--base-url``, ``--noprogress`` is ``--no-progress``."""
    out = []
    for a in args:
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            name = name.replace("_", "-")
            if name.startswith("no") and not name.startswith("no-") and name[2:] in bools:
                name = "no-" + name[2:]
            a = f"--{name}{eq}{value}"
        out.append(a)
    return out


def run_command(prog: str, func: Callable, args: list[str]):
    """Parse ``args`` against ``func``'s flags (leading words bind to its first parameters), build its configs, call it."""
    return func(**parse_command(prog, func, args))


def parse_command(prog: str, func: Callable, args: list[str]) -> dict[str, Any]:
    """``func``'s keyword arguments from the command line ``args``: its own flags' values and its configs, validated."""
    flags = command_flags(func)
    args = list(args)
    own = [f for f in flags if len(f.dest) == 1]
    lead = 0
    while lead < len(args) and not args[lead].startswith("-") and lead < len(own):
        lead += 1
    args = [x for i, a in enumerate(args[:lead]) for x in (own[i].name, a)] + args[lead:]
    by_dest = {".".join(f.dest): f for f in flags}
    bools = {n[2:] for f in flags if _is_bool(f.tp) for n in (f.name, *f.aliases)}
    parsed = vars(build_parser(prog, func).parse_args(_fire_spelling(args, bools)))
    hints = typing.get_type_hints(func)
    kwargs: dict[str, Any] = {}
    configs: dict[str, dict] = {}
    for dest, text in parsed.items():
        f = by_dest[dest]
        value = text if isinstance(text, bool) else f.parse(text) if f.parse else convert(f.tp, text, f.name)
        if len(f.dest) == 1:
            kwargs[f.dest[0]] = value
        else:
            node = configs.setdefault(f.dest[0], {})
            for part in f.dest[1:-1]:
                node = node.setdefault(part, {})
            node[f.dest[-1]] = value
    for name, tp in hints.items():
        if dataclasses.is_dataclass(tp) and name in inspect.signature(func).parameters:
            try:
                kwargs[name] = validate(tp, configs.get(name, {}))
            except ConfigError as e:
                named = {f.dest[1:]: f.name for f in flags if f.dest[0] == name}
                raise UserError("; ".join(f"{named.get(tuple(path), flag_name(path))} {msg}" if path else msg
                                          for path, msg in e.problems)) from None
    if "self" in inspect.signature(func).parameters:  # the commands are methods of the Commands group
        kwargs["self"] = None
    return kwargs
