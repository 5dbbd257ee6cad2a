"""The one error tree of exchange.

    ExchangeError                      root; never BaseException, so cancellation passes
    ├── IntegrityError                 the input is wrong; retrying it as it is never helps
    │   ├── InvalidJSON                not I-JSON: duplicate member, lone surrogate, NaN, big int...
    │   ├── SchemaError                fails its JSON Schema; carries pointer + message per issue
    │   ├── SignatureError             an RFC 9421 HTTP message signature does not verify (401)
    │   ├── ProofError                 a Data Integrity proof does not verify
    │   │   └── InvalidKey             a key is malformed, unknown or not valid at that time
    │   │       └── NotYetValid        signed a little ahead of this node's clock: valid later
    │   ├── MerkleProofError           an inclusion or consistency proof does not hold
    │   ├── CheckpointError            a signed note or checkpoint is malformed or unsigned
    │   ├── OriginError                a URL without a comparable origin, or another node's (rule 1)
    │   ├── ObjectRevived              a deleted object published again (409, rule 5)
    │   ├── MergeRejected              a verified entry that breaks a merge rule (4, 5) or is
    │   │                              dated after its own signature
    │   ├── Equivocation               two inconsistent signed checkpoints of one origin
    │   ├── Rollback                   a checkpoint smaller than one already verified
    │   ├── GapError                   entries after the next expected seq (pulled instead)
    │   └── HaltedOrigin               an origin halted for equivocation
    ├── UsageError                     the caller asked for something impossible (bad file, option)
    │   ├── BadRequest                 a malformed path or query parameter (400)
    │   │   └── InvalidParameter       one named query parameter is wrong (400, names it)
    │   ├── Unauthorized               the operator token is missing or wrong (401)
    │   ├── Forbidden                  a keyid that is no partner's (403)
    │   ├── NotFound                   an unknown resource (404)
    │   ├── KeyChangeRefused           a rotation or revocation the key state forbids (409)
    │   └── QueryRefused               a SPARQL request the endpoint does not run (400)
    ├── QueryTimeout                   a SPARQL query ran past its time limit, or no slot (503)
    ├── ViewBuilding                   the RDF view is still being built at start (503)
    ├── NotReady                       the node cannot serve yet: store or key unusable (503)
    ├── FetchError                     a partner unreachable or answering an error: retryable
    ├── StoreError                     the store is unusable (503)
    └── ResourceMissing                a shipped schema, context or vocabulary file is not found

Each class carries its RFC 9457 problem type IRI, title and HTTP status, and the CLI exit
code. The HTTP layer and the CLI map errors in one place each, reading these attributes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "PROBLEM_BASE",
    "BadRequest",
    "CheckpointError",
    "Equivocation",
    "ExchangeError",
    "FetchError",
    "Forbidden",
    "GapError",
    "HaltedOrigin",
    "IntegrityError",
    "InvalidJSON",
    "InvalidKey",
    "InvalidParameter",
    "Issue",
    "KeyChangeRefused",
    "MergeRejected",
    "MerkleProofError",
    "NotFound",
    "NotReady",
    "NotYetValid",
    "ObjectRevived",
    "OriginError",
    "ProofError",
    "QueryRefused",
    "QueryTimeout",
    "ResourceMissing",
    "Rollback",
    "SchemaError",
    "SignatureError",
    "StoreError",
    "Unauthorized",
    "UsageError",
    "ViewBuilding",
]

PROBLEM_BASE = "https://w3id.org/exchange/problems/"


@dataclass(frozen=True, slots=True)
class Issue:
    """One finding inside a document: an RFC 6901 JSON Pointer and a plain message."""

    pointer: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"pointer": self.pointer, "message": self.message}


class ExchangeError(Exception):
    """Root of every error exchange raises on purpose."""

    problem: str = "error"
    title: str = "Exchange error"
    status: int = 500
    exit_code: int = 2

    def __init__(self, detail: str, *, issues: tuple[Issue, ...] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.issues = issues

    @property
    def type_iri(self) -> str:
        return PROBLEM_BASE + self.problem

    def to_problem(self) -> dict[str, object]:
        """The RFC 9457 problem+json body for this error."""
        body: dict[str, object] = {
            "type": self.type_iri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.issues:
            body["errors"] = [issue.to_json() for issue in self.issues]
        return body


class IntegrityError(ExchangeError):
    """The input itself is wrong: never retried as it is."""

    problem = "integrity"
    title = "Integrity check failed"
    status = 422
    exit_code = 1


class InvalidJSON(IntegrityError):
    """Not I-JSON (RFC 7493), or not within the protocol's number rules."""

    problem = "invalid-json"
    title = "Not valid I-JSON"
    status = 400


class SchemaError(IntegrityError):
    """A document fails its JSON Schema; ``issues`` lists every failure with its pointer."""

    problem = "schema"
    title = "Document does not match its schema"
    status = 422


class SignatureError(IntegrityError):
    """An RFC 9421 HTTP message signature is missing, malformed, stale or does not verify.

    The detail names the check that failed. 401: the request is not authenticated.
    """

    problem = "http-signature"
    title = "HTTP signature does not verify"
    status = 401


class ProofError(IntegrityError):
    """A Data Integrity proof is missing, malformed or does not verify."""

    problem = "proof"
    title = "Proof does not verify"
    status = 422


class InvalidKey(ProofError):
    """A key is malformed, of the wrong kind, or not valid at the time it signed."""

    problem = "key"
    title = "Key is not valid"


class NotYetValid(InvalidKey):
    """A signature created further ahead of this node's clock than the tolerance allows, but
    by less than a wrong clock plausibly is: it becomes valid later. An entry so signed
    waits (its origin's merge stops before it) instead of being rejected for good."""

    problem = "not-yet-valid"
    title = "Signed ahead of this node's clock"


class MerkleProofError(IntegrityError):
    """A Merkle inclusion or consistency proof does not hold: the log is not what was signed."""

    problem = "merkle-proof"
    title = "Merkle proof does not verify"


class CheckpointError(IntegrityError):
    """A signed note or checkpoint is malformed, or no known key signed it."""

    problem = "checkpoint"
    title = "Checkpoint is not valid"


class UsageError(ExchangeError):
    """The caller asked for something that cannot be done (missing file, bad option)."""

    problem = "usage"
    title = "Bad request"
    status = 400
    exit_code = 2


class ResourceMissing(ExchangeError):
    """A schema, context or vocabulary file that ships with the package is missing."""

    problem = "resource-missing"
    title = "Shipped resource missing"
    status = 500
    exit_code = 2


class ObjectRevived(IntegrityError):
    """protocol.md §7 rule 5: a deleted object is never created or updated again."""

    problem = "object-deleted"
    title = "Object was deleted"
    status = 409


class FetchError(ExchangeError):
    """A partner could not be reached or answered with an error: retryable."""

    problem = "fetch"
    title = "Partner unreachable"
    status = 502
    exit_code = 3

    def __init__(self, detail: str, *, status_code: int | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code


class BadRequest(UsageError):
    problem = "bad-request"
    title = "Bad request"
    status = 400


class InvalidParameter(BadRequest):
    """One query parameter is malformed, unknown or out of range. The problem names it in
    the extension member ``parameter``."""

    problem = "invalid-parameter"
    title = "Invalid query parameter"

    def __init__(self, parameter: str, detail: str) -> None:
        super().__init__(detail)
        self.parameter = parameter

    def to_problem(self) -> dict[str, object]:
        return {**super().to_problem(), "parameter": self.parameter}


class Unauthorized(UsageError):
    problem = "unauthorized"
    title = "Operator token required"
    status = 401


class Forbidden(UsageError):
    problem = "forbidden"
    title = "Not a partner"
    status = 403


class Equivocation(IntegrityError):
    """Two validly signed checkpoints of one origin that are not consistent (§5)."""

    problem = "equivocation"
    title = "The origin signed inconsistent checkpoints"


class Rollback(IntegrityError):
    """A checkpoint smaller than one already verified for the origin."""

    problem = "rollback"
    title = "Checkpoint rolls the log back"


class GapError(IntegrityError):
    """Entries start after the next expected seq: the missing ones must be pulled (rule 2)."""

    problem = "gap"
    title = "Entries arrived after a gap"


class HaltedOrigin(IntegrityError):
    """Nothing of an origin halted for equivocation is merged."""

    problem = "origin-halted"
    title = "Origin halted"


class MergeRejected(IntegrityError):
    """An entry that verifies but breaks a merge rule (rules 4, 5), or whose dates cannot
    be true: after the moment its own proof says it was signed, or updated before it was
    published."""

    problem = "merge-rule"
    title = "Entry breaks a merge rule"


class StoreError(ExchangeError):
    """The store is unusable (corrupt, locked, from a newer version)."""

    problem = "store"
    title = "Storage failure"
    status = 503


class OriginError(IntegrityError):
    """A URL that has no well-defined origin, or that names another node."""

    problem = "origin"
    title = "Origin check failed"


class NotFound(UsageError):
    problem = "not-found"
    title = "Not found"
    status = 404


class KeyChangeRefused(UsageError):
    """A change of the node's keys that its key state forbids: revoking the active key
    (rotate first), an unknown key or one already revoked (protocol.md §1)."""

    problem = "key-change-refused"
    title = "Key change refused"
    status = 409


class QueryRefused(UsageError):
    """A SPARQL request the read-only endpoint does not run: a syntax error, an update,
    ``SERVICE`` or ``LOAD``, or more results than the node's limit."""

    problem = "sparql-refused"
    title = "SPARQL query refused"
    status = 400


class QueryTimeout(ExchangeError):
    """A SPARQL query ran past the node's time limit, or every query slot stayed busy for
    that long; retrying later, or a narrower query, may succeed."""

    problem = "sparql-timeout"
    title = "SPARQL query timed out"
    status = 503
    exit_code = 1


class ViewBuilding(ExchangeError):
    """The RDF view is still being built from the objects table (after a start)."""

    problem = "sparql-unavailable"
    title = "The RDF view is being built"
    status = 503
    exit_code = 1


class NotReady(ExchangeError):
    """The node cannot serve now (``GET B/readyz``): its store does not answer a trivial
    query, or its active signing key is not loaded."""

    problem = "not-ready"
    title = "Node not ready"
    status = 503
    exit_code = 1
