"""Sluice events from Python: typed rank, crawl and click events, checked against the contract's JSON
Schema files (schemas/json), keyed "{tenant_id}/{entity}" and published with confluent-kafka.

The producer is idempotent (enable.idempotence, acks=all) and uses partitioner=murmur2_random, the Java
client's partitioner: librdkafka's default (consistent_random, CRC32) would put a key on another
partition than every other producer and break Sluice's per-partition deduplication (docs/events.md,
"Partitioning"). A record that still fails after librdkafka's own retries is sent again by
`SluiceProducer.send_all` with the very same bytes, so the same event_id.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Optional

import jsonschema
from confluent_kafka import KafkaError, Producer

SCHEMA_VERSION = 1
KINDS = ("rank", "crawl", "click")
DEFAULT_TOPICS = {"rank": "rank-events", "crawl": "crawl-events", "click": "click-events"}
# The contract's JSON Schema files; SLUICE_SCHEMAS_DIR overrides (e.g. when installed elsewhere).
SCHEMAS_DIR = Path(os.environ.get("SLUICE_SCHEMAS_DIR", Path(__file__).resolve().parents[3] / "schemas" / "json"))


class InvalidEvent(ValueError):
    """An event the contract refuses; `field` names the offending field."""

    def __init__(self, kind: str, field: str, message: str):
        super().__init__(f"invalid {kind} event: {field}: {message}")
        self.kind = kind
        self.field = field


def format_time(at: datetime) -> str:
    """occurred_at as the contract writes it: UTC, 'Z', exactly six fractional digits."""
    if at.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware (a naive datetime has no instant)")
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class _Common:
    event_id: str
    tenant_id: str
    occurred_at: datetime

    def document(self) -> dict[str, Any]:
        """The JSON object of this event: every field, None (null) for an absent optional one."""
        doc = {"schema_version": SCHEMA_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "occurred_at":
                if not isinstance(value, datetime):
                    raise InvalidEvent(self.KIND, "occurred_at", "must be a datetime")
                try:
                    value = format_time(value)
                except ValueError as e:
                    raise InvalidEvent(self.KIND, "occurred_at", str(e)) from None
            doc[f.name] = value
        return doc

    def key(self) -> str:
        return f"{self.tenant_id}/{self.entity()}"


@dataclass(frozen=True)
class _CampaignEvent(_Common):
    """A kind keyed by campaign: its events stay in order per "{tenant_id}/{campaign_id}"."""

    campaign_id: str

    def entity(self) -> str:
        return self.campaign_id


@dataclass(frozen=True)
class RankEvent(_CampaignEvent):
    KIND = "rank"
    keyword: str
    geo: str
    engine: str
    device: str
    position: Optional[int]  # 1-100, or None when the keyword did not rank (required all the same)
    url: Optional[str] = None


@dataclass(frozen=True)
class CrawlEvent(_CampaignEvent):
    KIND = "crawl"
    url: str
    status_code: int
    fetch_ms: int
    bytes: int
    content_hash: Optional[str] = None


@dataclass(frozen=True)
class ClickEvent(_Common):
    KIND = "click"
    short_code: str
    referrer: Optional[str] = None
    country: Optional[str] = None
    user_agent: Optional[str] = None
    visitor_id: Optional[str] = None

    def entity(self) -> str:
        return self.short_code


EVENT_TYPES = {"rank": RankEvent, "crawl": CrawlEvent, "click": ClickEvent}
Event = RankEvent | CrawlEvent | ClickEvent

_validators: dict[str, jsonschema.protocols.Validator] = {}


def _validator(kind: str):
    if kind not in _validators:
        schema = json.loads((SCHEMAS_DIR / f"{kind}.schema.json").read_text(encoding="utf-8"))
        cls = jsonschema.validators.validator_for(schema)
        _validators[kind] = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return _validators[kind]


def validate(kind: str, doc: Any) -> None:
    """Raises InvalidEvent naming the first offending field if `doc` breaks the kind's JSON Schema."""
    if kind not in EVENT_TYPES:
        raise ValueError(f"unknown event kind {kind!r}; accepted: {', '.join(KINDS)}")
    errors = sorted(_validator(kind).iter_errors(doc), key=lambda e: list(e.path))
    if not errors:
        return
    error = errors[0]
    if error.path:
        field = str(error.path[0])
    elif error.validator == "required":
        field = next(f for f in error.validator_value if f not in doc)
    else:
        field = "(event)"
    raise InvalidEvent(kind, field, error.message)


def from_document(kind: str, doc: dict[str, Any]) -> Event:
    """A typed event from its JSON object (as read from elsewhere); validated first."""
    validate(kind, doc)
    cls = EVENT_TYPES[kind]
    fields = {f.name: doc.get(f.name) for f in dataclasses.fields(cls)}
    fields["occurred_at"] = datetime.fromisoformat(doc["occurred_at"])
    return cls(**fields)


def encode(event: Event) -> bytes:
    """The record value: the validated JSON object, UTF-8."""
    doc = event.document()
    validate(event.KIND, doc)
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def producer_config(brokers: str, **extra: Any) -> dict[str, Any]:
    """librdkafka settings every Sluice producer needs; `extra` adds or overrides others."""
    return {
        "bootstrap.servers": brokers,
        "enable.idempotence": True,  # implies acks=all and retries without duplicates or reordering
        "acks": "all",
        "partitioner": "murmur2_random",  # Kafka's Java partitioner, as the contract requires
        "message.timeout.ms": 30000,
        **extra,
    }


@dataclass
class Delivery:
    event: Event
    topic: str
    partition: int
    offset: int


class DeliveryFailed(RuntimeError):
    pass


class Unconfirmed:
    """A delivery librdkafka reported as a success without an offset. It does so for records of a batch the
    broker refused ("not leader") when a later batch of the same partition was written first ("implicitly
    acked by subsequent batch success", confluent-kafka-go issue 921): they may never have been written.
    Such a record is sent again like a failed one; Sluice's idempotent event ids make a second copy harmless."""

    def fatal(self) -> bool:
        return False

    def __str__(self) -> str:
        return "delivery reported without an offset (unconfirmed)"


UNCONFIRMED = Unconfirmed()


class SluiceProducer:
    """Publishes Sluice events; `send_all` returns once every one of them is acknowledged."""

    def __init__(self, brokers: str, topics: Optional[dict[str, str]] = None, attempts: int = 3, **extra: Any):
        self.topics = {**DEFAULT_TOPICS, **(topics or {})}
        self.attempts = attempts
        self._producer = Producer(producer_config(brokers, **extra))

    def send_all(self, events: Iterable[Event], timeout: float = 60.0) -> list[Delivery]:
        """Encodes (validating) every event first, then publishes them all; a record that fails, or whose
        delivery is unconfirmed (see `Unconfirmed`), is sent again with the same bytes up to `attempts` times
        in all. Deliveries come back in input order."""
        records = [(event, self.topics[event.KIND], event.key().encode("utf-8"), encode(event)) for event in events]
        delivered: dict[int, Delivery] = {}
        pending = list(range(len(records)))
        for attempt in range(1, self.attempts + 1):
            failures: dict[int, KafkaError] = {}
            for i in pending:
                event, topic, key, value = records[i]

                def report(err, msg, i=i, event=event):
                    if err is not None:
                        failures[i] = err
                    elif msg.offset() is None or msg.offset() < 0:
                        failures[i] = UNCONFIRMED
                    else:
                        delivered[i] = Delivery(event, msg.topic(), msg.partition(), msg.offset())

                self._producer.produce(topic, value=value, key=key, headers=[("sluice-encoding", b"json")],
                                       on_delivery=report)
                self._producer.poll(0)
            left = self._producer.flush(timeout)
            if left:
                raise DeliveryFailed(f"{left} records still in flight after {timeout}s")
            fatal = [e for e in failures.values() if e.fatal()]
            pending = sorted(failures)
            if not pending:
                return [delivered[i] for i in range(len(records))]
            if fatal or attempt == self.attempts:
                i = pending[0]
                raise DeliveryFailed(f"{len(pending)} records not delivered after {attempt} attempts; "
                                     f"first: {records[i][0].event_id}: {failures[i]}")
        raise AssertionError("unreachable")
