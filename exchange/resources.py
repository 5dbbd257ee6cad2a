"""Files that ship with the package: JSON Schemas, JSON-LD contexts, the vocabulary, examples.

In a built wheel they live inside the package (``exchange/schemas``, ``exchange/vocab``,
``exchange/examples``); in a source checkout they are the top-level folders beside the
package. Either way they are read from disk next to the code, never fetched.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from exchange.errors import ResourceMissing

__all__ = [
    "CONTEXT_FILES",
    "CONTEXT_IRIS",
    "EXCHANGE_CONTEXT",
    "context_document",
    "data_dir",
    "read_json",
]

AS2_CONTEXT = "https://www.w3.org/ns/activitystreams"
DATA_INTEGRITY_CONTEXT = "https://w3id.org/security/data-integrity/v2"
EXCHANGE_CONTEXT = "https://w3id.org/exchange/v1"
#: The @context of every document a node signs or serves (protocol.md §1), in order.
CONTEXT_IRIS: tuple[str, ...] = (AS2_CONTEXT, DATA_INTEGRITY_CONTEXT, EXCHANGE_CONTEXT)
#: Every context IRI the package ships, with its file under vocab/contexts/.
CONTEXT_FILES: dict[str, str] = {
    AS2_CONTEXT: "activitystreams.jsonld",
    DATA_INTEGRITY_CONTEXT: "data-integrity-v2.jsonld",
    EXCHANGE_CONTEXT: "exchange-v1.jsonld",
}

_FOLDERS = ("schemas", "vocab", "examples")


@cache
def data_dir(name: str) -> Traversable:
    """The shipped folder ``name`` (one of schemas, vocab, examples)."""
    if name not in _FOLDERS:
        raise ResourceMissing(f"no shipped folder named {name!r}")
    packaged = resources.files("exchange").joinpath(name)
    if packaged.is_dir():
        return packaged
    source = Path(__file__).resolve().parent.parent / name
    if source.is_dir():
        return source
    raise ResourceMissing(f"the {name}/ folder is missing from the installed package")


def read_json(folder: str, filename: str) -> Any:
    """Parse a shipped JSON file (trusted: written by this project)."""
    path = data_dir(folder)
    for part in filename.split("/"):
        path = path.joinpath(part)
    if not path.is_file():
        raise ResourceMissing(f"{folder}/{filename} is missing from the installed package")
    return json.loads(path.read_text(encoding="utf-8"))


def context_document(iri: str) -> Any:
    """The shipped JSON-LD context document for ``iri``; unknown IRIs are never fetched."""
    filename = CONTEXT_FILES.get(iri)
    if filename is None:
        raise ResourceMissing(f"context {iri} is not shipped with exchange and is never fetched")
    return read_json("vocab", "contexts/" + filename)
