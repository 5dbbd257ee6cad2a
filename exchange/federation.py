"""Federation: partners, follows, pull (sync) and push (inbox and delivery).

The shell around :mod:`exchange.ingest` and :mod:`exchange.delivery`: it fetches from
configured partners only, verifies checkpoints with their pinned keys, merges through the
store, records every rejection, and halts an origin that equivocates.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import logging
import multiprocessing
import os
import random
import secrets
import socket
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from exchange import delivery, gossip
from exchange.canonical import parse
from exchange.checkpoint import NoteVerifier, open_note, parse_checkpoint
from exchange.config import log_origin
from exchange.errors import ExchangeError, IntegrityError, UsageError
from exchange.faults import fault_point
from exchange.http.client import Fetcher, FetchError
from exchange.ingest import (
    CheckpointClaim,
    Equivocation,
    GapError,
    HaltedOrigin,
    NotYetValid,
    check_overtaken,
    halted,
    plan_run,
    ready,
)
from exchange.merge import check_context, check_node_document, keyring_from_node_document
from exchange.node import Node, NotFound
from exchange.origins import OriginError, origin
from exchange.partners import OriginState, Partner, Rejection
from exchange.resources import CONTEXT_IRIS
from exchange.store.base import MergeView, MergeWrite, Store
from exchange.timestamps import format_timestamp
from exchange.verification import (
    Checked,
    PageCheck,
    changes_keys,
    check_entries,
    check_page,
    check_page_verdicts,
    leaf_or_none,
    page_check_from_verdicts,
)

__all__ = [
    "Contact",
    "Federation",
    "SyncReport",
    "fetch_node_document",
    "run_periodically",
    "verifier_pool",
]

_log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class SyncReport:
    partner: str
    merged_to: int
    checkpoint_size: int
    rejected: int
    error: str = ""


@dataclass(frozen=True, slots=True)
class Contact:
    """The outcome of this process's latest pull from or push to a partner (the operator
    dashboard's online/offline): ``reached`` is False when the partner could not be reached
    or answered with an error (a FetchError), True when it answered, even with bad content."""

    kind: str  # pull | push
    at: datetime
    reached: bool
    detail: str = ""


#: How often a merge is tried again when another worker merged the same origin meanwhile.
_MERGE_ATTEMPTS = 8


class _StateMoved(Exception):
    """Raised inside a merge's transaction: the origin's state is not the one its proofs
    were fetched for (another worker merged meanwhile); nothing was written."""


async def fetch_node_document(fetcher: Fetcher, base_url: str) -> dict[str, Any]:
    """A partner's node document, checked: schema, its own id, keys that parse."""
    document = await fetcher.get_json(base_url)
    if not isinstance(document, dict):
        raise IntegrityError(f"{base_url}: the node document is not a JSON object")
    try:
        check_node_document(document, base_url)
    except IntegrityError as error:
        raise IntegrityError(f"{base_url}: {error.detail}", issues=error.issues) from None
    return document


async def public_address(url: str) -> bool:
    """True when every address the URL's host resolves to is a public (global) one."""
    host = urlsplit(url).hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_global for a in addresses)


def partner_from_document(document: Mapping[str, Any], now: datetime) -> Partner:
    names = document.get("nameMap", {})
    name = next(iter(names.values()), document["id"]) if isinstance(names, Mapping) else ""
    return Partner(
        base_url=str(document["id"]),
        name=str(name),
        country=str(document["country"]),
        document=dict(document),
        added_at=format_timestamp(now),
    )


class Federation:
    """One node's federation work. Merges of an origin are serialised by a lock each."""

    def __init__(
        self,
        node: Node,
        fetcher: Fetcher,
        *,
        rng: random.Random | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.node = node
        self.fetcher = fetcher
        #: Worker processes for page verification (None: verify in this process).
        self.executor = executor
        self.pages_in_flight = 2 * max(1, getattr(executor, "_max_workers", 1))
        self.policy = delivery.DeliveryPolicy()
        self._rng = rng or random.Random()
        self._locks: dict[str, asyncio.Lock] = {}
        self.wake_delivery = asyncio.Event()
        self._pushing: set[str] = set()
        self._checkpoints: dict[str, tuple[str, str]] = {}  # partner -> (ETag, signed note)
        self._gossiped: dict[str, float] = {}  # origin -> loop time of its last gossip
        self.on_pull_request: Callable[[str], None] | None = None
        #: partner -> the latest pull or push outcome in this process (the dashboard's view).
        self.contacts: dict[str, Contact] = {}
        #: partner -> when a pull last verified its latest checkpoint in this process.
        self.checkpoint_verified_at: dict[str, datetime] = {}
        #: (partner, "sent" | "failed") -> pushes attempted in this process (the metrics).
        self.pushes: Counter[tuple[str, str]] = Counter()
        #: This process among the workers that share the store: it pushes to a partner only
        #: under a lease in this name (Store.lease_delivery), so no push is sent twice.
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

    @property
    def store(self) -> Store:
        return self.node.store

    def _lock(self, base_url: str) -> asyncio.Lock:
        return self._locks.setdefault(base_url, asyncio.Lock())

    # --- partners --------------------------------------------------------------------------

    async def candidate(self, base_url: str) -> dict[str, Any]:
        """The checked node document of a node that may become a partner."""
        if base_url == self.node.base_url:
            raise UsageError("a node cannot be its own partner")
        return await fetch_node_document(self.fetcher, base_url)

    async def pin(self, document: Mapping[str, Any]) -> Partner:
        """Pin a checked node document as a partner (keys, checkpoint key, inbox), keeping
        what this node already knows of it (follows, subscription)."""
        partner = partner_from_document(document, datetime.now(UTC))
        existing = await self.store.get_partner(partner.base_url)
        if existing is not None:
            partner = replace(
                existing,
                name=partner.name,
                country=partner.country,
                document=dict(document),
                approved=True,
            )
        await self.store.put_partner(partner)
        return partner

    async def add_partner(self, base_url: str) -> Partner:
        """Fetch a node's document and pin it as a partner."""
        return await self.pin(await self.candidate(base_url))

    async def partner(self, base_url: str) -> Partner:
        found = await self.store.get_partner(base_url)
        if found is None or not found.approved:
            raise NotFound(f"{base_url} is not a configured partner; run 'exchange partner add'")
        return found

    async def stranger(self, key_id: str) -> Partner | None:
        """A node that is not a partner asks to follow: fetch its one node document.

        Only when the operator opened follow requests; only an https node on a public
        address (protocol.md §6), unless unsafe_private_follow_requests is set.
        """
        base_url, separator, _ = key_id.partition("/keys/")
        if not separator:
            return None
        try:
            origin(base_url)  # user information, a bad host or port: never fetched
        except OriginError:
            return None
        settings = self.node.settings
        if not settings.unsafe_private_follow_requests:
            if not base_url.startswith("https://") or not await public_address(base_url):
                return None
        else:
            _log.warning("fetching the node document of stranger %s (unsafe setting)", base_url)
        try:
            document = await fetch_node_document(self.fetcher, base_url)
        except (IntegrityError, FetchError) as error:
            _log.info("follow request from %s: %s", base_url, error.detail)
            return None
        return replace(partner_from_document(document, datetime.now(UTC)), approved=False)

    async def queue_follow_request(self, partner: Partner, follow: Mapping[str, Any]) -> None:
        """Keep a verified Follow from a stranger for the operator's approval."""
        check_context(follow)
        if follow.get("actor") != partner.base_url or follow.get("object") != self.node.base_url:
            raise IntegrityError("a Follow names its sender as actor and this node as object")
        await self.store.put_partner(replace(partner, approved=False))
        _log.warning("%s asks to follow; approve with 'exchange partner approve'", partner.base_url)

    # --- follows ---------------------------------------------------------------------------

    def _activity(self, kind: str, obj: Any) -> dict[str, Any]:
        return {
            "@context": list(CONTEXT_IRIS),
            "id": f"{self.node.base_url}/activities/{secrets.token_hex(8)}",
            "type": kind,
            "actor": self.node.base_url,
            "object": obj,
        }

    async def _post(self, inbox: str, activity: Mapping[str, Any]) -> int:
        """POST a message signed by the node's current keys (re-read from the store)."""
        await self.node.refresh()
        return await self.fetcher.post_signed(inbox, activity)

    async def follow(self, base_url: str) -> Partner:
        """Send a Follow; the partner's Accept may arrive before this returns."""
        partner = await self.partner(base_url)
        if partner.following != "accepted":
            await self.store.put_partner(replace(partner, following="requested"))
        try:
            await self._post(partner.inbox, self._activity("Follow", base_url))
        except FetchError:
            await self.store.put_partner(partner)
            raise
        return await self.partner(base_url)

    async def unfollow(self, base_url: str) -> Partner:
        partner = await self.partner(base_url)
        follow = {"type": "Follow", "actor": self.node.base_url, "object": base_url}
        await self._post(partner.inbox, self._activity("Undo", follow))
        partner = replace(partner, following="none")
        await self.store.put_partner(partner)
        return partner

    async def accept_subscriber(self, partner: Partner, follow: Mapping[str, Any]) -> None:
        """Accept a partner's Follow: push from now on; it pulls the backlog itself."""
        size = await self.store.log_size()
        await self.store.put_partner(replace(partner, subscriber=True, approved=True))
        if await self.store.get_delivery(partner.base_url) is None:
            await self.store.put_delivery(
                delivery.initial(partner.base_url, size, datetime.now(UTC))
            )
        await self._post(partner.inbox, self._activity("Accept", dict(follow)))

    async def handle_activity(self, partner: Partner, activity: Mapping[str, Any]) -> None:
        """An inbox message from a verified partner (protocol.md §6)."""
        check_context(activity)
        kind = activity.get("type")
        if kind == "OrderedCollectionPage":
            await self.receive_push(partner, activity)
            return
        if activity.get("actor") != partner.base_url:
            raise IntegrityError(f"/actor: the message is signed by {partner.base_url}")
        if kind == "Follow":
            if activity.get("object") != self.node.base_url:
                raise IntegrityError(f"/object: a Follow must name {self.node.base_url}")
            await self.accept_subscriber(partner, activity)
        elif kind in ("Accept", "Reject"):
            followed = activity.get("object")
            target = followed.get("object") if isinstance(followed, Mapping) else None
            if isinstance(followed, Mapping) and followed.get("actor") != self.node.base_url:
                raise IntegrityError("/object: the Follow answered is not this node's")
            if target not in (None, partner.base_url):
                raise IntegrityError("/object: the Follow answered names another node")
            state = "accepted" if kind == "Accept" else "rejected"
            await self.store.put_partner(replace(partner, following=state))
            if kind == "Accept":
                self.request_pull(partner.base_url)
        elif kind == "Undo":
            undone = activity.get("object")
            if isinstance(undone, Mapping) and undone.get("type") == "Follow":
                await self.store.put_partner(replace(partner, subscriber=False))
        else:
            raise IntegrityError(f"/type: {kind!r} is not a message this inbox takes")

    def request_pull(self, base_url: str) -> None:
        if self.on_pull_request is not None:
            self.on_pull_request(base_url)

    # --- checkpoints -----------------------------------------------------------------------

    def _verify_note(self, partner: Partner, note: str) -> CheckpointClaim:
        verifier = NoteVerifier.parse(str(partner.document["checkpointKey"]))
        text, _ = open_note(note, [verifier])
        checkpoint = parse_checkpoint(text, log_origin(partner.base_url))
        return CheckpointClaim(checkpoint.size, checkpoint.root_hash, note)

    async def _consistency(self, partner: Partner, first: int, second: int) -> list[bytes]:
        if first == 0 or first == second:
            return []
        url = f"{partner.base_url}/proof/consistency?first={first}&second={second}"
        body = await self.fetcher.get_json(url)
        hashes = body.get("hashes") if isinstance(body, dict) else None
        if not isinstance(hashes, list) or len(hashes) > 128:
            raise IntegrityError(f"{url}: not a consistency proof")
        try:
            return [base64.b64decode(str(h), validate=True) for h in hashes]
        except ValueError:
            raise IntegrityError(f"{url}: a proof hash is not base64") from None

    async def _state(self, base_url: str) -> OriginState:
        return await self.store.origin_state(base_url) or OriginState(base_url)

    async def _halt(self, partner: Partner, error: IntegrityError, claim: CheckpointClaim) -> None:
        stamp = format_timestamp(datetime.now(UTC))
        rejection = Rejection(partner.base_url, None, error.detail, error.problem, stamp)

        def plan(view: MergeView) -> MergeWrite:
            # The state as it is now, in the transaction (another worker may have merged).
            state = view.origin_state(partner.base_url) or OriginState(partner.base_url)
            evidence = (state.checkpoint_note, claim.note)
            return MergeWrite(halted(state, error, evidence), rejections=[rejection])

        await self.store.merge(plan)
        _log.error("origin %s halted: %s", partner.base_url, error.detail)

    async def _record(self, partner: Partner, error: ExchangeError, seq: int | None = None) -> None:
        stamp = format_timestamp(datetime.now(UTC))
        await self.store.add_rejections(
            [Rejection(partner.base_url, seq, error.detail, error.problem, stamp)]
        )

    async def _merge_run(
        self,
        partner: Partner,
        checked: Sequence[Checked],
        start: int,
        claim: CheckpointClaim,
        *,
        pushed: bool = False,
    ) -> MergeWrite:
        """Merge a run of checked entries under ``claim``, fetching the proofs it needs.

        The proofs are fetched for the origin's state as read before the merge; another
        worker sharing the store may merge the same origin meanwhile. The merge then finds
        the state moved, writes nothing, and this reads it again and retries. A push
        (``pushed``) whose entries are merged already, under a newer checkpoint than its
        own, is a late duplicate and changes nothing; a pull that finds a checkpoint older
        than the verified one is a rollback."""
        for _ in range(_MERGE_ATTEMPTS):
            try:
                return await self._merge_once(partner, checked, start, claim, pushed=pushed)
            except _StateMoved:
                continue
            except Equivocation as error:
                await self._halt(partner, error, claim)
                raise
        raise FetchError(f"{partner.base_url}: the origin's state kept moving; try again")

    async def _merge_once(
        self,
        partner: Partner,
        checked: Sequence[Checked],
        start: int,
        claim: CheckpointClaim,
        *,
        pushed: bool,
    ) -> MergeWrite:
        state = await self._state(partner.base_url)
        if state.halted:
            raise HaltedOrigin(f"{partner.base_url} is halted: {state.halt_reason}")
        end = start + len(checked)
        if pushed and claim.size < state.checkpoint_size:
            if end <= state.next_seq:
                return MergeWrite(state)  # merged already (by another worker), under a newer one
            claim = await self._overtaken(partner, state, claim)
        if claim.size > state.checkpoint_size:
            previous = await self._consistency(partner, state.checkpoint_size, claim.size)
            claim = replace(claim, from_previous=previous)
        if state.next_seq < end < claim.size and start <= state.next_seq:
            claim = replace(claim, prefix=await self._consistency(partner, end, claim.size))
        now = datetime.now(UTC)

        def plan(view: MergeView) -> MergeWrite:
            current = view.origin_state(partner.base_url) or OriginState(partner.base_url)
            if (current.next_seq, current.checkpoint_size) != (
                state.next_seq,
                state.checkpoint_size,
            ):
                raise _StateMoved
            return plan_run(current, checked, start, claim, now=now, get_objects=view.get_objects)

        write = await self.store.merge(plan)
        fault_point("merge.after_commit")
        return write

    async def _overtaken(
        self, partner: Partner, state: OriginState, claim: CheckpointClaim
    ) -> CheckpointClaim:
        """A push whose checkpoint is older than the verified one, with entries not merged
        yet: a pull or a later push overtook it. Its checkpoint must be consistent with the
        verified one (else equivocation); its entries merge under the verified one."""
        verified = CheckpointClaim(
            state.checkpoint_size, state.checkpoint_root, state.checkpoint_note
        )
        proof = await self._consistency(partner, claim.size, verified.size)
        check_overtaken(claim, verified, proof)
        return verified

    def _check_inline(self, partner: Partner, items: Sequence[Any], start: int) -> list[Checked]:
        return check_entries(
            items,
            [leaf_or_none(item) for item in items],
            start,
            base_url=partner.base_url,
            keys=keyring_from_node_document(partner.document),
            now=self.node.settings.now(),
        )

    async def _merge_checked(
        self,
        partner: Partner,
        items: Sequence[Any],
        checked: Sequence[Checked],
        start: int,
        claim: CheckpointClaim,
        *,
        pushed: bool = False,
    ) -> tuple[Partner, int]:
        """Merge checked entries in runs that end at each Update of the node document, so
        that the entries after a key change are checked with the keys it gives (§1, §7)."""
        fault_point("verify.after")
        rejected = 0
        while checked:
            run, waiting = ready(checked)
            cut = next((k + 1 for k, item in enumerate(run) if changes_keys(item)), None)
            run = run if cut is None else run[:cut]
            if run:
                write = await self._merge_run(partner, run, start, claim, pushed=pushed)
                rejected += len(write.rejections)
            if cut is None:
                if waiting is not None:
                    raise NotYetValid(
                        f"{partner.base_url}: entry {waiting.seq} waits until this node's clock"
                        f" reaches it ({waiting.reason})"
                    )
                break
            items, checked, start = items[cut:], checked[cut:], start + cut
            if write.partner_document is not None:
                partner = await self.partner(partner.base_url)
                checked = self._check_inline(partner, items, start)
        return partner, rejected

    async def _check_page(self, partner: Partner, raw: bytes, start: int) -> PageCheck:
        """Parse and verify a page, in a worker process when the node has a pool."""
        keys = keyring_from_node_document(partner.document)
        now = self.node.settings.now()
        if self.executor is None:
            return check_page(raw, start, partner.base_url, keys, now)
        loop = asyncio.get_running_loop()
        verdicts = await loop.run_in_executor(
            self.executor, check_page_verdicts, raw, start, partner.base_url, keys, now
        )
        return page_check_from_verdicts(raw, verdicts, partner.base_url, keys)

    # --- pull ------------------------------------------------------------------------------

    async def sync(self, base_url: str, progress: Progress | None = None) -> SyncReport:
        """Catch up with a partner's log up to its current signed checkpoint."""
        partner = await self.partner(base_url)
        async with self._lock(base_url):
            try:
                report = await self._sync(partner, progress)
            except (IntegrityError, FetchError) as error:
                reached = not isinstance(error, FetchError)
                self.contacts[base_url] = Contact("pull", datetime.now(UTC), reached, error.detail)
                if not isinstance(error, Equivocation | HaltedOrigin | NotYetValid):
                    await self._record(partner, error)
                state = await self._state(base_url)
                report = SyncReport(
                    base_url, state.next_seq, state.checkpoint_size, 0, error.detail
                )
            else:
                moment = datetime.now(UTC)
                self.contacts[base_url] = Contact("pull", moment, True)
                self.checkpoint_verified_at[base_url] = moment
        halt = await self.gossip(partner)
        return replace(report, error=halt) if halt and not report.error else report

    async def _latest_note(self, partner: Partner) -> str:
        """The partner's checkpoint, revalidated with its ETag (304: nothing new)."""
        url = str(partner.document["checkpoint"])
        cached = self._checkpoints.get(partner.base_url)
        status, body, etag = await self.fetcher.get_bytes(
            url, accept="text/plain", etag=cached[0] if cached else None
        )
        if status == 304 and cached is not None:
            return cached[1]
        try:
            note = body.decode("utf-8")
        except UnicodeDecodeError:
            raise IntegrityError(f"{url}: the checkpoint is not UTF-8 text") from None
        if etag:
            self._checkpoints[partner.base_url] = (etag, note)
        return note

    async def _sync(self, partner: Partner, progress: Progress | None) -> SyncReport:
        note = await self._latest_note(partner)
        claim = self._verify_note(partner, note)
        state = await self._state(partner.base_url)
        page_size = int(partner.document.get("pageSize", 100))
        if claim.size <= state.next_seq:
            write = await self._merge_run(partner, [], state.next_seq, claim)
            return SyncReport(partner.base_url, write.origin.next_seq, claim.size, 0)
        outbox = str(partner.document["outbox"])
        first, last = state.next_seq // page_size, (claim.size - 1) // page_size
        pages = _PageWindow(self, partner, outbox, page_size, first, last, self.pages_in_flight)
        rejected = 0
        try:
            async for number, check in pages:
                start = number * page_size
                checked = self._checked_page(check, outbox, number, page_size, claim.size)
                items = list(check.page["orderedItems"])[: len(checked)]
                keys = keyring_from_node_document(partner.document)
                if check.keys != keys:  # checked ahead before a key change: check again
                    checked = self._check_inline(partner, items, start)
                partner, merged = await self._merge_checked(partner, items, checked, start, claim)
                rejected += merged
                if progress is not None:
                    progress(start + len(checked), claim.size)
        finally:
            await pages.close()
        state = await self._state(partner.base_url)
        return SyncReport(partner.base_url, state.next_seq, state.checkpoint_size, rejected)

    @staticmethod
    def _checked_page(
        check: PageCheck, outbox: str, number: int, page_size: int, claim_size: int
    ) -> list[Checked]:
        """protocol.md §4: the page is the one asked for, with the links the protocol gives."""
        page, url = check.page, f"{outbox}/{number}"
        if page.get("type") != "OrderedCollectionPage":
            raise IntegrityError(f"{url}: not an OrderedCollectionPage")
        if page.get("partOf") != outbox or page.get("id") != url:
            raise IntegrityError(f"{url}: the page does not belong to {outbox}")
        items = page.get("orderedItems", [])
        if page.get("startIndex") != number * page_size or len(items) > page_size:
            raise IntegrityError(f"{url}: startIndex or orderedItems do not fit page {number}")
        next_url = page.get("next")
        full = len(items) == page_size
        if (next_url is not None or full) and next_url != f"{outbox}/{number + 1}":
            raise IntegrityError(f"{url}: next must be {outbox}/{number + 1}, not {next_url!r}")
        start = number * page_size
        if start + len(items) < min(claim_size, start + page_size):
            raise IntegrityError(
                f"{url}: {len(items)} entries, fewer than checkpoint {claim_size} covers"
            )
        return list(check.checked[: max(0, claim_size - start)])

    # --- gossip (protocol.md §5) ----------------------------------------------------------

    async def gossip(self, origin: Partner) -> str:
        """Compare the newest checkpoint of ``origin`` this node verified with what the other
        partners hold of it (their ``/checkpoints``), at most once per gossip interval.

        Halts the origin when a partner holds a checkpoint signed by the origin that is not
        consistent with ours; returns the reason then, else "". A partner that does not
        answer, or answers garbage, is skipped; an origin that cannot give the proof needed
        leaves the question open until the next round. Never raises for either.
        """
        now = asyncio.get_running_loop().time()
        last = self._gossiped.get(origin.base_url)
        if last is not None and now - last < self.node.settings.gossip_interval_s:
            return ""
        self._gossiped[origin.base_url] = now
        state = await self._state(origin.base_url)
        if state.halted or not state.checkpoint_note:
            return ""
        others = [
            p
            for p in await self.store.list_partners()
            if p.approved and p.base_url not in (origin.base_url, self.node.base_url)
        ]
        held = await asyncio.gather(*(self._held(p, origin) for p in others))
        for gossiper, claims in zip(others, held, strict=True):
            for claim in claims:
                halt = await self._compare(origin, gossiper, claim)
                if halt:
                    return halt
        return ""

    async def _held(self, gossiper: Partner, origin: Partner) -> list[CheckpointClaim]:
        """The checkpoints of ``origin`` that ``gossiper`` holds and ``origin`` signed."""
        url = f"{gossiper.base_url}/checkpoints"
        try:
            _, body, _ = await self.fetcher.get_bytes(
                url, accept="application/json", max_bytes=gossip.MAX_CHECKPOINTS_BYTES
            )
            items = gossip.parse_checkpoints(parse(body), url)
        except (FetchError, IntegrityError) as error:
            _log.warning("gossip: skipping %s: %s", gossiper.base_url, error.detail)
            return []
        claims = []
        for item in items:
            if item.origin != origin.base_url:
                continue
            try:
                claims.append(self._verify_note(origin, item.note))
            except IntegrityError as error:
                _log.warning(
                    "gossip: %s holds a checkpoint of %s that does not verify: %s",
                    gossiper.base_url,
                    origin.base_url,
                    error.detail,
                )
        return claims

    async def _compare(self, origin: Partner, gossiper: Partner, theirs: CheckpointClaim) -> str:
        """Decide on one gossiped checkpoint under the origin's lock, so that the checkpoint
        compared is the one kept as evidence; halt the origin on equivocation."""
        async with self._lock(origin.base_url):
            state = await self._state(origin.base_url)
            if state.halted or not state.checkpoint_note:
                return ""
            mine = CheckpointClaim(
                state.checkpoint_size, state.checkpoint_root, state.checkpoint_note
            )
            decision = gossip.compare(mine, theirs)
            if decision.verdict == "need-proof":
                try:
                    proof = await self._consistency(origin, decision.first, decision.second)
                except (FetchError, IntegrityError) as error:
                    _log.info(
                        "gossip: %s holds checkpoint %d of %s; no proof from it (%s): try later",
                        gossiper.base_url,
                        theirs.size,
                        origin.base_url,
                        error.detail,
                    )
                    return ""
                decision = gossip.compare(mine, theirs, proof)
            if decision.verdict != "equivocation":
                return ""
            equivocation = Equivocation(
                f"{gossiper.base_url} holds checkpoint {theirs.size} signed by "
                f"{origin.base_url}, not consistent with verified checkpoint "
                f"{state.checkpoint_size}: {decision.reason}"
            )
            await self._halt(origin, equivocation, theirs)
            return equivocation.detail

    # --- push: receiving -------------------------------------------------------------------

    async def receive_push(self, partner: Partner, page: Mapping[str, Any]) -> None:
        """Merge a pushed page; a gap or an unproven checkpoint turns into a pull."""
        if page.get("partOf") != partner.document.get("outbox"):
            raise IntegrityError("/partOf: the page is not from the sender's feed")
        start, items, note = (
            page.get("startIndex"),
            page.get("orderedItems"),
            page.get("checkpoint"),
        )
        if not isinstance(start, int) or not isinstance(items, list) or not isinstance(note, str):
            raise IntegrityError("a push has startIndex, orderedItems and checkpoint")
        claim = self._verify_note(partner, note)
        async with self._lock(partner.base_url):
            try:
                checked = self._check_inline(partner, items, start)
                await self._merge_checked(partner, items, checked, start, claim, pushed=True)
            except GapError:
                self.request_pull(partner.base_url)
            except FetchError:
                # The proofs the push needs could not be fetched: the transport failed, not
                # the entries. Nothing is recorded against them; the pull tries again.
                self.request_pull(partner.base_url)
            except IntegrityError as error:
                if not isinstance(error, Equivocation | HaltedOrigin | NotYetValid):
                    await self._record(partner, error, start)
                    self.request_pull(partner.base_url)

    # --- push: delivering ------------------------------------------------------------------

    async def deliver_due(self, now: datetime | None = None) -> int:
        """One round of pushes to every subscriber that is due; the number attempted."""
        await self.node.refresh()  # sign pushes with the keys a CLI may have changed
        size = await self.store.log_size()
        latest = await self.store.latest_checkpoint()
        if latest is None:
            return 0
        checkpoint_size, note = latest
        pushes = []
        for partner in await self.store.list_partners():
            if not partner.subscriber or not partner.approved:
                continue
            if partner.base_url in self._pushing:
                continue  # a slow partner's push is still under way; the others go on
            moment = now or datetime.now(UTC)
            state = await self.store.get_delivery(partner.base_url)
            if state is None or not delivery.due(
                delivery.claim(state, moment), min(size, checkpoint_size), moment
            ):
                continue
            # Due: take the lease (another worker may hold it, or have pushed meanwhile).
            lease_end = moment + timedelta(seconds=3 * self.node.settings.push_timeout_s + 10)
            leased = await self.store.lease_delivery(
                partner.base_url, self.worker, moment, lease_end, _abandoned
            )
            if leased is None:
                continue
            state = delivery.claim(leased, moment)
            if not delivery.due(state, min(size, checkpoint_size), moment):
                await self.store.put_delivery(leased)  # let the lease go
                continue
            end = min(checkpoint_size, state.delivered + self.policy.max_entries_per_push)
            pushes.append(self._deliver(partner, state, end, note, moment))
        await asyncio.gather(*pushes)
        return len(pushes)

    async def _deliver(
        self, partner: Partner, state: delivery.DeliveryState, end: int, note: str, now: datetime
    ) -> None:
        self._pushing.add(partner.base_url)
        try:
            after = await self._push(partner, state, end, note, now)
            await self.store.put_delivery(after)
            reached = after.attempts == 0
            self.pushes[(partner.base_url, "sent" if reached else "failed")] += 1
            self.contacts[partner.base_url] = Contact(
                "push", datetime.now(UTC), reached, after.last_error
            )
        finally:
            self._pushing.discard(partner.base_url)

    async def _push(
        self, partner: Partner, state: delivery.DeliveryState, end: int, note: str, now: datetime
    ) -> delivery.DeliveryState:
        leaves = await self.store.entries(state.delivered, end)
        page = {
            "@context": list(CONTEXT_IRIS),
            "type": "OrderedCollectionPage",
            "partOf": f"{self.node.base_url}/feed",
            "startIndex": state.delivered,
            "orderedItems": [_loads(leaf) for leaf in leaves],
            "checkpoint": note,
        }
        try:
            await self.fetcher.post_signed(
                partner.inbox, page, timeout_s=self.node.settings.push_timeout_s
            )
        except FetchError as error:
            return delivery.failed(state, error.detail, now, self.policy, self._rng)
        return delivery.succeeded(state, end, now)


def _abandoned(worker: str) -> bool:
    """Whether ``worker`` (``host:pid:token``, see Federation.worker) was a process of this
    host that no longer runs: a node killed and started again does not wait for the lease
    its previous process held. A worker of another host is never judged dead here."""
    host, _, rest = worker.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # a process of another user runs under that pid
        return False
    return False


def _loads(leaf: bytes) -> Any:
    return json.loads(leaf)


@contextlib.contextmanager
def verifier_pool(workers: int) -> Iterator[Executor | None]:
    """Worker processes for page verification; spawned, not forked, since the node runs
    threads (the store's) that a fork would copy mid-flight."""
    if workers <= 0:
        yield None
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _PageWindow:
    """Pages ``first..last`` fetched and checked a few ahead, yielded in order."""

    def __init__(
        self,
        federation: Federation,
        partner: Partner,
        outbox: str,
        page_size: int,
        first: int,
        last: int,
        in_flight: int,
    ) -> None:
        self._federation, self._partner, self._outbox = federation, partner, outbox
        self._page_size, self._next, self._last = page_size, first, last
        self._in_flight = in_flight
        self._tasks: deque[tuple[int, asyncio.Task[PageCheck]]] = deque()

    async def _fetch_and_check(self, number: int) -> PageCheck:
        _, raw, _ = await self._federation.fetcher.get_bytes(f"{self._outbox}/{number}")
        fault_point("fetch.after")
        return await self._federation._check_page(self._partner, raw, number * self._page_size)

    def _fill(self) -> None:
        while len(self._tasks) < self._in_flight and self._next <= self._last:
            task = asyncio.create_task(self._fetch_and_check(self._next))
            self._tasks.append((self._next, task))
            self._next += 1

    def __aiter__(self) -> _PageWindow:
        return self

    async def __anext__(self) -> tuple[int, PageCheck]:
        self._fill()
        if not self._tasks:
            raise StopAsyncIteration
        number, task = self._tasks.popleft()
        check = await task
        self._fill()
        return number, check

    async def close(self) -> None:
        for _, task in self._tasks:
            task.cancel()
        await asyncio.gather(*(task for _, task in self._tasks), return_exceptions=True)
        self._tasks.clear()


async def run_periodically(
    action: Callable[[], Awaitable[object]], interval_s: float, wake: asyncio.Event | None = None
) -> None:
    """Run ``action`` forever, every ``interval_s`` or when ``wake`` is set; log failures."""
    while True:
        try:
            await action()
        except Exception:
            _log.exception("background task failed")
        if wake is None:
            await asyncio.sleep(interval_s)
            continue
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
        # that arrives as the event is set, and the task then never stops (a hung shutdown).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval_s):
                await wake.wait()
        wake.clear()
