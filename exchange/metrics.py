"""The node's metrics as data, and their Prometheus text exposition (format 0.0.4).

Pure: a scrape reads the store and the federation's in-process counters (the shell,
:mod:`exchange.http.operations`) into a :class:`Snapshot`; :func:`snapshot_families` turns
it into metric families and :func:`render` into text. Label values are partner and origin
base URLs (bounded by the partners the operator approved), object types, problem types,
breaker states and the HTTP routes of the app: never anything a request can choose freely.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from exchange.delivery import STATES, DeliveryState
from exchange.partners import OriginState, Partner
from exchange.store.base import Counts

__all__ = [
    "CONTENT_TYPE",
    "DURATION_BUCKETS_S",
    "Family",
    "LatencyHistogram",
    "Sample",
    "Snapshot",
    "render",
    "snapshot_families",
    "status_class",
]

#: The media type of the text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Upper bounds of the request-duration histogram's buckets, in seconds (+Inf is implied).
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
KINDS = ("counter", "gauge", "histogram")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Sample:
    """One line of a family: ``name + suffix{labels} value`` (suffix: a histogram's
    ``_bucket``, ``_sum`` or ``_count``)."""

    labels: Labels
    value: float
    suffix: str = ""

    def __post_init__(self) -> None:
        for name, _ in self.labels:
            if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
                raise ValueError(f"{name!r} is not a label name")


@dataclass(frozen=True, slots=True)
class Family:
    """A metric family: its HELP and TYPE lines and its samples."""

    name: str
    kind: str  # one of KINDS
    help: str
    samples: Sequence[Sample] = field(default=())

    def __post_init__(self) -> None:
        if not _METRIC_NAME.fullmatch(self.name):
            raise ValueError(f"{self.name!r} is not a metric name")
        if self.kind not in KINDS:
            raise ValueError(f"unknown metric type {self.kind!r}")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _sample_line(name: str, sample: Sample) -> str:
    labels = ",".join(f'{key}="{_escape_label(value)}"' for key, value in sample.labels)
    return f"{name}{sample.suffix}{'{' + labels + '}' if labels else ''} {_number(sample.value)}"


def render(families: Iterable[Family]) -> str:
    """The text exposition of ``families``: each one's HELP and TYPE, then its samples."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        lines.extend(_sample_line(family.name, sample) for sample in family.samples)
    return "\n".join(lines) + "\n"


def status_class(status: int) -> str:
    """``2xx``, ``4xx`` ...: the status label of the request histogram."""
    return f"{status // 100}xx"


class LatencyHistogram:
    """Request durations by label set, cumulative per bucket (in-process; the event loop
    is its only writer)."""

    def __init__(self, buckets_s: Sequence[float] = DURATION_BUCKETS_S) -> None:
        if list(buckets_s) != sorted(set(buckets_s)) or not buckets_s:
            raise ValueError("histogram buckets must be distinct and ascending")
        self.buckets_s = tuple(buckets_s)
        #: labels -> (count per bucket, not cumulative, +Inf last; sum of seconds)
        self._series: dict[Labels, tuple[list[int], float]] = {}

    def observe(self, labels: Labels, seconds: float) -> None:
        counts, total = self._series.get(labels, ([0] * (len(self.buckets_s) + 1), 0.0))
        index = next(
            (i for i, bound in enumerate(self.buckets_s) if seconds <= bound), len(self.buckets_s)
        )
        counts[index] += 1
        self._series[labels] = (counts, total + seconds)

    def family(self, name: str, help_text: str) -> Family:
        samples: list[Sample] = []
        bounds = [_number(bound) for bound in self.buckets_s] + ["+Inf"]
        for labels, (counts, total) in sorted(self._series.items()):
            running = 0
            for bound, count in zip(bounds, counts, strict=True):
                running += count
                samples.append(Sample((*labels, ("le", bound)), running, "_bucket"))
            samples.append(Sample(labels, total, "_sum"))
            samples.append(Sample(labels, running, "_count"))
        return Family(name, "histogram", help_text, tuple(samples))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one scrape read: the store's state and the federation's in-process counts."""

    log_size: int
    counts: Counts
    partners: Sequence[Partner]
    origins: Sequence[OriginState]
    deliveries: Sequence[DeliveryState]
    #: partner -> reachable by its latest pull or push (the dashboard's online/offline)
    up: Mapping[str, bool]
    #: (partner, "sent" | "failed") -> pushes since the process started
    pushes: Mapping[tuple[str, str], int]


def _per_partner(partners: Iterable[str], value: Mapping[str, float]) -> tuple[Sample, ...]:
    return tuple(Sample((("partner", p),), value[p]) for p in sorted(partners) if p in value)


def snapshot_families(snapshot: Snapshot) -> list[Family]:
    """The node's metrics. Per-partner series only for approved partners: a node that
    merely asked to follow is counted in ``exchange_follow_requests_pending``."""
    approved = {p.base_url for p in snapshot.partners if p.approved}
    origins = {o.base_url: o for o in snapshot.origins if o.base_url in approved}
    deliveries = {d.partner: d for d in snapshot.deliveries if d.partner in approved}
    objects = [
        Sample(
            (("origin", origin), ("type", kind), ("state", "deleted" if deleted else "current")),
            count,
        )
        for (origin, kind, deleted), count in sorted(snapshot.counts.objects.items())
    ]
    rejections = [
        Sample((("origin", origin), ("problem", problem)), count)
        for (origin, problem), count in sorted(snapshot.counts.rejections.items())
    ]
    breakers = [
        Sample((("partner", partner), ("state", state)), 1 if d.breaker == state else 0)
        for partner, d in sorted(deliveries.items())
        for state in STATES
    ]
    pushes = [
        Sample((("partner", partner), ("outcome", outcome)), count)
        for (partner, outcome), count in sorted(snapshot.pushes.items())
        if partner in approved
    ]

    size = snapshot.log_size

    def by_origin(value: Mapping[str, float]) -> tuple[Sample, ...]:
        return _per_partner(origins, value)

    def by_delivery(value: Mapping[str, float]) -> tuple[Sample, ...]:
        return _per_partner(deliveries, value)

    return [
        Family(
            "exchange_log_entries",
            "gauge",
            "Entries in this node's own signed log.",
            (Sample((), snapshot.log_size),),
        ),
        Family(
            "exchange_objects",
            "gauge",
            "Objects this node holds, own and merged, by origin, type and state.",
            tuple(objects),
        ),
        Family(
            "exchange_rejections_total",
            "counter",
            "Entries of partners refused and recorded, by origin and problem type.",
            tuple(rejections),
        ),
        Family(
            "exchange_partner_up",
            "gauge",
            "1 when this node's latest pull from or push to the partner reached it.",
            _per_partner(approved, {p: 1 if snapshot.up.get(p) else 0 for p in approved}),
        ),
        Family(
            "exchange_follow_requests_pending",
            "gauge",
            "Nodes that asked to follow and wait for the operator's approval.",
            (Sample((), sum(1 for p in snapshot.partners if not p.approved)),),
        ),
        Family(
            "exchange_origin_checkpoint_entries",
            "gauge",
            "Size of the newest checkpoint of the partner's log that this node verified.",
            by_origin({b: o.checkpoint_size for b, o in origins.items()}),
        ),
        Family(
            "exchange_origin_merged_entries",
            "gauge",
            "Entries of the partner's log merged so far (the next seq expected).",
            by_origin({b: o.next_seq for b, o in origins.items()}),
        ),
        Family(
            "exchange_origin_lag_entries",
            "gauge",
            "Entries the partner's verified checkpoint covers that are not merged yet.",
            by_origin({b: max(0, o.checkpoint_size - o.next_seq) for b, o in origins.items()}),
        ),
        Family(
            "exchange_origin_halted",
            "gauge",
            "1 when the partner's log is halted for equivocation (nothing of it merges).",
            by_origin({b: 1 if o.halted else 0 for b, o in origins.items()}),
        ),
        Family(
            "exchange_delivery_delivered_entries",
            "gauge",
            "Entries of this node's log that the subscribing partner holds.",
            by_delivery({p: d.delivered for p, d in deliveries.items()}),
        ),
        Family(
            "exchange_delivery_backlog_entries",
            "gauge",
            "Entries of this node's log not yet pushed to the subscribing partner.",
            by_delivery({p: max(0, size - d.delivered) for p, d in deliveries.items()}),
        ),
        Family(
            "exchange_delivery_consecutive_failures",
            "gauge",
            "Failed pushes to the partner in a row (0 after a success).",
            by_delivery({p: d.attempts for p, d in deliveries.items()}),
        ),
        Family(
            "exchange_delivery_breaker",
            "gauge",
            "The circuit breaker of pushes to the partner: 1 for its current state.",
            tuple(breakers),
        ),
        Family(
            "exchange_delivery_pushes_total",
            "counter",
            "Pushes to the partner since this process started, by outcome (sent, failed).",
            tuple(pushes),
        ),
    ]
