"""Command-line entry of the Python example (the contract every example implements, README.md):

    run.sh send --brokers B --vectors events.json --topic-rank T --topic-crawl T --topic-click T

builds each valid vector's event as typed values, publishes them through SluiceProducer and prints one
JSON line per delivered record: {"name", "topic", "partition", "offset"}.
"""

import argparse
import json
import sys
from datetime import datetime

import sluice_producer as sp


def typed(kind: str, doc: dict) -> sp.Event:
    """The vector's event rebuilt from typed values (what a service would have in hand)."""
    at = datetime.fromisoformat(doc["occurred_at"])
    if kind == "rank":
        return sp.RankEvent(event_id=doc["event_id"], tenant_id=doc["tenant_id"], occurred_at=at,
                            campaign_id=doc["campaign_id"], keyword=doc["keyword"], geo=doc["geo"],
                            engine=doc["engine"], device=doc["device"], position=doc["position"], url=doc["url"])
    if kind == "crawl":
        return sp.CrawlEvent(event_id=doc["event_id"], tenant_id=doc["tenant_id"], occurred_at=at,
                             campaign_id=doc["campaign_id"], url=doc["url"], status_code=doc["status_code"],
                             fetch_ms=doc["fetch_ms"], bytes=doc["bytes"], content_hash=doc["content_hash"])
    if kind == "click":
        return sp.ClickEvent(event_id=doc["event_id"], tenant_id=doc["tenant_id"], occurred_at=at,
                             short_code=doc["short_code"], referrer=doc["referrer"], country=doc["country"],
                             user_agent=doc["user_agent"], visitor_id=doc["visitor_id"])
    raise ValueError(f"unknown event kind {kind!r}; accepted: rank, crawl, click")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run.sh", description="Sluice Python producer example")
    commands = parser.add_subparsers(dest="command", required=True)
    send = commands.add_parser("send", help="publish the valid events of a vectors file")
    send.add_argument("--brokers", required=True)
    send.add_argument("--vectors", required=True)
    for kind in sp.KINDS:
        send.add_argument(f"--topic-{kind}", required=True)
    args = parser.parse_args(argv)

    with open(args.vectors, encoding="utf-8") as f:
        valid = json.load(f)["valid"]
    names = [v["name"] for v in valid]
    events = [typed(v["kind"], v["event"]) for v in valid]
    producer = sp.SluiceProducer(args.brokers, {k: getattr(args, f"topic_{k}") for k in sp.KINDS})
    for name, d in zip(names, producer.send_all(events)):
        print(json.dumps({"name": name, "topic": d.topic, "partition": d.partition, "offset": d.offset}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (sp.InvalidEvent, sp.DeliveryFailed, OSError, KeyError, ValueError) as e:
        print(f"send: error: {e}", file=sys.stderr)
        sys.exit(1)
