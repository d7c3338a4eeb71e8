"""The config reference, generated from the pydantic models: every key, its default, type and meaning.

`splittune config keys` prints it; `docs/config.md` is `markdown()` written to a file
(`splittune config keys --markdown > docs/config.md`), and a test keeps the two equal. Keys come from
walking `RunConfig`'s fields, so a field added to any section shows up here without further work;
its description is the field's `description=`. Defaults are those of `RunConfig()`, the embedded
default experiment (so `scenario.*` shows the `sft-paper` preset's values).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import annotated_types
from pydantic import BaseModel

from splittune.experiments.config import RunConfig

_BOUNDS = {annotated_types.Ge: ">=", annotated_types.Gt: ">", annotated_types.Le: "<=", annotated_types.Lt: "<",
           annotated_types.MinLen: "length >=", annotated_types.MaxLen: "length <="}


@dataclass(frozen=True)
class Key:
    key: str  # dotted, as on the command line
    type: str  # values it takes: a type, or the allowed values
    default: str
    description: str


def _models(annotation) -> list[type[BaseModel]]:
    args = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    return [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]


def _is_union(annotation) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def type_name(annotation) -> str:
    """How a value is written: `int`, `a | b` for a Literal, `list of float`, `path`, `null`."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(str(a) for a in typing.get_args(annotation))
    if _is_union(annotation):
        return " | ".join(type_name(a) for a in typing.get_args(annotation))
    if origin in (list, tuple):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        inner = " and ".join(dict.fromkeys(type_name(a) for a in args)) if args else "value"
        return f"{'list' if origin is list else 'pair' if len(args) == 2 else 'tuple'} of {inner}"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " | ".join(str(m.value) for m in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(field) -> str:
    return ", ".join(f"{_BOUNDS[type(m)]} {getattr(m, dataclasses.fields(m)[0].name)}"
                     for m in field.metadata if type(m) in _BOUNDS)


def _show(value) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return str(value)


def config_keys(model: type[BaseModel] = RunConfig, instance: BaseModel | None = None, prefix: str = "") -> list[Key]:
    """Every key under `model`, depth first in field order; a section's own line precedes its keys."""
    instance = instance if instance is not None else model()
    keys = []
    for name, field in model.model_fields.items():
        dotted = prefix + (field.alias or name)
        value = getattr(instance, name)
        nested = _models(field.annotation)
        typ = type_name(field.annotation)
        bounds = _bounds(field)
        typ = f"{typ}, {bounds}" if bounds else typ
        description = " ".join((field.description or "").split())
        if nested and isinstance(value, BaseModel):  # a section: its keys, under its description
            if description:
                keys.append(Key(dotted, "section", "", description))
            keys += config_keys(type(value), value, dotted + ".")
        elif nested and len(nested) == 1 and value is None:  # an optional section, off by default
            inner = nested[0]
            keys.append(Key(dotted, f"null | {inner.__name__} keys", "null",
                            description or f"off unless set; setting any {dotted}.* key turns it on"))
            keys += config_keys(inner, inner(), dotted + ".")
        else:  # a top-level field shows its own default (a validator resolves `task: auto` in the instance)
            shown = field.get_default(call_default_factory=True) if not prefix else value
            keys.append(Key(dotted, typ, _show(shown), description))
    return keys


def undocumented(keys: list[Key] | None = None) -> list[str]:
    return [k.key for k in keys or config_keys() if not k.description]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown() -> str:
    """docs/config.md: one table per top-level section."""
    keys = config_keys()
    sections: dict[str, list[Key]] = {}
    for k in keys:
        top = k.key.split(".")[0] if "." in k.key or k.type == "section" else ""
        sections.setdefault(top, []).append(k)
    out = [
        "# Configuration reference",
        "",
        "<!-- generated by `splittune config keys --markdown > docs/config.md`; a test checks it is current -->",
        "",
        "Every key of a run config, with its default (the embedded default experiment, `splittune run` with no",
        "arguments) and what it takes. Set a key in a YAML file (nested mappings) or on the command line as",
        "`key=value` (`train.rounds=5`, `codec.up=topk+sq+ans codec.up.rho=0.2`); `splittune run --show-config`",
        "prints the resolved values of a run and `splittune configs list` the shipped configs.",
        "",
    ]
    for top, rows in sections.items():
        out += [f"## `{top}`" if top else "## Top level", ""]
        if rows[0].type == "section":
            out += [rows[0].description, ""]
            rows = rows[1:]
        out += ["| key | default | values | description |", "|---|---|---|---|"]
        for k in rows:
            if k.type == "section":
                out.append(f"| **`{k.key}`** | | | {_cell(k.description)} |")
            else:
                out.append(f"| `{k.key}` | `{_cell(k.default)}` | {_cell(k.type)} | {_cell(k.description)} |")
        out.append("")
    return "\n".join(out)
