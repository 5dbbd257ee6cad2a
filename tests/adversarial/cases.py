"""The corpus: every case of every layer, in the order they run (see ``corpus.LAYERS``)."""

from __future__ import annotations

from tests.adversarial.corpus import Case
from tests.adversarial.entries import AUTHORISATION, JSON_LD, OBJECT_PROOF
from tests.adversarial.feeds import FEED
from tests.adversarial.origins import ORIGINS
from tests.adversarial.portal import PORTAL
from tests.adversarial.transport import HTTP_SIGNATURE, JSON

__all__ = ["CASES", "ISSUE_BULLETS"]

CASES: list[Case] = [
    *JSON,
    *JSON_LD,
    *OBJECT_PROOF,
    *HTTP_SIGNATURE,
    *AUTHORISATION,
    *FEED,
    *ORIGINS,
    *PORTAL,
]

#: Every hostile input issue 8 §1 names, with the cases that are it (docs/security.md
#: points at these names).
ISSUE_BULLETS: dict[str, tuple[str, ...]] = {
    "duplicate keys": ("json-duplicate-member", "json-duplicate-member-deep"),
    "NaN/Infinity": ("json-nan", "json-infinity"),
    "lone surrogates": ("json-lone-surrogate",),
    "invalid UTF-8 or a BOM": ("json-invalid-utf8", "json-byte-order-mark"),
    "integers beyond 2^53": ("json-integer-beyond-2-53", "json-integer-of-5000-digits"),
    "10,000-deep nesting": ("json-nesting-10000-deep",),
    "a million members": ("json-a-million-members", "feed-page-of-a-million-members"),
    "a 100 MB body": ("json-100-mb-body-with-length", "json-100-mb-body-chunked"),
    "a gzip bomb": ("json-gzip-bomb",),
    "trailing data": ("json-trailing-data",),
    "a non-object": ("json-top-level-array", "json-top-level-string"),
    "the wrong content type": ("json-wrong-content-type",),
    "an unknown or http: context": (
        "ld-unknown-context",
        "ld-http-context",
        "ld-message-unknown-context",
    ),
    "an inline context that redefines a term": (
        "ld-inline-context-redefines-a-term",
        "ld-message-inline-context",
    ),
    "@graph/@reverse/@included/@nest": ("ld-graph", "ld-reverse", "ld-included", "ld-nest"),
    "id together with @id": ("ld-id-and-at-id-differ",),
    "proof missing": ("proof-missing",),
    "another partner's key": (
        "proof-by-another-partners-key",
        "proof-keyid-of-partner-key-of-another",
    ),
    "a signature over non-canonical bytes": ("proof-over-non-canonical-bytes",),
    "a tampered field": ("proof-tampered-field",),
    "an unsupported cryptosuite": ("proof-unsupported-cryptosuite",),
    "the wrong proof purpose": ("proof-wrong-purpose",),
    "a key not listed for the actor": ("proof-key-not-listed",),
    "a malformed proofValue": ("proof-value-not-multibase", "proof-value-wrong-length"),
    "a proof @context that is not a prefix": ("proof-context-not-a-prefix",),
    "created in the future": ("proof-created-in-the-future",),
    "a digest mismatch": ("signature-digest-mismatch",),
    "content-digest or @target-uri not covered": (
        "signature-content-digest-not-covered",
        "signature-target-uri-not-covered",
    ),
    "a stale or future created": ("signature-created-stale", "signature-created-in-the-future"),
    "an exact replay": ("signature-exact-replay",),
    "a keyid naming a loopback or metadata address": (
        "keyid-loopback",
        "keyid-localhost-https",
        "keyid-cloud-metadata",
        "keyid-port-1",
    ),
    "algorithm confusion": (
        "signature-alg-hmac-with-public-key",
        "signature-alg-rsa",
        "signature-alg-missing",
    ),
    "an update or delete of another node's object": (
        "merge-update-of-another-nodes-object",
        "merge-delete-of-another-nodes-object",
    ),
    "an actor that does not match the object's id": (
        "merge-actor-not-the-origin",
        "merge-object-id-of-another-origin",
    ),
    "the resurrection of a tombstone": ("merge-tombstone-resurrected", "merge-tombstone-updated"),
    "a stale update": ("merge-stale-update",),
    "the same activity id with different bytes": (
        "merge-same-seq-other-bytes",
        "merge-activity-id-reused",
    ),
    "absurd dates": (
        "merge-published-in-year-9999",
        "merge-activity-published-in-year-9999",
        "merge-updated-before-published",
        "merge-leap-second",
        "merge-year-zero",
    ),
    "rollback": ("feed-rollback",),
    "a fork (same size, other root)": ("feed-fork-same-size-other-root",),
    "a gap": ("feed-gap",),
    "reordered entries": ("feed-reordered-entries",),
    "pages from an older checkpoint": ("feed-page-from-an-older-checkpoint",),
    "a next that loops": ("feed-next-loops",),
    "a server sending 1 byte per second": ("feed-one-byte-per-second",),
    "origins: case, default port, trailing dot, IDNA, userinfo, %2F": (
        "origin-scheme-and-host-case",
        "origin-default-port-https",
        "origin-trailing-dot",
        "origin-idna-unicode-and-punycode",
        "origin-userinfo-look-alike",
        "origin-encoded-slash-in-host",
    ),
    "partner text that tries to inject HTML or script": (
        "portal-script-tag",
        "portal-attribute-breakout-text",
    ),
}
