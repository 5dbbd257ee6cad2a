"""The ``exchange`` command: the one place where errors become messages and exit codes.

Exit codes: 0 success; 1 the input is invalid (a proof, schema or I-JSON check failed);
2 the command could not run (bad usage, missing file, missing resource).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from exchange import __version__
from exchange.config import Settings, home_from, load_settings
from exchange.demo import run_demo
from exchange.documents import read_document, read_key_pair, write_json, write_secret_json
from exchange.errors import ExchangeError, IntegrityError, InvalidKey, UsageError
from exchange.federation import Federation, fetch_node_document, partner_from_document
from exchange.http.server import create_app
from exchange.keys import PublicKey, generate, public_key_from_multibase
from exchange.node import NotFound
from exchange.operator import (
    PartnerStatus,
    create_store,
    delete_object,
    init_node,
    list_objects,
    partner_statuses,
    publish_files,
    run_federation,
)
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


# --- node commands ----------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(home_from(args.home, os.environ), os.environ)


def _init(args: argparse.Namespace) -> int:
    home = home_from(args.home, os.environ)
    result = init_node(
        home, base_url=args.base_url, name=args.name, country=args.country, language=args.language
    )
    settings = result.settings
    asyncio.run(create_store(settings))
    print(f"created node {settings.name!r} ({settings.country}) in {home}")
    print(f"  base URL:     {settings.base_url}")
    print(f"  signing key:  {settings.key_id(settings.active_key)} ({result.key_path}, mode 0600)")
    print(f"  serve with:   exchange serve --home {home}")
    print(f"operator token (shown once, keep it safe): {result.token}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    host = args.host or settings.host
    port = args.port or settings.port
    app = create_app(settings)
    print(f"exchange node {settings.name!r} serving {settings.base_url} on {host}:{port}")
    web.run_app(app, host=host, port=port, print=None, handle_signals=True)
    print("exchange node stopped")
    return 0


def _publish(args: argparse.Namespace) -> int:
    paths = [Path(name) for name in args.files]
    outcomes = publish_files(_settings(args), paths, rebase_ids=args.rebase_ids)
    for outcome in outcomes:
        where = f", seq {outcome.seq}" if outcome.seq is not None else ""
        print(f"{outcome.action}: {outcome.id} (version {outcome.version}{where})")
    return 0


def _delete(args: argparse.Namespace) -> int:
    outcome = delete_object(_settings(args), args.id)
    print(f"deleted: {outcome.id} (seq {outcome.seq})")
    return 0


def _objects(args: argparse.Namespace) -> int:
    rows = list_objects(_settings(args), origin=args.origin, type_name=args.type)
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return 0
    for row in rows:
        print(f"{row['type']:<13} v{row['version']:<3} {row['id']}  {row['name']}")
    print(f"{len(rows)} object(s)")
    return 0


# --- federation commands ----------------------------------------------------------------


def _partner_add(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def work(federation: Federation) -> int:
        if args.url.rstrip("/") != args.url:
            raise UsageError(f"{args.url}: a base URL has no trailing slash")
        if args.url == settings.base_url:
            raise UsageError("a node cannot be its own partner")
        document = await fetch_node_document(federation.fetcher, args.url)
        partner = partner_from_document(document, datetime.now(UTC))
        print(f"{partner.name} ({partner.country}) at {partner.base_url}")
        for key in document["assertionMethod"]:
            print(f"  key {key['id']}: {key['publicKeyMultibase']}")
        print(f"  checkpoint key: {document['checkpointKey']}")
        if not args.yes and not _confirm("Pin these keys and add the partner?"):
            print("not added")
            return 1
        existing = await federation.store.get_partner(partner.base_url)
        if existing is not None:
            partner = replace(
                existing,
                name=partner.name,
                country=partner.country,
                document=document,
                approved=True,
            )
        await federation.store.put_partner(partner)
        print(f"added partner {partner.base_url}")
        return 0

    return run_federation(settings, work)


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise UsageError("not confirmed: run with --yes to add without asking")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _partner_list(args: argparse.Namespace) -> int:
    statuses = run_federation(_settings(args), partner_statuses)
    if args.json:
        rows = [_status_row(status) for status in statuses]
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return 0
    if not statuses:
        print("no partners; add one with 'exchange partner add URL'")
    for status in statuses:
        row = _status_row(status)
        print(f"{row['url']}  {row['name']} ({row['country']})")
        halted = f"; HALTED: {row['halted']}" if row["halted"] else ""
        print(
            f"  we follow: {row['following']}; merged up to seq {row['merged']} "
            f"of checkpoint {row['checkpoint']}{halted}"
        )
        if row["subscriber"]:
            print(
                f"  subscriber: delivered {row['delivered']}, backlog {row['backlog']}, "
                f"next retry {row['next_retry']}, breaker {row['breaker']}"
                + (f", last error: {row['last_error']}" if row["last_error"] else "")
            )
        elif not row["approved"]:
            print("  asked to follow this node; approve with 'exchange partner approve URL'")
    return 0


def _status_row(status: PartnerStatus) -> dict[str, Any]:
    partner, origin, delivery = status.partner, status.origin, status.delivery
    return {
        "url": partner.base_url,
        "name": partner.name,
        "country": partner.country,
        "approved": partner.approved,
        "following": partner.following,
        "merged": origin.next_seq if origin else 0,
        "checkpoint": origin.checkpoint_size if origin else 0,
        "halted": origin.halt_reason if origin and origin.halted else "",
        "subscriber": partner.subscriber,
        "delivered": delivery.delivered if delivery else None,
        "backlog": max(0, status.log_size - delivery.delivered) if delivery else None,
        "next_retry": format_timestamp(delivery.next_attempt_at) if delivery else None,
        "breaker": delivery.breaker if delivery else None,
        "last_error": delivery.last_error if delivery else "",
    }


def _partner_remove(args: argparse.Namespace) -> int:
    async def work(federation: Federation) -> int:
        if not await federation.store.remove_partner(args.url):
            raise NotFound(f"{args.url} is not a partner")
        print(f"removed partner {args.url}")
        return 0

    return run_federation(_settings(args), work)


def _partner_approve(args: argparse.Namespace) -> int:
    async def work(federation: Federation) -> int:
        partner = await federation.store.get_partner(args.url)
        if partner is None:
            raise NotFound(f"{args.url} has not asked to follow this node")
        follow = {"type": "Follow", "actor": partner.base_url, "object": federation.node.base_url}
        await federation.accept_subscriber(partner, follow)
        print(f"approved {args.url}: it now receives pushes")
        return 0

    return run_federation(_settings(args), work)


def _follow(args: argparse.Namespace) -> int:
    async def work(federation: Federation) -> int:
        partner = await federation.follow(args.url)
        print(f"sent Follow to {partner.inbox}; following: {partner.following}")
        return 0

    return run_federation(_settings(args), work)


def _sync(args: argparse.Namespace) -> int:
    async def work(federation: Federation) -> int:
        if args.url:
            targets = [args.url]
        else:
            targets = [
                p.base_url
                for p in await federation.store.list_partners()
                if p.following == "accepted"
            ]
        if not targets:
            print("nothing to sync: follow a partner first ('exchange follow URL')")
            return 0
        failed = 0
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=False,
            disable=args.quiet,
        ) as progress:
            for url in targets:
                task = progress.add_task(url, total=None)

                def advance(done: int, total: int, task: TaskID = task) -> None:
                    progress.update(task, completed=done, total=total)

                report = await federation.sync(url, advance)
                progress.update(task, completed=report.merged_to, total=report.checkpoint_size)
                if report.error:
                    failed += 1
                    progress.console.print(f"{url}: {report.error}")
        return 1 if failed else 0

    return run_federation(_settings(args), work)


def _rejections(args: argparse.Namespace) -> int:
    async def work(federation: Federation) -> int:
        for rejection in await federation.store.list_rejections(args.limit):
            seq = "" if rejection.seq is None else f" seq {rejection.seq}"
            print(
                f"{rejection.at} {rejection.origin}{seq} [{rejection.problem}] {rejection.reason}"
            )
        return 0

    return run_federation(_settings(args), work)


# --- demo ---------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    home = Path(args.home).resolve() if args.home else None
    asyncio.run(run_demo(args.base_port, home))
    return 0


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
        help="manage Ed25519 signing keys",
        formatter_class=formatter,
        epilog="Example:\n  exchange keys generate --out my-key.json",
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
    _add_node_commands(commands, formatter)
    return parser


def _add_node_commands(commands: Any, formatter: type[argparse.HelpFormatter]) -> None:
    home = argparse.ArgumentParser(add_help=False)
    home.add_argument("--home", help="the node's folder (default: $EXCHANGE_HOME)")

    init = commands.add_parser(
        "init",
        parents=[home],
        help="create a node: config, signing key, store and operator token",
        formatter_class=formatter,
        epilog="Example:\n  exchange init --home ./node --base-url http://127.0.0.1:8080 "
        "--name 'Samenwerkende overheid' --country NL",
    )
    init.add_argument("--base-url", required=True, help="public base URL B of the node")
    init.add_argument("--name", required=True, help="the node's name")
    init.add_argument("--country", required=True, help="ISO 3166-1 alpha-2 code, e.g. NL")
    init.add_argument("--language", default="en", help="language of the name (default: en)")
    init.set_defaults(run=_init)

    serve = commands.add_parser(
        "serve",
        parents=[home],
        help="run the node's HTTP server until SIGINT or SIGTERM",
        formatter_class=formatter,
        epilog="Example:\n  exchange serve --home ./node --port 8080",
    )
    serve.add_argument("--host", help="address to bind (default: from the config)")
    serve.add_argument("--port", type=int, help="port to bind (default: from the config)")
    serve.set_defaults(run=_serve)

    publish = commands.add_parser(
        "publish",
        parents=[home],
        help="create or update objects from JSON or YAML files (one atomic batch)",
        formatter_class=formatter,
        epilog="Example:\n  exchange publish --home ./node draft-case.yaml\n"
        "  exchange publish --home ./node --rebase-ids examples/*.json",
    )
    publish.add_argument("files", nargs="+", metavar="FILE", help="objects without signing fields")
    publish.add_argument(
        "--rebase-ids",
        action="store_true",
        help="move each id under this node's base URL (to import objects written for "
        "another node, such as examples/)",
    )
    publish.set_defaults(run=_publish)

    delete = commands.add_parser(
        "delete",
        parents=[home],
        help="delete an object (it becomes a Tombstone and is never revived)",
        formatter_class=formatter,
        epilog="Example:\n  exchange delete --home ./node http://127.0.0.1:8080/objects/case-x-1a2b3c4d",
    )
    delete.add_argument("id", help="the object's IRI (or the last part of it)")
    delete.set_defaults(run=_delete)

    objects = commands.add_parser(
        "objects",
        parents=[home],
        help="list the current objects in the node's store",
        formatter_class=formatter,
        epilog="Example:\n  exchange objects --home ./node --type Event",
    )
    objects.add_argument("--origin", help="only objects of this origin (a node's base URL)")
    objects.add_argument("--type", choices=["Case", "Event", "BestPractice"])
    objects.add_argument("--json", action="store_true", help="print JSON")
    objects.set_defaults(run=_objects)
    _add_federation_commands(commands, formatter, home)
    demo = commands.add_parser(
        "demo",
        help="three nodes (NL, BE, EU) on loopback that follow each other; Ctrl-C stops",
        formatter_class=formatter,
        epilog="Example:\n  exchange demo\n  exchange demo --base-port 9000 --home ./demo",
    )
    demo.add_argument("--base-port", type=int, default=8470, help="first of three ports")
    demo.add_argument("--home", help="keep the nodes here (default: a temporary folder)")
    demo.set_defaults(run=_demo)


def _add_federation_commands(
    commands: Any, formatter: type[argparse.HelpFormatter], home: argparse.ArgumentParser
) -> None:
    partner = commands.add_parser(
        "partner",
        help="manage partner nodes",
        formatter_class=formatter,
        epilog="Example:\n  exchange partner add https://vlaanderen.example.be/exchange",
    )
    actions = partner.add_subparsers(dest="partner_command", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add",
        parents=[home],
        formatter_class=formatter,
        help="fetch a node's document, show its keys, and pin them as a partner",
        epilog="Example:\n  exchange partner add --home ./node http://127.0.0.1:8081 --yes",
    )
    add.add_argument("url", help="the partner's base URL")
    add.add_argument("--yes", action="store_true", help="pin without asking")
    add.set_defaults(run=_partner_add)
    listing = actions.add_parser(
        "list",
        parents=[home],
        formatter_class=formatter,
        help="partners with their follow, merge and delivery state",
        epilog="Example:\n  exchange partner list --home ./node",
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=_partner_list)
    remove = actions.add_parser(
        "remove",
        parents=[home],
        formatter_class=formatter,
        help="forget a partner",
        epilog="Example:\n  exchange partner remove --home ./node http://127.0.0.1:8081",
    )
    remove.add_argument("url")
    remove.set_defaults(run=_partner_remove)
    approve = actions.add_parser(
        "approve",
        parents=[home],
        formatter_class=formatter,
        help="accept a waiting follow request",
        epilog="Example:\n  exchange partner approve --home ./node http://127.0.0.1:8081",
    )
    approve.add_argument("url")
    approve.set_defaults(run=_partner_approve)

    follow = commands.add_parser(
        "follow",
        parents=[home],
        formatter_class=formatter,
        help="send a signed Follow to a partner",
        epilog="Example:\n  exchange follow --home ./node http://127.0.0.1:8081",
    )
    follow.add_argument("url")
    follow.set_defaults(run=_follow)

    sync = commands.add_parser(
        "sync",
        parents=[home],
        formatter_class=formatter,
        help="catch up with followed partners' feeds now",
        epilog="Example:\n  exchange sync --home ./node\n  exchange sync --home ./node http://127.0.0.1:8081",
    )
    sync.add_argument("url", nargs="?", help="one partner (default: every followed partner)")
    sync.add_argument("--quiet", action="store_true", help="no progress bar")
    sync.set_defaults(run=_sync)

    rejections = commands.add_parser(
        "rejections",
        parents=[home],
        formatter_class=formatter,
        help="entries and checkpoints refused from partners, with the reason",
        epilog="Example:\n  exchange rejections --home ./node --limit 20",
    )
    rejections.add_argument("--limit", type=int, default=50)
    rejections.set_defaults(run=_rejections)


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


if __name__ == "__main__":
    sys.exit(main())
