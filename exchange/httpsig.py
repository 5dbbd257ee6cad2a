"""RFC 9421 HTTP Message Signatures and RFC 9530 Content-Digest for the inbox, pure.

protocol.md §6: a push to ``POST B/inbox`` is signed with Ed25519 over at least
``"@method" "@target-uri" "content-type" "content-digest"``, with the parameters
``created``, ``keyid`` (a key IRI of the sender's node document) and ``alg="ed25519"``.
Nothing here does I/O or reads a clock: the caller passes ``now``, the target URI it built
from its configured public base URL, and a ``resolve_key`` that looks keys up among the
configured partners (it never fetches the URL a request names).

Library decision. ``http-message-signatures`` 3.0 (pyauth) was evaluated and is not used
here: its verifier reads the wall clock (``datetime.now`` with a class-level 5 s skew), so
it cannot take ``now``; it refuses a request carrying several signatures unless a signed
``tag`` selects one, and then requires every selected one to verify, which is not our
selection rule; it verifies with ``cryptography`` key objects instead of
:class:`exchange.keys.PublicKey`; and it wants a request-shaped object. Working around
that means subclassing its verifier and parsing the headers a second time ourselves for
:func:`signature_key_id` -- two parsers that could disagree on the keyid. The subset we
need (a few derived components, plain header fields, no component parameters) is one
short function, so the signature base is built here per RFC 9421 §2.5, with ``http-sf``
(Mark Nottingham's RFC 9651 Structured Fields) for all parsing and serialisation: one
parser for :func:`signature_key_id` and :func:`verify_request`. ``http-sf`` rather than
``http-sfv``: the latter is marked deprecated by its author in favour of ``http-sf``,
and it silently keeps the last of duplicate keys, where ``http-sf`` reports them. The
tests check interoperability both ways against ``http-message-signatures``.

Rules worth knowing:

- Header names are case-insensitive; several lines of one field (or one name spelt in
  two cases) are combined in order with ``", "`` after trimming (RFC 9421 §2.1).
- Covered components: the derived ``@method`` (upper-cased), ``@target-uri``,
  ``@authority``, ``@scheme``, ``@path`` and ``@query``, and plain header fields.
  Component parameters (``sf``, ``key``, ``bs``, ``req``, ``name``) are not supported and
  fail verification. The target URI is normalised as RFC 9110 §4.2.3 does (lower-case
  scheme and host, no default port, empty path as ``/``) on both sides.
- Several signatures: they are taken in ``Signature-Input`` order and the first whose
  ``keyid`` ``resolve_key`` accepts (returns instead of raising InvalidKey) is the one
  verified; it must then pass every check, there is no falling back to a later one.
  :func:`signature_key_id` returns the keyid of the first signature, the one a sender puts
  first (a proxy appends its own).
- ``Content-Digest`` is always recomputed over the received body: every ``sha-256`` or
  ``sha-512`` member must match; unknown algorithms are ignored; when ``content-digest``
  is a required component the header must be present and carry ``sha-256``.
- Replay: a captured request replayed within the clock window verifies again. That is
  deliberate; pushes are idempotent and the merge layer (protocol.md §7) ignores entries
  it already holds, so no nonce cache is kept here.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import http_sf

from exchange.errors import InvalidKey, SignatureError, UsageError
from exchange.keys import KeyPair, PublicKey

__all__ = [
    "ALGORITHM",
    "MAX_SIGNATURES",
    "REQUIRED_COMPONENTS",
    "VerifiedSignature",
    "content_digest",
    "sign_request",
    "sign_request_by_keys",
    "signature_base",
    "signature_key_id",
    "signature_key_ids",
    "verify_request",
]

log = logging.getLogger(__name__)

#: The one algorithm protocol.md §6 allows (RFC 9421 §3.3.6).
ALGORITHM = "ed25519"
#: protocol.md §6: what every inbox request signature covers at least.
REQUIRED_COMPONENTS: tuple[str, ...] = ("@method", "@target-uri", "content-type", "content-digest")
#: At most this many signatures in one request; more is refused as malformed.
MAX_SIGNATURES = 8

_DERIVED = frozenset({"@method", "@target-uri", "@authority", "@scheme", "@path", "@query"})
_INTEGER_PARAMS = frozenset({"created", "expires"})
_STRING_PARAMS = frozenset({"alg", "keyid", "nonce", "tag"})
_DIGESTS: dict[str, Callable[[bytes], bytes]] = {
    "sha-256": lambda body: hashlib.sha256(body).digest(),
    "sha-512": lambda body: hashlib.sha512(body).digest(),
}
_DEFAULT_PORTS = {"http": "80", "https": "443"}
# RFC 9110 §5.1 field names (lower case, RFC 9421 §2.1) and §9.1 methods: tokens.
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
_METHOD = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Z]+")
# A field value that can go into the signature base: visible ASCII, SP and HTAB.
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e]*")

Params = Mapping[str, int | str]


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    """What a successful :func:`verify_request` established."""

    key_id: str
    created: datetime
    covered_components: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Signature:
    """One parsed member of ``Signature-Input`` (and its value from ``Signature``)."""

    label: str
    components: tuple[str, ...]
    params: Mapping[str, int | str]
    value: bytes = b""

    @property
    def key_id(self) -> str:
        key_id = self.params["keyid"]
        assert isinstance(key_id, str)  # checked by _parse_signature_input
        return key_id


# --- headers and structured fields -------------------------------------------------------


def _fields(headers: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased names; several lines of one field joined with ", " (RFC 9421 §2.1)."""
    lines: dict[str, list[str]] = {}
    for name, value in headers.items():
        lines.setdefault(name.lower(), []).append(value.strip(" \t"))
    return {name: ", ".join(values) for name, values in lines.items()}


def _parse_dictionary(field: str, value: str) -> http_sf.DictionaryType:
    """An RFC 9651 Dictionary; a repeated key anywhere in it is refused, not overwritten."""

    def duplicate(key: str, context: str) -> None:
        raise SignatureError(f"{field}: duplicate {context} key {key!r}")

    try:
        parsed = http_sf.parse(
            value.encode("ascii"), tltype="dictionary", on_duplicate_key=duplicate
        )
    except UnicodeEncodeError:
        raise SignatureError(f"{field}: malformed structured field (not ASCII)") from None
    except http_sf.StructuredFieldError as error:
        raise SignatureError(f"{field}: malformed structured field ({error})") from None
    assert isinstance(parsed, dict)
    return parsed


def _parse_signature_input(value: str) -> list[_Signature]:
    """RFC 9421 §4.1: each member an Inner List of component names, with parameters."""
    parsed = _parse_dictionary("Signature-Input", value)
    if not parsed:
        raise SignatureError("Signature-Input: no signature in it")
    if len(parsed) > MAX_SIGNATURES:
        raise SignatureError(f"Signature-Input: more than {MAX_SIGNATURES} signatures")
    signatures = []
    for label, member in parsed.items():
        where = f"Signature-Input {label!r}"
        if not (isinstance(member, tuple) and isinstance(member[0], list)):
            raise SignatureError(f"{where}: not an inner list of components")
        components: list[str] = []
        for item in member[0]:
            name, item_params = item if isinstance(item, tuple) else (item, {})
            if type(name) is not str:
                raise SignatureError(f"{where}: component {name!r} is not a string")
            if item_params:
                raise SignatureError(
                    f"{where}: component parameters are not supported ({name!r};"
                    f"{';'.join(item_params)})"
                )
            if name in components:
                raise SignatureError(f"{where}: component {name!r} is covered twice")
            components.append(name)
        params: dict[str, int | str] = {}
        for param, param_value in member[1].items():
            if (param in _INTEGER_PARAMS and type(param_value) is int) or (
                param in _STRING_PARAMS and type(param_value) is str
            ):
                params[param] = param_value
            elif param in _INTEGER_PARAMS | _STRING_PARAMS:
                kind = "an integer" if param in _INTEGER_PARAMS else "a string"
                raise SignatureError(f"{where}: parameter {param} is not {kind}")
            else:
                raise SignatureError(f"{where}: unknown parameter {param!r}")
        if not params.get("keyid"):
            raise SignatureError(f"{where}: keyid missing")
        signatures.append(_Signature(label, tuple(components), params))
    return signatures


def _parse_signatures(fields: Mapping[str, str]) -> list[_Signature]:
    """Both headers, with the same labels; every member well formed (RFC 9421 §4)."""
    for field in ("signature-input", "signature"):
        if field not in fields:
            raise SignatureError(f"{field.title()}: header missing")
    signatures = _parse_signature_input(fields["signature-input"])
    values = _parse_dictionary("Signature", fields["signature"])
    if set(values) != {signature.label for signature in signatures}:
        raise SignatureError("Signature: its labels are not those of Signature-Input")
    result = []
    for signature in signatures:
        member = values[signature.label]
        if not (isinstance(member, tuple) and type(member[0]) is bytes):
            raise SignatureError(f"Signature {signature.label!r}: not a byte sequence")
        result.append(
            _Signature(signature.label, signature.components, signature.params, member[0])
        )
    return result


def signature_key_ids(headers: Mapping[str, str]) -> tuple[str, ...]:
    """Every ``keyid`` in ``Signature-Input``, in its order; nothing is verified or fetched.

    Raises :class:`SignatureError` when the header is missing or malformed.
    """
    fields = _fields(headers)
    if "signature-input" not in fields:
        raise SignatureError("Signature-Input: header missing")
    return tuple(
        signature.key_id for signature in _parse_signature_input(fields["signature-input"])
    )


def signature_key_id(headers: Mapping[str, str]) -> str:
    """The ``keyid`` of the first signature, parsed only: nothing is verified or fetched.

    The receiver uses it to answer 403 for a key outside every known partner before it
    looks anything up (protocol.md §6). Raises :class:`SignatureError` when
    ``Signature-Input`` is missing or malformed.
    """
    return signature_key_ids(headers)[0]


# --- the signature base (RFC 9421 §2) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    """The parts of a target URI the derived components read (RFC 9421 §2.2)."""

    scheme: str
    authority: str
    path: str
    query: str

    @classmethod
    def parse(cls, target_uri: str) -> _Target:
        if not _FIELD_VALUE.fullmatch(target_uri) or any(c in target_uri for c in " \t#"):
            raise SignatureError(f"@target-uri: {target_uri!r} has characters a URI cannot have")
        parts = urlsplit(target_uri)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
            raise SignatureError(f"@target-uri: {target_uri!r} is not an absolute http(s) URI")
        try:
            port = parts.port
        except ValueError:
            raise SignatureError(f"@target-uri: {target_uri!r} has an invalid port") from None
        host = parts.hostname  # lower-cased, without the brackets of an IPv6 literal
        authority = f"[{host}]" if ":" in host else host
        if port is not None and str(port) != _DEFAULT_PORTS[scheme]:
            authority += f":{port}"  # RFC 9110 §4.2.3: no empty or default port
        return cls(scheme, authority, parts.path or "/", parts.query)

    @property
    def uri(self) -> str:
        return f"{self.scheme}://{self.authority}{self.path}" + (
            f"?{self.query}" if self.query else ""
        )


def _component_value(name: str, method: str, target: _Target, fields: Mapping[str, str]) -> str:
    if name.startswith("@"):
        derived = {
            "@method": method,  # RFC 9421 §2.2.1
            "@target-uri": target.uri,  # §2.2.2
            "@authority": target.authority,  # §2.2.3
            "@scheme": target.scheme,  # §2.2.4
            "@path": target.path,  # §2.2.6
            "@query": f"?{target.query}",  # §2.2.7
        }
        if name not in derived:
            raise SignatureError(f"{name}: derived component not supported")
        return derived[name]
    if not _FIELD_NAME.fullmatch(name):
        raise SignatureError(f"{name!r}: not a lower-case HTTP field name")
    if name not in fields:
        raise SignatureError(f"{name}: covered header missing from the request")
    value = fields[name]
    if not _FIELD_VALUE.fullmatch(value):
        raise SignatureError(f"{name}: header value has control or non-ASCII characters")
    return value


def _signature_params(components: Sequence[str], params: Params) -> str:
    """RFC 9421 §2.3: the serialised Inner List with its parameters."""
    inner: http_sf.InnerListType = ([(name, {}) for name in components], dict(params))
    return http_sf.ser({"p": inner}).removeprefix("p=")


def signature_base(
    *,
    method: str,
    target_uri: str,
    headers: Mapping[str, str],
    components: Sequence[str],
    params: Params,
) -> bytes:
    """RFC 9421 §2.5: the signature base for ``components`` and signature ``params``.

    Raises :class:`SignatureError` when a component cannot be built from the request.
    """
    method = method.upper()
    if not _METHOD.fullmatch(method):
        raise SignatureError(f"@method: {method!r} is not an HTTP method")
    target = _Target.parse(target_uri)
    fields = _fields(headers)
    if len(set(components)) != len(components):
        raise SignatureError("covered components: a component is listed twice")
    lines = []
    for name in components:
        if name == "@signature-params":
            raise SignatureError("@signature-params: cannot be a covered component (§2.3)")
        lines.append(f'"{name}": {_component_value(name, method, target, fields)}')
    lines.append(f'"@signature-params": {_signature_params(components, params)}')
    return "\n".join(lines).encode("ascii")


# --- Content-Digest (RFC 9530) -----------------------------------------------------------


def content_digest(body: bytes) -> str:
    """RFC 9530 §2: ``sha-256=:<base64 of SHA-256(body)>:``."""
    return http_sf.ser({"sha-256": hashlib.sha256(body).digest()})


def _check_content_digest(fields: Mapping[str, str], body: bytes, *, required: bool) -> None:
    """Recompute every known digest over the received bytes and compare (RFC 9530 §2)."""
    if "content-digest" not in fields:
        if required:
            raise SignatureError("Content-Digest: header missing")
        return
    checked = set()
    for algorithm, member in _parse_dictionary("Content-Digest", fields["content-digest"]).items():
        digest = _DIGESTS.get(algorithm)
        if digest is None:
            continue  # RFC 9530 §2: unknown algorithms are ignored
        if not (isinstance(member, tuple) and type(member[0]) is bytes):
            raise SignatureError(f"Content-Digest: {algorithm} is not a byte sequence")
        if not hmac.compare_digest(member[0], digest(body)):
            raise SignatureError(f"Content-Digest: {algorithm} does not match the body")
        checked.add(algorithm)
    if required and "sha-256" not in checked:
        raise SignatureError("Content-Digest: no sha-256 digest (protocol.md §6)")


# --- signing and verifying ---------------------------------------------------------------


def _check_now(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise UsageError("now must be a timezone-aware datetime")


def sign_request(
    *,
    method: str,
    target_uri: str,
    headers: Mapping[str, str],
    body: bytes,
    key: KeyPair,
    now: datetime,
    label: str = "sig1",
    components: Sequence[str] = REQUIRED_COMPONENTS,
) -> dict[str, str]:
    """Sign a request (protocol.md §6); return the headers to add to it.

    The result holds ``Content-Digest`` (over ``body``), ``Signature-Input`` and
    ``Signature``; they replace any of those in ``headers``. ``headers`` must carry every
    covered field but ``content-digest`` (the caller supplies ``Content-Type``). Raises
    :class:`UsageError` when the request cannot be signed as asked.
    """
    _check_now(now)
    if not key.id:
        raise UsageError("the signing key has no id to send as keyid")
    digest = content_digest(body)
    replaced = {"content-digest", "signature-input", "signature"}
    fields = {name: value for name, value in headers.items() if name.lower() not in replaced}
    fields["content-digest"] = digest
    params: dict[str, int | str] = {
        "created": math.floor(now.timestamp()),
        "keyid": key.id,
        "alg": ALGORITHM,
    }
    try:
        base = signature_base(
            method=method,
            target_uri=target_uri,
            headers=fields,
            components=components,
            params=params,
        )
        inner: http_sf.InnerListType = ([(name, {}) for name in components], dict(params))
        signature_input = http_sf.ser({label: inner})
        signature = http_sf.ser({label: key.sign(base)})
    except SignatureError as error:
        raise UsageError(f"cannot sign this request: {error.detail}") from error
    except ValueError as error:  # http_sf: a label that is not a structured-field key
        raise UsageError(f"cannot sign this request: label {label!r}: {error}") from error
    return {"Content-Digest": digest, "Signature-Input": signature_input, "Signature": signature}


def sign_request_by_keys(
    *,
    method: str,
    target_uri: str,
    headers: Mapping[str, str],
    body: bytes,
    keys: Sequence[KeyPair],
    now: datetime,
) -> dict[str, str]:
    """Sign a request once per key, labelled ``sig1``, ``sig2``, ... in the order given.

    A node signs with its active key first and then with its retired, unrevoked keys, so
    that a receiver still pinning an older node document verifies the first signature it
    knows (:func:`verify_request` skips keyids the receiver does not accept). At most
    :data:`MAX_SIGNATURES` keys: the first ones given.
    """
    if not keys:
        raise UsageError("no key to sign the request with")
    signed = [
        sign_request(
            method=method,
            target_uri=target_uri,
            headers=headers,
            body=body,
            key=key,
            now=now,
            label=f"sig{number}",
        )
        for number, key in enumerate(keys[:MAX_SIGNATURES], start=1)
    ]
    return {
        "Content-Digest": signed[0]["Content-Digest"],
        "Signature-Input": ", ".join(one["Signature-Input"] for one in signed),
        "Signature": ", ".join(one["Signature"] for one in signed),
    }


def _select(
    signatures: Sequence[_Signature], resolve_key: Callable[[str], PublicKey]
) -> tuple[_Signature, PublicKey]:
    """The first signature, in Signature-Input order, whose keyid the resolver accepts."""
    refused = []
    for signature in signatures:
        try:
            return signature, resolve_key(signature.key_id)
        except InvalidKey as error:
            refused.append(f"{signature.key_id!r}: {error.detail}")
    raise SignatureError("keyid: no key accepted for any signature (" + "; ".join(refused) + ")")


def _check_time(signature: _Signature, now: datetime, max_clock_skew_s: int) -> datetime:
    """``created`` within the clock window (protocol.md §6), ``expires`` not passed (§2.3)."""
    created = signature.params.get("created")
    if created is None:
        raise SignatureError("created: missing")
    assert isinstance(created, int)
    now_s = now.timestamp()
    if now_s - created > max_clock_skew_s:
        raise SignatureError(
            f"created: {now_s - created:.0f} s in the past, more than {max_clock_skew_s} s"
        )
    if created - now_s > max_clock_skew_s:
        raise SignatureError(
            f"created: {created - now_s:.0f} s in the future, more than {max_clock_skew_s} s"
        )
    expires = signature.params.get("expires")
    if expires is not None:
        assert isinstance(expires, int)
        if expires < created:
            raise SignatureError("expires: before created")
        if now_s > expires:  # the signer's own limit: no clock-skew allowance
            raise SignatureError("expires: the signature has expired")
    return datetime.fromtimestamp(created, UTC)


def verify_request(
    *,
    method: str,
    target_uri: str,
    headers: Mapping[str, str],
    body: bytes,
    resolve_key: Callable[[str], PublicKey],
    now: datetime,
    max_clock_skew_s: int = 300,
    required_components: Collection[str] = REQUIRED_COMPONENTS,
    unsafe_allow_missing_alg: bool = False,
) -> VerifiedSignature:
    """Verify a signed request (RFC 9421 §3.2, protocol.md §6) or raise SignatureError.

    ``target_uri`` is the URI the receiver built from its configured public base URL.
    ``resolve_key`` maps a keyid to a key of a configured partner, or raises InvalidKey;
    it must never fetch the URL it is given. ``unsafe_allow_missing_alg`` accepts a
    signature without ``alg`` (RFC 9421 allows that; protocol.md §6 does not); it exists
    for standards vectors and logs a warning when it lets a signature through.
    """
    _check_now(now)
    if not required_components:
        raise UsageError("required_components is empty: an empty policy fails")
    if max_clock_skew_s < 0:
        raise UsageError("max_clock_skew_s must not be negative")
    fields = _fields(headers)
    # 1. Signature and Signature-Input present and well formed (§4).
    signatures = _parse_signatures(fields)
    # 2. Choose the signature: the first whose keyid names a key we accept.
    signature, key = _select(signatures, resolve_key)
    # 3. The algorithm is Ed25519, named or not, and so is the key (§3.2 step 5, §7.3.6).
    alg = signature.params.get("alg")
    if alg is None and not unsafe_allow_missing_alg:
        raise SignatureError(f'alg: missing; protocol.md §6 requires alg="{ALGORITHM}"')
    if alg is not None and alg != ALGORITHM:
        raise SignatureError(f'alg: {alg!r} is not "{ALGORITHM}"')
    if not isinstance(key, PublicKey):
        raise SignatureError(f"keyid {signature.key_id!r}: the key is not an Ed25519 key")
    # 4. Everything our policy requires is covered (§3.2 step 4, §7.2.1).
    missing = [name for name in required_components if name not in signature.components]
    if missing:
        raise SignatureError(f"covered components: {', '.join(missing)} not covered")
    # 5. Created within the clock window, and the key valid at that moment.
    created = _check_time(signature, now, max_clock_skew_s)
    try:
        key.check_valid_at(created, now, max_clock_skew_s)
    except InvalidKey as error:
        raise SignatureError(f"keyid {signature.key_id!r}: {error.detail}") from error
    # 6. Content-Digest recomputed over the bytes received (RFC 9530).
    _check_content_digest(fields, body, required="content-digest" in required_components)
    # 7. Rebuild the signature base (§2.5) and check the signature (§3.3.6).
    base = signature_base(
        method=method,
        target_uri=target_uri,
        headers=fields,
        components=signature.components,
        params=signature.params,
    )
    if not key.verify(signature.value, base):
        raise SignatureError(f"Signature {signature.label!r}: does not verify")
    if alg is None:
        log.warning("accepted an HTTP signature without alg (unsafe_allow_missing_alg)")
    return VerifiedSignature(signature.key_id, created, signature.components)
