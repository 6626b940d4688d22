"""Offline tests of the Python example against the shared vectors (schemas/vectors/events.json): the
JSON it writes, the keys, and the refusals. (confluent-kafka exposes no partitioner function to call
offline; the partition of every record is checked on the real broker by `make test-producers`.)"""

import json
import unittest
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sluice_producer as sp
from send import typed

VECTORS = json.loads((Path(__file__).resolve().parents[3] / "schemas/vectors/events.json").read_text("utf-8"))


class Vectors(unittest.TestCase):
    def test_valid_vectors_encode_to_the_vector_json_with_the_vector_key(self):
        for v in VECTORS["valid"]:
            with self.subTest(v["name"]):
                event = typed(v["kind"], v["event"])
                self.assertEqual(json.loads(sp.encode(event)), v["event"])
                self.assertEqual(event.key(), v["key"])
                self.assertEqual(sp.from_document(v["kind"], v["event"]), event)

    def test_invalid_vectors_are_refused_naming_the_field(self):
        self.assertGreaterEqual(len(VECTORS["invalid"]), 8)
        for v in VECTORS["invalid"]:
            with self.subTest(v["name"]):
                with self.assertRaises(sp.InvalidEvent) as caught:
                    sp.from_document(v["kind"], v["event"])
                self.assertEqual(caught.exception.field, v["field"], str(caught.exception))
                self.assertIn(v["field"], str(caught.exception))


class TypedValues(unittest.TestCase):
    at = datetime(2026, 6, 15, 13, 30, 0, 120000, tzinfo=timezone(timedelta(hours=2)))

    def test_occurred_at_is_written_in_utc_with_six_digits(self):
        event = sp.ClickEvent(event_id="e", tenant_id="t", occurred_at=self.at, short_code="s")
        self.assertEqual(json.loads(sp.encode(event))["occurred_at"], "2026-06-15T11:30:00.120000Z")

    def test_a_naive_time_is_refused(self):
        event = sp.ClickEvent(event_id="e", tenant_id="t", occurred_at=datetime(2026, 6, 15), short_code="s")
        with self.assertRaises(sp.InvalidEvent) as caught:
            sp.encode(event)
        self.assertEqual(caught.exception.field, "occurred_at")

    def test_an_out_of_range_typed_value_is_refused_before_sending(self):
        event = sp.RankEvent(event_id="e", tenant_id="t", occurred_at=self.at, campaign_id="c", keyword="k",
                             geo="us", engine="google", device="mobile", position=0)
        with self.assertRaises(sp.InvalidEvent) as caught:
            sp.encode(event)
        self.assertEqual(caught.exception.field, "position")

    def test_the_docs_snippet_event_is_valid_and_keyed(self):
        # docs/events.md "Producing from your service" (all but the send, which needs a broker).
        click = sp.ClickEvent(event_id="c1f0e7a2-0001", tenant_id="acme", occurred_at=datetime.now(timezone.utc),
                              short_code="x7Gq", referrer="https://news.example/", country="de", visitor_id="v-42")
        self.assertEqual(json.loads(sp.encode(click))["country"], "de")
        self.assertEqual(click.key(), "acme/x7Gq")

    def test_producer_settings_are_idempotent_and_murmur2(self):
        config = sp.producer_config("b:9092")
        self.assertEqual((config["enable.idempotence"], config["acks"], config["partitioner"]),
                         (True, "all", "murmur2_random"))



class _Message:
    def __init__(self, topic, partition, offset):
        self._where = (topic, partition, offset)

    def topic(self):
        return self._where[0]

    def partition(self):
        return self._where[1]

    def offset(self):
        return self._where[2]


class _ImplicitAckOnce:
    """Stands in for confluent_kafka.Producer: the first record produced is reported as librdkafka reports an
    implicitly acked one (success, offset -1001, never written); every other is written at the next offset."""

    def __init__(self):
        self.log = []
        self.calls = 0

    def produce(self, topic, value, key, headers, on_delivery):
        self.calls += 1
        if self.calls == 1:
            on_delivery(None, _Message(topic, 0, -1001))
        else:
            self.log.append(value)
            on_delivery(None, _Message(topic, 0, len(self.log) - 1))

    def poll(self, timeout):
        return 0

    def flush(self, timeout):
        return 0


class UnconfirmedDeliveries(unittest.TestCase):
    def test_a_success_without_an_offset_is_sent_again(self):
        producer = sp.SluiceProducer.__new__(sp.SluiceProducer)
        producer.topics, producer.attempts = dict(sp.DEFAULT_TOPICS), 3
        producer._producer = fake = _ImplicitAckOnce()
        at = datetime(2026, 12, 4, 16, 0, tzinfo=timezone.utc)
        events = [sp.ClickEvent(event_id=f"e{i}", tenant_id="t", occurred_at=at, short_code="s") for i in range(3)]
        deliveries = producer.send_all(events)
        # Written once each: e0 by its second attempt, after e1 and e2.
        self.assertEqual([json.loads(v)["event_id"] for v in fake.log], ["e1", "e2", "e0"])
        self.assertEqual([(d.event.event_id, d.offset) for d in deliveries], [("e0", 2), ("e1", 0), ("e2", 1)])


if __name__ == "__main__":
    unittest.main()
