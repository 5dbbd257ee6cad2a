"""Corpus layer: origins. URL pairs judged by :func:`exchange.origins.same_origin`, the one
function every authority check of the node goes through (protocol.md §7 rule 1, RFC 6454).

Mastodon CVE-2023-42451 compared origins as strings and let a look-alike pass. Each row
says whether the two URLs are the same origin (True), different ones (False), or whether a
URL is refused outright because it only ever serves to confuse a comparison (None: user
information, an encoded or escaped character in the host, no host, another scheme).
"""

from __future__ import annotations

from tests.adversarial.corpus import Case, OriginPair

__all__ = ["ORIGINS"]

#: (name, first URL, second URL, same origin?)
PAIRS: list[tuple[str, str, str, bool | None]] = [
    ("same-host-other-path", "https://a.example/x", "https://a.example/y/z", True),
    ("scheme-and-host-case", "HTTPS://A.Example/x", "https://a.example/x", True),
    ("default-port-http", "http://a.example:80/", "http://a.example/", True),
    ("default-port-https", "https://a.example:443/p", "https://a.example/q", True),
    ("http-port-443-is-not-https", "http://a.example:443/", "https://a.example/", False),
    ("other-port", "https://a.example:8443/", "https://a.example/", False),
    ("other-scheme", "http://a.example/", "https://a.example/", False),
    ("trailing-dot", "https://a.example./", "https://a.example/", True),
    (
        "idna-unicode-and-punycode",
        "https://bücher.example/",
        "https://xn--bcher-kva.example/",
        True,
    ),
    ("idna-upper-case-unicode", "https://BÜCHER.example/", "https://xn--bcher-kva.example/", True),
    ("idna-ideographic-full-stop", "https://a。example/", "https://a.example/", True),
    ("idna-fullwidth-letters", "https://ａ.example/", "https://a.example/", True),
    ("homograph-cyrillic-a", "https://аpple.example/", "https://apple.example/", False),
    ("suffix-look-alike", "https://a.example.evil.example/", "https://a.example/", False),
    ("prefix-look-alike", "https://evil-a.example/", "https://a.example/", False),
    ("subdomain", "https://sub.a.example/", "https://a.example/", False),
    ("loopback-name-and-address", "http://localhost/", "http://127.0.0.1/", False),
    ("ipv6-literal", "http://[::1]:8080/a", "http://[::1]:8080/b", True),
    ("ipv6-and-ipv4-loopback", "http://[::1]/", "http://127.0.0.1/", False),
    ("ipv6-uncompressed", "http://[0:0:0:0:0:0:0:1]/", "http://[::1]/", True),
    ("ipv4-trailing-dot", "http://127.0.0.1./", "http://127.0.0.1/", True),
    ("empty-port", "https://a.example:/", "https://a.example/", True),
    ("port-with-leading-zeros", "http://a.example:0080/", "http://a.example/", True),
    ("query-and-fragment-ignored", "https://a.example/?x=1#y", "https://a.example/", True),
    ("encoded-slash-in-path", "https://a.example/x%2F..%2Fy", "https://a.example/", True),
    ("userinfo-look-alike", "https://a.example@evil.example/", "https://a.example/", None),
    ("userinfo-with-password", "https://user:secret@a.example/", "https://a.example/", None),
    ("encoded-slash-in-host", "https://a.example%2F@evil.example/", "https://a.example/", None),
    ("encoded-dot-in-host", "https://a%2Eexample/", "https://a.example/", None),
    ("backslash-in-authority", "https://a.example\\@evil.example/", "https://a.example/", None),
    ("empty-host", "https:///a.example/", "https://a.example/", None),
    ("empty-label", "https://a..example/", "https://a.example/", None),
    ("ipv4-as-one-number", "http://2130706433/", "http://127.0.0.1/", None),
    ("ipv4-short-form", "http://127.1/", "http://127.0.0.1/", None),
    ("ipv4-octal", "http://0177.0.0.1/", "http://127.0.0.1/", None),
    ("ipv4-hex", "http://0x7f.0.0.1/", "http://127.0.0.1/", None),
    ("ipv6-zone-id", "http://[fe80::1%25eth0]/", "http://[fe80::1]/", None),
    ("ipv6-junk-after-bracket", "http://[::1]x/", "http://[::1]/", None),
    ("space-in-host", "http://a b.example/", "http://ab.example/", None),
    ("port-out-of-range", "https://a.example:99999/", "https://a.example/", None),
    ("not-http", "ftp://a.example/", "https://a.example/", None),
    ("javascript-url", "javascript:alert(1)//a.example/", "https://a.example/", None),
]

ORIGINS = [
    Case(
        f"origin-{name}",
        "origins",
        "origin" if same is None else None,
        None,
        OriginPair(first, second, same),
        f"{first} vs {second}",
    )
    for name, first, second, same in PAIRS
]
