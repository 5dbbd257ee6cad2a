"""Reading documents and key files from disk, and writing them back (the CLI's file I/O).

JSON goes through the strict I-JSON parser. YAML (for hand-written objects) is read with a
loader that rejects duplicate keys and keeps dates as strings, then checked as I-JSON too,
so both routes give the same values a signature would cover.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from exchange.canonical import check_ijson, parse
from exchange.errors import InvalidJSON, InvalidKey, UsageError
from exchange.keys import KeyPair, did_key_verification_method, key_pair_from_multibase

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "read_document",
    "read_key_pair",
    "write_json",
    "write_secret_json",
]

#: Larger than any entry (256 KiB) or push body (8 MiB) a node accepts.
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024


class _StrictYamlLoader(yaml.SafeLoader):
    """SafeLoader without implicit timestamps, rejecting duplicate keys."""


def _construct_mapping(loader: _StrictYamlLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise InvalidJSON(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_StrictYamlLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)
_StrictYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _read_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise UsageError(f"{path}: {size} bytes is more than the {MAX_DOCUMENT_BYTES} allowed")
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a document") from None
    except PermissionError:
        raise UsageError(f"{path}: permission denied") from None


def read_document(path: Path) -> Any:
    """A JSON (or ``.yaml``/``.yml``) document as I-JSON values."""
    data = _read_bytes(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            value = yaml.load(data.decode("utf-8"), Loader=_StrictYamlLoader)
        except UnicodeDecodeError as error:
            raise InvalidJSON(f"{path}: invalid UTF-8 at byte {error.start}") from None
        except yaml.YAMLError as error:
            raise InvalidJSON(f"{path}: not YAML: {error}".splitlines()[0]) from None
        check_ijson(value)
        return value
    try:
        return parse(data)
    except InvalidJSON as error:
        raise InvalidJSON(f"{path}: {error.detail}") from None


def read_key_pair(path: Path) -> KeyPair:
    """A Multikey key file with ``secretKeyMultibase``.

    The W3C vectors' ``privateKeyMultibase`` is read too.
    """
    document = read_document(path)
    if not isinstance(document, dict):
        raise InvalidKey(f"{path}: a key file is a JSON object")
    secret = document.get("secretKeyMultibase", document.get("privateKeyMultibase"))
    if not isinstance(secret, str):
        raise InvalidKey(f"{path}: no secretKeyMultibase in the key file")
    pair = key_pair_from_multibase("", secret)
    key_id = document.get("id")
    if key_id is None:
        key_id = did_key_verification_method(pair.public_multibase)
    if not isinstance(key_id, str):
        raise InvalidKey(f"{path}: id must be a string")
    public = document.get("publicKeyMultibase")
    if public is not None and public != pair.public_multibase:
        raise InvalidKey(f"{path}: publicKeyMultibase does not belong to the secret key")
    return KeyPair(key_id, pair.seed)


def _serialize(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as indented JSON, replacing ``path`` atomically."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(_serialize(value))
    os.replace(temporary, path)


def write_secret_json(path: Path, value: Any, *, overwrite: bool = False) -> None:
    """Write a secret (a key file) readable by its owner only (mode 0600), durably: the
    file and its folder entry are on disk (fsync) when this returns."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        descriptor = os.open(path, flags, 0o600)
    except FileExistsError:
        raise UsageError(f"{path}: exists; refusing to overwrite a key (use --force)") from None
    with os.fdopen(descriptor, "wb") as file:
        file.write(_serialize(value))
        file.flush()
        os.fsync(file.fileno())
    os.chmod(path, 0o600)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
