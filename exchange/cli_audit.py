"""``exchange`` commands of auditors: audit (a live node or a bundle), export --bundle, and
export --format (the merged view as RDF)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from exchange.audit import FINDING_KINDS, AuditReport
from exchange.auditor import (
    AuditUnavailable,
    audit_bundle,
    audit_node,
    export_bundle,
    read_trusted_checkpoints,
)
from exchange.cli_node import settings_from
from exchange.config import Settings
from exchange.errors import ExchangeError, UsageError
from exchange.rdf_view import EXPORT_FORMATS, export_view, node_facts
from exchange.store import store_for

__all__ = ["add_audit_commands", "format_report"]


def _audit(args: argparse.Namespace) -> int:
    trusted: list[str] = []
    if args.trusted_checkpoints:
        trusted = read_trusted_checkpoints(Path(args.trusted_checkpoints))
    target: str = args.target
    is_url = target.startswith(("http://", "https://"))
    if not is_url and not Path(target).is_file():
        raise AuditUnavailable(f"{target}: neither an http(s) URL nor a bundle file")
    quiet = args.json or not sys.stderr.isatty()
    with Progress(
        TextColumn("auditing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=quiet,
        transient=True,
    ) as bar:

        def factory(total: int) -> Callable[[int], None]:
            task = bar.add_task("entries", total=total)
            return lambda done: bar.advance(task, done)

        options: dict[str, Any] = {
            "trusted": trusted,
            "witnesses": args.witness or [],
            "workers": args.workers,
            "progress_factory": factory,
        }
        try:
            if is_url:
                report = asyncio.run(audit_node(target, **options))
            else:
                report = asyncio.run(audit_bundle(Path(target), **options))
        except AuditUnavailable:
            raise
        except ExchangeError as error:
            raise AuditUnavailable(error.detail) from None
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        print(format_report(report))
    return 0 if report.clean else 1


def format_report(report: AuditReport) -> str:
    """The human summary: what was read, what verified, and each finding."""
    lines = [f"audit of {report.node}", f"  source:      {report.source}"]
    activities = ", ".join(f"{n} {a}" for a, n in sorted(report.entries_by_activity.items()))
    lines.append(f"  entries:     {report.size} ({activities or 'none'})")
    for key, count in sorted(report.entries_by_key.items()):
        lines.append(f"  signed by:   {key}: {count} entries")
    if report.key_changes:
        changes = ", ".join(str(s) for s in report.key_changes)
        lines.append(f"  key changes: node document updated at entries {changes}")
    if report.checkpoint is not None:
        root = report.to_json()["checkpoint"]["rootHash"]
        lines.append(f"  checkpoint:  size {report.checkpoint.size}, root {root}")
    lines.append(f"  checkpoints: {report.checkpoints_checked} checked against the log")
    for erasure in report.erasures:
        redacted = ", ".join(str(s) for s in erasure.redacted) or "none"
        lines.append(
            f"  erasure:     entry {erasure.seq} ({erasure.published}) erased {erasure.object_id}"
            f" (entries {redacted}): {erasure.reason}"
        )
    if report.clean:
        lines.append(
            "CLEAN: every entry is signed by its node with a key valid at the time, and the "
            "log matches every signed checkpoint"
        )
        return "\n".join(lines)
    total = sum(report.counts.values())
    counts = ", ".join(f"{kind} {n}" for kind, n in sorted(report.counts.items()))
    lines.append(f"FINDINGS: {total} ({counts})")
    for finding in report.findings:
        where = f" entry {finding.seq}" if finding.seq is not None else ""
        lines.append(f"  [{finding.kind}]{where}: {finding.message}")
    listed = len(report.findings)
    if listed < total:
        lines.append(f"  ... and {total - listed} more (see --json)")
    return "\n".join(lines)


def _export(args: argparse.Namespace) -> int:
    if bool(args.bundle) == bool(args.format):
        raise UsageError(
            "give exactly one of --bundle FILE (an audit bundle) and --format "
            f"{'|'.join(EXPORT_FORMATS)} (the merged view as RDF)"
        )
    settings = settings_from(args)
    if args.format:
        return _export_rdf(settings, args.format, args.out, force=args.force)
    if args.out:
        raise UsageError("--out goes with --format; a bundle is written to --bundle FILE")
    summary = asyncio.run(export_bundle(settings, Path(args.bundle), force=args.force))
    print(
        f"wrote {summary.path}: {summary.size} entries, {summary.checkpoints} checkpoints, "
        f"{summary.bytes_written} bytes"
    )
    return 0


def _export_rdf(settings: Settings, format_name: str, out: str | None, *, force: bool) -> int:
    """The whole merged view as RDF, to ``out`` or standard output."""

    async def run(stream: BinaryIO) -> int:
        store = store_for(settings)
        await store.open()
        try:
            nodes = node_facts(
                settings.base_url,
                settings.country,
                settings.language,
                settings.name,
                await store.list_partners(),
            )
            return await export_view(store, nodes, format_name, stream)
        finally:
            await store.close()

    if out is None:
        asyncio.run(run(sys.stdout.buffer))
        sys.stdout.buffer.flush()
        return 0
    path = Path(out)
    if path.exists() and not force:
        raise UsageError(f"{path} exists; give --force to overwrite it")
    with open(path, "wb") as stream:
        count = asyncio.run(run(stream))
    print(f"wrote {path}: {count} objects as {format_name}", file=sys.stderr)
    return 0


def add_audit_commands(
    commands: Any, formatter: type[argparse.HelpFormatter], home: argparse.ArgumentParser
) -> None:
    audit = commands.add_parser(
        "audit",
        help="verify a node's whole history, live or from a bundle, without trusting it",
        formatter_class=formatter,
        description=(
            "Reads a whole log, checks every signature against the key valid at its time, "
            "the Merkle root against every signed checkpoint, consistency with trusted and "
            "gossiped checkpoints, key changes and erasures.\n"
            "Exit status: 0 clean, 1 findings, 2 the audit could not run."
        ),
        epilog=(
            "Findings:\n"
            + "".join(f"  {kind:<24}{meaning}\n" for kind, meaning in FINDING_KINDS.items())
            + "\nExamples:\n  exchange audit https://samenwerken.example.nl/exchange\n"
            "  exchange audit node.bundle.gz --json --trusted-checkpoints seen.txt"
        ),
    )
    audit.add_argument("target", metavar="URL|BUNDLE", help="a node's base URL or a bundle file")
    audit.add_argument("--json", action="store_true", help="print the report as JSON")
    audit.add_argument(
        "--trusted-checkpoints",
        metavar="FILE",
        help="signed notes of this node the auditor holds (text, or a JSON list)",
    )
    audit.add_argument(
        "--witness",
        action="append",
        metavar="URL",
        help="another node to ask for the checkpoints it verified (repeatable)",
    )
    audit.add_argument(
        "--workers", type=int, help="verifying processes (default: one per core; 1: none)"
    )
    audit.set_defaults(run=_audit)

    export = commands.add_parser(
        "export",
        parents=[home],
        help="write an offline audit bundle, or the merged view as RDF",
        formatter_class=formatter,
        epilog=(
            "Examples:\n  exchange export --bundle node.bundle.gz\n"
            "  exchange export --format turtle --out merged.ttl"
        ),
    )
    export.add_argument("--bundle", metavar="FILE", help="the bundle to write (.gz: compressed)")
    export.add_argument(
        "--format",
        choices=list(EXPORT_FORMATS),
        help="write every object, own and merged, and the origin nodes as RDF",
    )
    export.add_argument("--out", metavar="FILE", help="with --format: the file (default: stdout)")
    export.add_argument("--force", action="store_true", help="overwrite an existing file")
    export.set_defaults(run=_export)
