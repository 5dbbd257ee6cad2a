"""The ``exchange`` command: the one place where errors become messages and exit codes.

Exit codes: 0 success; 1 the input is invalid (a proof, schema or I-JSON check failed);
2 the command could not run (bad usage, missing file, missing resource).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exchange import __version__
from exchange.cli_audit import add_audit_commands
from exchange.cli_federation import add_federation_commands
from exchange.cli_node import add_key_commands, add_node_commands
from exchange.documents import read_document, read_key_pair, write_json, write_secret_json
from exchange.errors import ExchangeError, IntegrityError, InvalidKey, UsageError
from exchange.keys import PublicKey, generate, public_key_from_multibase
from exchange.proof import did_key_resolver, sign_document, verify_document
from exchange.schema import check, schema_for_type
from exchange.timestamps import format_timestamp, parse_timestamp

__all__ = ["main"]

Command = Callable[[argparse.Namespace], int]


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


# --- keys generate -----------------------------------------------------------------------


def _keys_generate(args: argparse.Namespace) -> int:
    pair = generate(args.id)
    key_file = {
        "type": "Multikey",
        "id": pair.id,
        "publicKeyMultibase": pair.public_multibase,
        "secretKeyMultibase": pair.secret_multibase,
        "created": format_timestamp(_now()),
    }
    write_secret_json(Path(args.out), key_file, overwrite=args.force)
    print(f"wrote {args.out} (mode 0600)")
    print(f"verificationMethod: {pair.id}")
    print(f"publicKeyMultibase: {pair.public_multibase}")
    return 0


# --- sign --------------------------------------------------------------------------------


def _sign(args: argparse.Namespace) -> int:
    document = _read_object(Path(args.file))
    if "proof" in document:
        raise UsageError(f"{args.file}: already has a proof; sign the unsigned document")
    pair = read_key_pair(Path(args.key))
    created = _parse_time_option(args.created) if args.created else _now()
    signed = sign_document(document, pair, created)
    if args.out:
        write_json(Path(args.out), signed)
        print(f"signed {args.file} -> {args.out} with {pair.id}")
    else:
        sys.stdout.write(json.dumps(signed, indent=2, ensure_ascii=False) + "\n")
    return 0


# --- verify ------------------------------------------------------------------------------


def _resolver_with(key_option: str | None) -> Callable[[str], PublicKey]:
    if key_option is None:
        return did_key_resolver
    text = key_option
    path = Path(key_option)
    if path.is_file():
        key_document = read_document(path)
        if not isinstance(key_document, dict) or not isinstance(
            key_document.get("publicKeyMultibase"), str
        ):
            raise InvalidKey(f"{key_option}: no publicKeyMultibase in the key file")
        text = key_document["publicKeyMultibase"]

    def resolve(method: str) -> PublicKey:
        if method.startswith("did:key:"):
            return did_key_resolver(method)
        return public_key_from_multibase(method, text)

    return resolve


def _verify(args: argparse.Namespace) -> int:
    document = _read_object(Path(args.file))
    now = _parse_time_option(args.now) if args.now else datetime.now(UTC)
    verified = verify_document(document, _resolver_with(args.key), now)
    for proof in verified:
        print(
            f"valid: {args.file} is signed by {proof.verification_method} "
            f"at {format_timestamp(proof.created)} ({proof.proof_purpose})"
        )
    return 0


# --- validate ----------------------------------------------------------------------------


def _schema_name_of(document: dict[str, Any]) -> str:
    kind = document.get("type")
    if kind in ("Create", "Update", "Delete", "Redacted"):
        return "entry"
    if kind == "Service":
        return "node"
    return schema_for_type(kind)


def _validate(args: argparse.Namespace) -> int:
    failed = 0
    for name in args.files:
        try:
            document = _read_object(Path(name))
            schema_name = args.schema or _schema_name_of(document)
            check(document, schema_name)
        except IntegrityError as error:
            failed += 1
            if error.issues:
                for issue in error.issues:
                    print(f"{name}: {issue.pointer or '/'}: {issue.message}")
            else:
                print(f"{name}: {error.detail}")
        else:
            print(f"{name}: valid ({document.get('type', schema_name)})")
    return 1 if failed else 0


# --- shared ------------------------------------------------------------------------------


def _read_object(path: Path) -> dict[str, Any]:
    document = read_document(path)
    if not isinstance(document, dict):
        raise IntegrityError(f"{path}: the document must be a JSON object")
    return document


def _parse_time_option(text: str) -> datetime:
    try:
        return parse_timestamp(text)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="exchange",
        description="Federated, signed exchange of cases, events and best practices.",
        epilog="Example:\n  exchange verify signed.json",
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"exchange {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    keys = commands.add_parser(
        "keys",
        help="manage Ed25519 signing keys: key files, and the node's key rotation",
        formatter_class=formatter,
        epilog="Example:\n  exchange keys generate --out my-key.json\n"
        "  exchange keys rotate --home ./node",
    )
    key_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    generate_cmd = key_commands.add_parser(
        "generate",
        help="create a new Ed25519 key file (Multikey, mode 0600)",
        formatter_class=formatter,
        epilog=(
            "Example:\n  exchange keys generate --out my-key.json\n"
            "  exchange keys generate --out node-key.json --id https://node.example/keys/2026-1"
        ),
    )
    generate_cmd.add_argument("--out", required=True, help="key file to write (never overwritten)")
    generate_cmd.add_argument(
        "--id", help="verification method IRI of the key (default: its did:key)"
    )
    generate_cmd.add_argument("--force", action="store_true", help="overwrite an existing file")
    generate_cmd.set_defaults(run=_keys_generate)

    sign = commands.add_parser(
        "sign",
        help="add an eddsa-jcs-2022 Data Integrity proof to a JSON document",
        formatter_class=formatter,
        epilog="Example:\n  exchange sign examples/event-reuring-cafe-115.json --key my-key.json "
        "--out signed.json",
    )
    sign.add_argument("file", help="unsigned JSON or YAML document")
    sign.add_argument("--key", required=True, help="key file made by 'exchange keys generate'")
    sign.add_argument("--out", help="write the signed document here (default: standard output)")
    sign.add_argument("--created", help="proof time, RFC 3339 (default: now)")
    sign.set_defaults(run=_sign)

    verify = commands.add_parser(
        "verify",
        help="verify the Data Integrity proof(s) of a document; exit 1 if invalid",
        formatter_class=formatter,
        epilog="Example:\n  exchange verify signed.json\n"
        "  exchange verify entry.json --key z6Mk...   (a key that is not a did:key)",
    )
    verify.add_argument("file", help="signed JSON document")
    verify.add_argument(
        "--key",
        help="public key (z6Mk... or a key file) for a verificationMethod that is not a did:key",
    )
    verify.add_argument("--now", help="verify as of this RFC 3339 time (default: now)")
    verify.set_defaults(run=_verify)

    validate = commands.add_parser(
        "validate",
        help="check documents against the exchange JSON Schemas",
        formatter_class=formatter,
        epilog="Example:\n  exchange validate examples/*.json\n"
        "  exchange validate draft.yaml --schema event",
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="JSON or YAML documents")
    validate.add_argument(
        "--schema",
        choices=["case", "event", "best-practice", "object", "entry", "node"],
        help="schema to use (default: chosen by the document's type)",
    )
    validate.set_defaults(run=_validate)
    home = add_node_commands(commands, formatter)
    add_key_commands(key_commands, formatter, home)
    add_federation_commands(commands, formatter, home)
    add_audit_commands(commands, formatter, home)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the single place where an ExchangeError becomes an exit code."""
    args = _parser().parse_args(argv)
    run: Command = args.run
    try:
        return run(args)
    except IntegrityError as error:
        if args.command == "verify":
            print(f"invalid: {args.file}: {error.detail}")
        else:
            print(f"exchange: error: {error.detail}", file=sys.stderr)
        return error.exit_code
    except ExchangeError as error:
        print(f"exchange: error: {error.detail}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `exchange objects | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
