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


if __name__ == "__main__":
    unittest.main()
