"""``exchange`` commands of federation: partner, follow, sync, rejections."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from exchange.cli_node import settings_from
from exchange.errors import UsageError
from exchange.federation import Federation, partner_from_document
from exchange.node import NotFound
from exchange.operator import PartnerStatus, partner_statuses, run_federation
from exchange.timestamps import format_timestamp

__all__ = ["add_federation_commands"]


# --- federation commands ----------------------------------------------------------------


def _partner_add(args: argparse.Namespace) -> int:
    settings = settings_from(args)

    async def work(federation: Federation) -> int:
        if args.url.rstrip("/") != args.url:
            raise UsageError(f"{args.url}: a base URL has no trailing slash")
        document = await federation.candidate(args.url)
        partner = partner_from_document(document, datetime.now(UTC))
        print(f"{partner.name} ({partner.country}) at {partner.base_url}")
        for key in document["assertionMethod"]:
            print(f"  key {key['id']}: {key['publicKeyMultibase']}")
        print(f"  checkpoint key: {document['checkpointKey']}")
        if not args.yes and not _confirm("Pin these keys and add the partner?"):
            print("not added")
            return 1
        partner = await federation.pin(document)
        print(f"added partner {partner.base_url}")
        return 0

    return run_federation(settings, work)


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise UsageError("not confirmed: run with --yes to add without asking")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _partner_list(args: argparse.Namespace) -> int:
    statuses = run_federation(settings_from(args), partner_statuses)
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

    return run_federation(settings_from(args), work)


def _partner_approve(args: argparse.Namespace) -> int:
    async def work(federation: Federation) -> int:
        partner = await federation.store.get_partner(args.url)
        if partner is None:
            raise NotFound(f"{args.url} has not asked to follow this node")
        follow = {"type": "Follow", "actor": partner.base_url, "object": federation.node.base_url}
        await federation.accept_subscriber(partner, follow)
        print(f"approved {args.url}: it now receives pushes")
        return 0

    return run_federation(settings_from(args), work)


def _follow(args: argparse.Namespace) -> int:
    async def work(federation: Federation) -> int:
        partner = await federation.follow(args.url)
        print(f"sent Follow to {partner.inbox}; following: {partner.following}")
        return 0

    return run_federation(settings_from(args), work)


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

    return run_federation(settings_from(args), work)


def _rejections(args: argparse.Namespace) -> int:
    async def work(federation: Federation) -> int:
        for rejection in await federation.store.list_rejections(args.limit):
            seq = "" if rejection.seq is None else f" seq {rejection.seq}"
            print(
                f"{rejection.at} {rejection.origin}{seq} [{rejection.problem}] {rejection.reason}"
            )
        return 0

    return run_federation(settings_from(args), work)


def add_federation_commands(
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
