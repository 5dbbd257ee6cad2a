"""``GET B/openapi.json``: the OpenAPI 3.1 description of every HTTP endpoint of a node.

Built in code from the node's settings (its server URL and path prefix), so that it always
names the routes this build serves; ``tests/test_openapi.py`` checks that every route of the
app's router is described here and nothing else. The server of the document is the node's
origin (scheme, host, port) and every path carries the node's path prefix, so that
``/.well-known/exchange`` (always at the host root) and ``B`` itself fit in one document.
A ``GET`` also answers ``HEAD`` (aiohttp's default); ``HEAD`` is not listed separately.
"""

from __future__ import annotations

from typing import Any

from exchange.query import DEFAULT_LIMIT, MAX_IDS, MAX_LIMIT, MAX_QUERY_CHARS, TYPES

__all__ = ["openapi_document"]

Schema = dict[str, Any]

ACTIVITY_JSON = "application/activity+json"
LD_JSON = "application/ld+json"
PROBLEM_JSON = "application/problem+json"

_PROBLEM: Schema = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "parameter": {"type": "string", "description": "the query parameter at fault"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["pointer", "message"],
                "properties": {"pointer": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
_JSON_OBJECT: Schema = {"type": "object"}
_HASHES: Schema = {
    "type": "object",
    "required": ["hashes"],
    "properties": {"hashes": {"type": "array", "items": {"type": "string"}}},
}
_ITEM: Schema = {
    "type": "object",
    "required": [
        "id",
        "type",
        "origin",
        "country",
        "version",
        "seq",
        "received",
        "verification",
        "deleted",
        "object",
    ],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string"},
        "origin": {"type": "string", "description": "the base URL of the node that signed it"},
        "country": {
            "type": ["string", "null"],
            "description": "the origin's country: this node's, or a partner's",
        },
        "version": {"type": "integer", "minimum": 0},
        "seq": {"type": "integer", "minimum": 0, "description": "its entry in the origin's log"},
        "received": {
            "type": "string",
            "format": "date-time",
            "description": "when this node published or merged this version",
        },
        "verification": {"enum": ["own", "verified"]},
        "deleted": {"type": "boolean"},
        "object": {"type": "object", "description": "the object as signed (or its Tombstone)"},
    },
}
_LISTING: Schema = {
    "type": "object",
    "required": ["items", "next"],
    "additionalProperties": False,
    "properties": {
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/ObjectItem"}},
        "next": {"type": ["string", "null"], "description": "the next page, absolute"},
    },
}
_CHECKPOINTS: Schema = {
    "type": "object",
    "required": ["id", "checkpoints"],
    "properties": {
        "id": {"type": "string"},
        "checkpoints": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["origin", "logOrigin", "size", "rootHash", "note", "halted"],
                "properties": {
                    "origin": {"type": "string"},
                    "logOrigin": {"type": "string"},
                    "size": {"type": "integer", "minimum": 0},
                    "rootHash": {"type": "string"},
                    "note": {"type": "string"},
                    "halted": {"type": "boolean"},
                    "evidence": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
_COLLECTION: Schema = {
    "type": "object",
    "required": ["id", "type", "totalItems", "first", "last"],
    "properties": {
        "type": {"const": "OrderedCollection"},
        "totalItems": {"type": "integer", "minimum": 0},
        "pageSize": {"type": "integer", "minimum": 1},
    },
}
_PAGE: Schema = {
    "type": "object",
    "required": ["id", "type", "partOf", "startIndex", "orderedItems"],
    "properties": {
        "type": {"const": "OrderedCollectionPage"},
        "startIndex": {"type": "integer", "minimum": 0},
        "orderedItems": {"type": "array", "items": {"type": "object"}},
    },
}
_ENTRY: Schema = {
    "type": "object",
    "required": ["id", "type", "seq"],
    "properties": {"seq": {"type": "integer", "minimum": 0}},
}
_NODE_DOCUMENT: Schema = {
    "type": "object",
    "required": ["id", "type", "inbox", "outbox", "assertionMethod", "checkpointKey"],
    "properties": {"type": {"const": "Service"}},
}
_PUBLISH_RESULTS: Schema = {
    "type": "object",
    "required": ["results"],
    "properties": {"results": {"type": "array", "items": {"type": "object"}}},
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem(description: str) -> Schema:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": _ref("Problem")}}}


def _ok(description: str, content: dict[str, Schema], *, cached: bool = False) -> Schema:
    response: Schema = {
        "description": description,
        "content": {media: {"schema": schema} for media, schema in content.items()},
    }
    if cached:
        response["headers"] = {
            "ETag": {"schema": {"type": "string"}, "description": "a strong entity tag"},
            "Cache-Control": {"schema": {"type": "string"}},
        }
    return response


_NOT_MODIFIED: Schema = {"description": "If-None-Match named the current ETag"}


def _query(name: str, schema: Schema, description: str, *, required: bool = False) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


def _path(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


_COUNT: Schema = {"type": "integer", "minimum": 0}


def _objects_parameters() -> list[Schema]:
    return [
        _query("type", {"enum": list(TYPES)}, "only objects of this type"),
        _query("origin", {"type": "string", "format": "uri"}, "only objects of this node"),
        _query(
            "country",
            {"type": "string", "pattern": "^[A-Za-z]{2}$"},
            "only objects of nodes in this country (ISO 3166-1 alpha-2)",
        ),
        _query(
            "lang",
            {"type": "string", "pattern": "^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$"},
            "only objects with a name, summary or content in this language (RFC 4647 basic "
            "filtering: nl matches nl-BE)",
        ),
        _query(
            "q",
            {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS},
            "free text: each word must begin a word of a name, summary or content, in any "
            "language, case and diacritics ignored",
        ),
        _query(
            "updated_since",
            {"type": "string", "format": "date-time"},
            "only objects whose updated time is at or after this RFC 3339 instant",
        ),
        {
            **_query(
                "id",
                {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": MAX_IDS},
                "only these objects (repeat the parameter)",
            ),
            "style": "form",
            "explode": True,
        },
        _query("deleted", {"enum": ["include", "exclude"]}, "list Tombstones too (include)"),
        _query(
            "after",
            {"type": "string", "pattern": "^c[0-9a-z]{1,12}$"},
            "the opaque cursor of a next link",
        ),
        _query(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
            "items per page",
        ),
    ]


def _operations() -> dict[str, dict[str, Schema]]:
    bad = _problem("a malformed path or query parameter")
    missing = _problem("unknown resource")
    unauthorized = _problem("the operator token is missing or wrong")
    return {
        "/": {
            "get": {
                "operationId": "getNodeDocument",
                "summary": "The node document (protocol.md §1), or a page about it for people",
                "responses": {
                    "200": _ok(
                        "the node document",
                        {
                            ACTIVITY_JSON: _ref("NodeDocument"),
                            LD_JSON: _ref("NodeDocument"),
                            "text/html": {"type": "string"},
                        },
                    ),
                    "406": _problem("none of the offered media types is acceptable"),
                },
            }
        },
        "/.well-known/exchange": {
            "get": {
                "operationId": "getWellKnown",
                "summary": "The nodes on this host (always at the host root)",
                "responses": {
                    "200": _ok(
                        "the base URLs",
                        {
                            "application/json": {
                                "type": "object",
                                "required": ["nodes"],
                                "properties": {
                                    "nodes": {"type": "array", "items": {"type": "string"}}
                                },
                            }
                        },
                    )
                },
            }
        },
        "/feed": {
            "get": {
                "operationId": "getFeed",
                "summary": "The feed: an OrderedCollection of the log (§4)",
                "responses": {
                    "200": _ok("the collection", {ACTIVITY_JSON: _COLLECTION}, cached=True),
                    "304": _NOT_MODIFIED,
                },
            }
        },
        "/feed/{number}": {
            "get": {
                "operationId": "getFeedPage",
                "summary": "One page of the feed; full pages are immutable (§4)",
                "parameters": [_path("number", _COUNT, "the page number")],
                "responses": {
                    "200": _ok("the page", {ACTIVITY_JSON: _PAGE}, cached=True),
                    "304": _NOT_MODIFIED,
                    "400": bad,
                    "404": _problem("a page beyond the last page"),
                },
            }
        },
        "/log/{seq}": {
            "get": {
                "operationId": "getLogEntry",
                "summary": "One signed entry of the log (or its Redacted form)",
                "parameters": [_path("seq", _COUNT, "the entry's seq")],
                "responses": {
                    "200": _ok("the entry", {ACTIVITY_JSON: _ENTRY}, cached=True),
                    "304": _NOT_MODIFIED,
                    "400": bad,
                    "404": missing,
                },
            }
        },
        "/checkpoint": {
            "get": {
                "operationId": "getCheckpoint",
                "summary": "The latest signed checkpoint (C2SP tlog-checkpoint, §5)",
                "responses": {
                    "200": _ok("the signed note", {"text/plain": {"type": "string"}}, cached=True),
                    "304": _NOT_MODIFIED,
                    "404": _problem("no checkpoint signed yet"),
                },
            }
        },
        "/checkpoints": {
            "get": {
                "operationId": "getCheckpoints",
                "summary": "The newest verified checkpoint of each origin this node follows",
                "responses": {
                    "200": _ok("gossip", {"application/json": _CHECKPOINTS}, cached=True),
                    "304": _NOT_MODIFIED,
                },
            }
        },
        "/proof/inclusion": {
            "get": {
                "operationId": "getInclusionProof",
                "summary": "An RFC 9162 inclusion proof (§5)",
                "parameters": [
                    _query("index", _COUNT, "the leaf index", required=True),
                    _query("size", _COUNT, "the tree size", required=True),
                ],
                "responses": {
                    "200": _ok("the proof", {"application/json": _HASHES}),
                    "400": _problem("not 0 <= index < size <= the log size"),
                },
            }
        },
        "/proof/consistency": {
            "get": {
                "operationId": "getConsistencyProof",
                "summary": "An RFC 9162 consistency proof (§5)",
                "parameters": [
                    _query("first", _COUNT, "the smaller tree size", required=True),
                    _query("second", _COUNT, "the larger tree size", required=True),
                ],
                "responses": {
                    "200": _ok("the proof", {"application/json": _HASHES}),
                    "400": _problem("not 0 < first <= second <= the log size"),
                },
            }
        },
        "/keys/{name}": {
            "get": {
                "operationId": "getKey",
                "summary": "A Multikey the node ever had, with its created and revoked times",
                "parameters": [_path("name", {"type": "string"}, "the key's name")],
                "responses": {
                    "200": _ok("the key", {ACTIVITY_JSON: _JSON_OBJECT}),
                    "404": missing,
                },
            }
        },
        "/objects": {
            "get": {
                "operationId": "listObjects",
                "summary": "Own and merged objects, filtered, in the order this node stored "
                "their current version (ascending received); cursor pagination",
                "parameters": _objects_parameters(),
                "responses": {
                    "200": _ok("one page", {"application/json": _ref("ObjectListing")}),
                    "400": _problem("a parameter is malformed; the problem names it"),
                },
            }
        },
        "/objects/by-id": {
            "get": {
                "operationId": "getObjectById",
                "summary": "Any object this node holds, own or merged, by its IRI",
                "parameters": [
                    _query("id", {"type": "string", "minLength": 1}, "its IRI", required=True)
                ],
                "responses": {
                    "200": _ok("the object", {"application/json": _ref("ObjectItem")}),
                    "400": _problem("id missing or given twice"),
                    "404": missing,
                },
            }
        },
        "/objects/{slug}": {
            "get": {
                "operationId": "getOwnObject",
                "summary": "The signed entry of this node's own object's current version",
                "parameters": [_path("slug", {"type": "string"}, "the last part of its IRI")],
                "responses": {
                    "200": _ok("the entry", {ACTIVITY_JSON: _ENTRY}, cached=True),
                    "304": _NOT_MODIFIED,
                    "400": _problem("the reserved slug by-id without one id parameter"),
                    "404": missing,
                },
            }
        },
        "/ns": {
            "get": {
                "operationId": "getVocabulary",
                "summary": "The exchange vocabulary",
                "responses": {
                    "200": _ok(
                        "the vocabulary",
                        {"text/turtle": {"type": "string"}, "text/html": {"type": "string"}},
                    ),
                    "406": _problem("neither Turtle nor HTML is acceptable"),
                },
            }
        },
        "/ns/v1": {
            "get": {
                "operationId": "getContext",
                "summary": "The exchange JSON-LD context",
                "responses": {"200": _ok("the context", {LD_JSON: _JSON_OBJECT})},
            }
        },
        "/schemas/{name}.schema.json": {
            "get": {
                "operationId": "getSchema",
                "summary": "A JSON Schema of the protocol",
                "parameters": [_path("name", {"type": "string"}, "common, case, event, ...")],
                "responses": {
                    "200": _ok("the schema", {"application/schema+json": _JSON_OBJECT}),
                    "404": missing,
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "getOpenAPI",
                "summary": "This document",
                "responses": {"200": _ok("OpenAPI 3.1", {"application/json": _JSON_OBJECT})},
            }
        },
        "/admin/objects": {
            "post": {
                "operationId": "publishObjects",
                "summary": "Publish one object or an array of them (the operator's API)",
                "security": [{"operatorToken": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"oneOf": [_JSON_OBJECT, {"type": "array"}]}}
                    },
                },
                "responses": {
                    "200": _ok("nothing changed", {"application/json": _PUBLISH_RESULTS}),
                    "201": _ok("published", {"application/json": _PUBLISH_RESULTS}),
                    "400": bad,
                    "401": unauthorized,
                    "409": _problem("a deleted object published again"),
                    "415": _problem("not JSON"),
                    "422": _problem("a draft fails its schema; errors name the pointers"),
                },
            }
        },
        "/admin/objects/{slug}": {
            "delete": {
                "operationId": "deleteObject",
                "summary": "Delete an own object (a Tombstone; the log keeps its entries)",
                "security": [{"operatorToken": []}],
                "parameters": [_path("slug", {"type": "string"}, "the last part of its IRI")],
                "responses": {
                    "200": _ok("deleted", {"application/json": _JSON_OBJECT}),
                    "401": unauthorized,
                    "404": missing,
                },
            }
        },
        "/admin/erasures": {
            "post": {
                "operationId": "eraseObject",
                "summary": "Erase an own object's content from the log (docs/decisions.md)",
                "security": [{"operatorToken": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["id", "reason"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "reason": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "201": _ok("erased", {"application/json": _JSON_OBJECT}),
                    "400": bad,
                    "401": unauthorized,
                    "404": missing,
                    "415": _problem("not JSON"),
                },
            }
        },
        "/inbox": {
            "post": {
                "operationId": "postInbox",
                "summary": "A partner's signed activity: Follow, Accept, Undo, a push (§6)",
                "description": "RFC 9421 HTTP Message Signatures (keyid of a partner's key).",
                "requestBody": {
                    "required": True,
                    "content": {
                        ACTIVITY_JSON: {"schema": _JSON_OBJECT},
                        LD_JSON: {"schema": _JSON_OBJECT},
                    },
                },
                "responses": {
                    "202": {"description": "accepted for processing"},
                    "400": _problem("not I-JSON or not an activity"),
                    "401": _problem("no valid HTTP signature"),
                    "403": _problem("the keyid is not a partner's"),
                    "411": _problem("no Content-Length"),
                    "413": _problem("the body is too large"),
                    "415": _problem(
                        "not application/activity+json or application/ld+json, or a content coding"
                    ),
                    "422": _problem("the activity breaks a rule"),
                    "429": _problem("too many requests; see Retry-After"),
                },
            }
        },
    }


_HTML: Schema = {"type": "string"}
_LANG = _query("lang", {"enum": ["nl", "en", "fr"]}, "the page language (kept in a cookie)")
_SPARQL_RESULTS = {
    "application/sparql-results+json": _JSON_OBJECT,
    "application/sparql-results+xml": {"type": "string"},
    "text/csv": {"type": "string"},
    "text/tab-separated-values": {"type": "string"},
    "text/turtle": {"type": "string"},
    "application/n-triples": {"type": "string"},
    LD_JSON: {},
}


def _page(operation_id: str, summary: str, parameters: list[Schema]) -> dict[str, Schema]:
    """A server-rendered HTML page of the portal or the dashboard."""
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "parameters": [_LANG, *parameters],
            "responses": {
                "200": _ok("the page", {"text/html": _HTML}),
                "400": _problem("a malformed query parameter"),
                "404": {
                    "description": "no such object",
                    "content": {"text/html": {"schema": _HTML}},
                },
            },
        }
    }


def _view_operations() -> dict[str, dict[str, Schema]]:
    """The merged view for people (portal), for the operator (dashboard) and SPARQL."""
    cursor = _query("after", {"type": "string", "maxLength": 200}, "the cursor of the next page")
    page = _query("page", {"type": "integer", "minimum": 1}, "the page number")
    login_form: Schema = {
        "application/x-www-form-urlencoded": {
            "schema": {"type": "object", "properties": {"token": {"type": "string"}}}
        }
    }
    to_login: Schema = {"description": "not logged in: to the login form (303)"}
    sparql_responses: dict[str, Schema] = {
        "200": _ok("the results (SELECT, ASK) or the graph (CONSTRUCT, DESCRIBE)", _SPARQL_RESULTS),
        "400": _problem("not a query, an update, SERVICE or LOAD, or too many results"),
        "406": _problem("none of the offered result formats is acceptable"),
        "415": _problem("a body that is neither a query nor a form"),
        "503": _problem("the time limit passed, or the view is still being built"),
    }
    query = _query("query", {"type": "string"}, "a SPARQL 1.1 query", required=True)
    return {
        "/portal": _page("portalHome", "The portal: the newest content of all partners", []),
        "/portal/cases": _page("portalCases", "Cases of this node and its partners", [cursor]),
        "/portal/events": _page("portalEvents", "Events, upcoming first", [page]),
        "/portal/practices": _page("portalPractices", "Best practices", [cursor]),
        "/portal/object": _page(
            "portalObject",
            "One object, own or merged",
            [_query("id", {"type": "string"}, "the object's IRI", required=True)],
        ),
        "/portal/about": _page("portalAbout", "About this node: keys, feed, checkpoint", []),
        "/sparql": {
            "get": {
                "operationId": "sparqlGet",
                "summary": "SPARQL 1.1 Protocol over the merged view, read-only",
                "parameters": [query],
                "responses": sparql_responses,
            },
            "post": {
                "operationId": "sparqlPost",
                "summary": "SPARQL 1.1 Protocol: a query in the body or a form",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/sparql-query": {"schema": {"type": "string"}},
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "properties": {"query": {"type": "string"}},
                            }
                        },
                    },
                },
                "responses": sparql_responses,
            },
        },
        "/admin/login": {
            "get": {
                "operationId": "loginForm",
                "summary": "The operator's login form",
                "responses": {"200": _ok("the form", {"text/html": _HTML})},
            },
            "post": {
                "operationId": "login",
                "summary": "Log in with the operator token: a session cookie",
                "requestBody": {"required": True, "content": login_form},
                "responses": {
                    "303": {"description": "logged in: to the dashboard"},
                    "401": {
                        "description": "a wrong token",
                        "content": {"text/html": {"schema": _HTML}},
                    },
                },
            },
        },
        "/admin/logout": {
            "post": {
                "operationId": "logout",
                "summary": "End the session",
                "responses": {"303": {"description": "to the login form"}},
            }
        },
        "/admin/dashboard": {
            "get": {
                "operationId": "dashboard",
                "summary": "Partners' health, rejections and equivocation alerts",
                "security": [{"operatorToken": []}, {"session": []}],
                "responses": {
                    "200": _ok("the dashboard", {"text/html": _HTML}),
                    "303": to_login,
                    "401": _problem("a wrong bearer token"),
                },
            }
        },
        "/admin/publish": {
            "get": {
                "operationId": "publishForm",
                "summary": "The publish form for a Case, Event or BestPractice",
                "security": [{"operatorToken": []}, {"session": []}],
                "parameters": [_query("type", {"type": "string"}, "the type to publish")],
                "responses": {
                    "200": _ok("the form", {"text/html": _HTML}),
                    "303": to_login,
                    "401": _problem("a wrong bearer token"),
                },
            },
            "post": {
                "operationId": "publishFromForm",
                "summary": "Publish from the form; schema errors are shown next to the fields",
                "security": [{"operatorToken": []}, {"session": []}],
                "requestBody": {"required": True, "content": login_form},
                "responses": {
                    "200": _ok("the result, or the form with its errors", {"text/html": _HTML}),
                    "303": to_login,
                    "401": _problem("a wrong bearer token"),
                    "403": _problem("the form's CSRF token is missing or wrong"),
                },
            },
        },
    }


_NO_STORE: Schema = {"Cache-Control": {"schema": {"const": "no-store"}}}


def _probe_operations() -> dict[str, dict[str, Schema]]:
    """Liveness, readiness and metrics (exchange/http/operations.py), for the operator's
    orchestrator and monitoring; never cached."""
    status: Schema = {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}},
    }
    return {
        "/healthz": {
            "get": {
                "operationId": "getHealth",
                "summary": "Liveness: 200 while the process serves HTTP",
                "responses": {
                    "200": {**_ok("alive", {"application/json": status}), "headers": _NO_STORE}
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "getReadiness",
                "summary": "Readiness: the store answers and the signing keys are loaded",
                "responses": {
                    "200": {**_ok("ready", {"application/json": status}), "headers": _NO_STORE},
                    "503": _problem("not ready: the store or a signing key is unusable"),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "getMetrics",
                "summary": "Prometheus metrics (text exposition format 0.0.4)",
                "description": "Needs the operator token unless the node's config sets "
                "[operations] metrics_token_required = false.",
                "security": [{"operatorToken": []}, {}],
                "responses": {
                    "200": {
                        **_ok("the metrics", {"text/plain": {"type": "string"}}),
                        "headers": _NO_STORE,
                    },
                    "401": _problem("the operator token is missing or wrong"),
                },
            }
        },
    }


def openapi_document(base_url: str, path_prefix: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the node at ``base_url`` (served under ``path_prefix``)."""
    server = base_url[: len(base_url) - len(path_prefix)] if path_prefix else base_url
    paths: dict[str, Any] = {}
    every = {**_operations(), **_view_operations(), **_probe_operations()}
    for path, operations in every.items():
        if path == "/.well-known/exchange":
            paths[path] = operations
        elif path == "/":
            paths[path_prefix or "/"] = operations
        else:
            paths[path_prefix + path] = operations
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "exchange node",
            "version": "1",
            "description": "A node of the exchange/1 protocol: its signed feed, checkpoints "
            "and proofs, the merged objects of its partners, and the operator's API. Every "
            "4xx/5xx answer is RFC 9457 application/problem+json. Every answer carries "
            "an X-Request-Id header: the request's own when it sent a sane one, else a new "
            "one (the id the node's log lines of that request carry).",
        },
        "servers": [{"url": server}],
        "paths": paths,
        "components": {
            "schemas": {
                "Problem": _PROBLEM,
                "ObjectItem": _ITEM,
                "ObjectListing": _LISTING,
                "NodeDocument": _NODE_DOCUMENT,
            },
            "securitySchemes": {
                "operatorToken": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "exchange_session"},
            },
        },
    }
