"""``exchange`` commands that run a node: init, serve, publish, delete, erase, objects, demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from exchange.config import Settings, home_from, load_settings
from exchange.demo import run_demo
from exchange.http.server import create_app
from exchange.logs import configure_logging
from exchange.operator import (
    create_store,
    delete_object,
    erase_object,
    init_node,
    list_objects,
    publish_files,
    revoke_key,
    rotate_key,
)

__all__ = ["add_key_commands", "add_node_commands", "settings_from"]


def settings_from(args: argparse.Namespace) -> Settings:
    """The node's settings, found through ``--home`` or ``EXCHANGE_HOME``."""
    return load_settings(home_from(args.home, os.environ), os.environ)


# --- node commands ----------------------------------------------------------------------


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
    settings = settings_from(args)
    host = args.host or settings.host
    port = args.port or settings.port
    configure_logging(settings.log_format)  # to stderr; one access line per request
    app = create_app(settings)
    print(f"exchange node {settings.name!r} serving {settings.base_url} on {host}:{port}")
    # access_log=None: the node's middleware writes the access lines (with request ids).
    web.run_app(app, host=host, port=port, print=None, handle_signals=True, access_log=None)
    print("exchange node stopped")
    return 0


def _publish(args: argparse.Namespace) -> int:
    paths = [Path(name) for name in args.files]
    outcomes = publish_files(settings_from(args), paths, rebase_ids=args.rebase_ids)
    for outcome in outcomes:
        where = f", seq {outcome.seq}" if outcome.seq is not None else ""
        print(f"{outcome.action}: {outcome.id} (version {outcome.version}{where})")
    return 0


def _delete(args: argparse.Namespace) -> int:
    outcome = delete_object(settings_from(args), args.id)
    print(f"deleted: {outcome.id} (seq {outcome.seq})")
    return 0


def _erase(args: argparse.Namespace) -> int:
    outcome = erase_object(settings_from(args), args.id, args.reason)
    redacted = ", ".join(str(seq) for seq in outcome.redacted) or "none left"
    print(f"erased: {outcome.id} (Delete at seq {outcome.seq}; redacted entries: {redacted})")
    return 0


def _objects(args: argparse.Namespace) -> int:
    rows = list_objects(
        settings_from(args),
        origin=args.origin,
        type_name=args.type,
        country=args.country,
        lang=args.lang,
        text=args.q,
    )
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return 0
    for row in rows:
        country = row["country"] or "??"
        print(f"{row['type']:<13} v{row['version']:<3} {country} {row['id']}  {row['name']}")
    print(f"{len(rows)} object(s)")
    return 0


# --- the node's keys ------------------------------------------------------------------------


def _rotate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    change = rotate_key(settings)
    print(
        f"rotated: {change.key_id} now signs entries and checkpoints ({change.key_path}, mode 0600)"
    )
    print(f"  node-document Update at seq {change.seq}, signed by {change.signed_by}")
    print(f"  checkpoint key: {change.document['checkpointKey']}")
    print(
        f"  {change.signed_by} is retired and still co-signs checkpoints until it is revoked "
        "(exchange keys revoke)"
    )
    return 0


def _revoke(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    change = revoke_key(settings, args.key, args.at)
    methods = list(change.document["assertionMethod"])
    position = next(i for i, m in enumerate(methods) if m["id"] == change.key_id)
    revoked = str(methods[position]["revoked"])
    print(f"revoked: {change.key_id} from {revoked}")
    print(f"  node-document Update at seq {change.seq}, signed by {change.signed_by}")
    if position + 1 < len(methods) and revoked < str(methods[position + 1]["created"]):
        print(
            f"  note: the key was retired at {methods[position + 1]['created']}; whatever it "
            f"signed from {revoked} on no longer verifies for partners that check it from now on"
        )
    return 0


def add_key_commands(
    key_commands: Any, formatter: type[argparse.HelpFormatter], home: argparse.ArgumentParser
) -> None:
    """``exchange keys rotate`` and ``exchange keys revoke``: the node's key lifecycle."""
    rotate = key_commands.add_parser(
        "rotate",
        parents=[home],
        help="give the node a new signing key; the old one is retired, not revoked",
        formatter_class=formatter,
        epilog="Example:\n  exchange keys rotate --home ./node",
    )
    rotate.set_defaults(run=_rotate)
    revoke = key_commands.add_parser(
        "revoke",
        parents=[home],
        help="revoke a retired key of the node from a given time (after a compromise)",
        formatter_class=formatter,
        epilog="Example:\n  exchange keys revoke 2026-1 --at now --home ./node\n"
        "  exchange keys revoke 2026-1 --at 2026-11-23T10:00:00Z --home ./node",
    )
    revoke.add_argument("key", metavar="KEY", help="key name (2026-1) or its IRI")
    revoke.add_argument(
        "--at",
        required=True,
        metavar="TIME",
        help="RFC 3339 time to the second (2026-11-23T10:00:00Z), or 'now': signatures "
        "made from then on are invalid",
    )
    revoke.set_defaults(run=_revoke)


# --- demo ---------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    home = Path(args.home).resolve() if args.home else None
    asyncio.run(run_demo(args.base_port, home))
    return 0


def add_node_commands(
    commands: Any, formatter: type[argparse.HelpFormatter]
) -> argparse.ArgumentParser:
    """Register the node commands; return the ``--home`` parent parser they share."""
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
        epilog="Example:\n  exchange serve --home ./node --port 8080\n"
        "  EXCHANGE_LOG_FORMAT=json exchange serve --home ./node   # JSON log lines",
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

    erase = commands.add_parser(
        "erase",
        parents=[home],
        help="erase an object's content from the log (personal data, legal order)",
        description="Replace every Create and Update of the object in the node's log by a "
        "Redacted entry (the Merkle tree and checkpoints stay valid) and append a Delete "
        "that records the reason. Partners purge the object when they merge the Delete.",
        formatter_class=formatter,
        epilog="Example:\n  exchange erase --home ./node case-x-1a2b3c4d "
        "--reason 'personal data published without consent'",
    )
    erase.add_argument("id", help="the object's IRI (or the last part of it)")
    erase.add_argument(
        "--reason",
        help="why the content is erased: plain text, at most 1000 characters (required)",
    )
    erase.set_defaults(run=_erase)

    objects = commands.add_parser(
        "objects",
        parents=[home],
        help="list the current objects in the node's store, own and merged",
        formatter_class=formatter,
        epilog="Example:\n  exchange objects --home ./node --type Event",
    )
    objects.add_argument("--origin", help="only objects of this origin (a node's base URL)")
    objects.add_argument("--type", choices=["Case", "Event", "BestPractice"])
    objects.add_argument("--country", help="only objects of nodes in this country (NL, BE...)")
    objects.add_argument("--lang", help="only objects with a text in this language (nl, fr...)")
    objects.add_argument("--q", help="free text: every word begins a word of a name or text")
    objects.add_argument("--json", action="store_true", help="print JSON")
    objects.set_defaults(run=_objects)
    demo = commands.add_parser(
        "demo",
        help="three nodes (NL, BE, EU) on loopback that follow each other; Ctrl-C stops",
        formatter_class=formatter,
        epilog="Example:\n  exchange demo\n  exchange demo --base-port 9000 --home ./demo",
    )
    demo.add_argument("--base-port", type=int, default=8470, help="first of three ports")
    demo.add_argument("--home", help="keep the nodes here (default: a temporary folder)")
    demo.set_defaults(run=_demo)
    return home
