"""Validation against the JSON Schemas in ``schemas/``: the single source of validation.

The validators are built once per process with jsonschema-rs (draft 2020-12, formats
checked for real) and report every failure as an :class:`~exchange.errors.Issue` with an
RFC 6901 pointer to the broken member and a plain message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

import jsonschema_rs

from exchange.errors import Issue, SchemaError
from exchange.resources import data_dir

__all__ = [
    "OBJECT_TYPES",
    "SCHEMA_BASE",
    "SchemaName",
    "check",
    "issues",
    "personal_data_paths",
    "schema_document",
    "schema_for_type",
]

SCHEMA_BASE = "https://w3id.org/exchange/schemas/"
OBJECT_TYPES: Mapping[str, str] = {
    "Case": "case",
    "Event": "event",
    "BestPractice": "best-practice",
}
SchemaName = str  # one of: case, event, best-practice, object, node, entry, common

_MAX_ISSUES = 50


def _all_schemas() -> dict[str, Any]:
    folder = data_dir("schemas")
    docs: dict[str, Any] = {}
    for item in folder.iterdir():
        if item.name.endswith(".schema.json"):
            doc = json.loads(item.read_text(encoding="utf-8"))
            docs[doc["$id"]] = doc
    return docs


@cache
def _registry_and_docs() -> tuple[jsonschema_rs.Registry, dict[str, Any]]:
    docs = _all_schemas()
    return jsonschema_rs.Registry(list(docs.items())), docs


def schema_document(name: SchemaName) -> Any:
    """The parsed schema ``name`` (for serving, or for tools that read annotations)."""
    _, docs = _registry_and_docs()
    try:
        return docs[f"{SCHEMA_BASE}{name}.schema.json"]
    except KeyError:
        raise SchemaError(f"no schema named {name!r}") from None


@cache
def _validator(name: SchemaName) -> Any:
    registry, _ = _registry_and_docs()
    return jsonschema_rs.validator_for(
        schema_document(name), registry=registry, validate_formats=True
    )


def schema_for_type(type_name: object) -> SchemaName:
    """The schema of a content object's ``type``; ``object`` dispatches on it."""
    if isinstance(type_name, str) and type_name in OBJECT_TYPES:
        return OBJECT_TYPES[type_name]
    return "object"


def _pointer(path: list[str | int] | tuple[str | int, ...]) -> str:
    # RFC 6901 §3: '~' -> '~0', '/' -> '~1'
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _plain(error: Any) -> Iterator[Issue]:
    """One jsonschema-rs error as plain issues pointing at the broken member."""
    kind = error.kind
    kind_name = type(kind).__name__
    path = list(error.instance_path)
    here = _pointer(path)
    if kind_name == "Required":
        name = str(kind.property)
        yield Issue(_pointer([*path, name]), f"{name} is required")
    elif kind_name in ("UnevaluatedProperties", "AdditionalProperties"):
        for name in kind.unexpected:
            yield Issue(_pointer([*path, name]), f"{name} is not a member this type allows")
    elif kind_name == "PropertyNames":
        # Only language maps constrain their member names; jsonschema-rs reports the whole
        # map, so point at each member whose name is not a language tag.
        names = error.instance if isinstance(error.instance, Mapping) else {}
        for name in names:
            if not _language_tag().fullmatch(str(name)):
                yield Issue(_pointer([*path, name]), f"{name!r} is not a valid BCP 47 language tag")
    elif kind_name == "Format":
        yield Issue(here, f"{error.instance!r} is not a valid {kind.format}")
    elif kind_name == "Pattern":
        yield Issue(here, _pattern_message(error.schema_path, error.instance))
    elif kind_name == "AnyOf" and _all_required(kind.context):
        alternatives = ", ".join(str(branch[0].kind.property) for branch in kind.context)
        yield Issue(here, f"needs at least one of: {alternatives}")
    elif kind_name in ("Enum", "Constant"):
        yield Issue(here, f"{error.instance!r} is not one of the allowed values: {error.message}")
    elif kind_name == "Type":
        yield Issue(here, f"wrong type: {error.message}")
    else:
        yield Issue(here, error.message)


def _all_required(branches: Any) -> bool:
    """True when every anyOf branch failed only for one missing member."""
    return bool(branches) and all(
        len(branch) == 1 and type(branch[0].kind).__name__ == "Required" for branch in branches
    )


def _pattern_message(schema_path: Any, value: object) -> str:
    where = "/".join(str(p) for p in schema_path)
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "...'"
    if "plainText" in where or "^([^<]|<[^A-Za-z!/?])*<?$" in where:
        return f"{text} looks like HTML; only plain text is allowed"
    return f"{text} does not have the required form"


def issues(document: object, name: SchemaName) -> tuple[Issue, ...]:
    """Every schema failure of ``document`` against schema ``name`` (empty when valid)."""
    found: list[Issue] = []
    seen: set[Issue] = set()
    for error in _validator(name).iter_errors(document):
        for issue in _plain(error):
            if issue not in seen:
                seen.add(issue)
                found.append(issue)
        if len(found) >= _MAX_ISSUES:
            break
    return tuple(found)


def check(document: object, name: SchemaName) -> None:
    """Raise :class:`SchemaError` listing every failure unless ``document`` matches ``name``."""
    found = issues(document, name)
    if found:
        first = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise SchemaError(f"{first.pointer or '/'}: {first.message}{more}", issues=found)


@cache
def _language_tag() -> re.Pattern[str]:
    pattern = schema_document("common")["$defs"]["languageTag"]["pattern"]
    return re.compile(pattern)


def personal_data_paths(name: SchemaName) -> tuple[str, ...]:
    """Where schema ``name`` marks personal data (``x-personal-data``), as pointer templates.

    ``*`` stands for any array index or language; the result drives redaction policy.
    """
    _, docs = _registry_and_docs()
    found: set[str] = set()

    def resolve(node: Mapping[str, Any], base: str) -> tuple[Mapping[str, Any], str]:
        ref = node.get("$ref")
        if not isinstance(ref, str):
            return node, base
        target_doc, _, fragment = ref.partition("#")
        doc_id = target_doc or base
        target: Any = docs[doc_id]
        for part in fragment.strip("/").split("/") if fragment else []:
            target = target[part]
        return target, doc_id

    def walk(node: Any, base: str, pointer: str, depth: int) -> None:
        if not isinstance(node, Mapping) or depth > 12:
            return
        if node.get("x-personal-data") is True:
            found.add(pointer or "/")
        if "$ref" in node:
            target, target_base = resolve(node, base)
            walk(target, target_base, pointer, depth + 1)
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in node.get(key, []):
                walk(sub, base, pointer, depth + 1)
        for key in ("then", "else"):
            if isinstance(node.get(key), Mapping):
                walk(node[key], base, pointer, depth + 1)
        for prop, sub in node.get("properties", {}).items():
            walk(sub, base, f"{pointer}/{prop}", depth + 1)
        if isinstance(node.get("items"), Mapping):
            walk(node["items"], base, f"{pointer}/*", depth + 1)

    root = schema_document(name)
    walk(root, root["$id"], "", 0)
    return tuple(sorted(found))
