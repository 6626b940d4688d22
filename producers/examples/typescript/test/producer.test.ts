/** The library's own rules: builders, the checks the schema files cannot make, retries, client settings. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { compatibilityPartitioner, NetworkError, ProduceAcks, UserError } from "@platformatic/kafka";
import { clickEvent, crawlEvent, rankEvent, type SluiceEvent } from "../src/events.js";
import { DEFAULT_TOPICS, DeliveryError, producerOptions, SluiceProducer, type Message, type Sender } from "../src/producer.js";
import { DateTimeError, formatRfc3339, parseRfc3339 } from "../src/rfc3339.js";
import { EventValidator, InvalidEventError } from "../src/validate.js";
import { SCHEMAS } from "./paths.js";

const NOW = Date.parse("2026-11-24T12:00:00Z");
const validator = EventValidator.fromDirectory(SCHEMAS, { now: () => NOW });

function click(overrides: Partial<Parameters<typeof clickEvent>[0]> = {}): SluiceEvent {
  return clickEvent({
    eventId: "k-1",
    tenantId: "acme",
    occurredAt: new Date(NOW),
    shortCode: "x7Gq",
    referrer: "https://news.example/",
    country: "de",
    visitorId: "v-42",
    ...overrides,
  });
}

function refusedField(event: SluiceEvent): string {
  try {
    validator.validate(event.kind, event.value);
  } catch (err) {
    assert.ok(err instanceof InvalidEventError, String(err));
    return err.field;
  }
  assert.fail(`accepted: ${JSON.stringify(event.value)}`);
}

test("typed builders write the contract JSON and key", () => {
  const rank = rankEvent({
    eventId: "r-1",
    tenantId: "acme",
    occurredAt: "2026-11-24T07:00:00.1234567Z",
    campaignId: "spring",
    keyword: "shoes",
    geo: "us",
    engine: "google",
    device: "desktop",
    position: null,
  });
  assert.equal(rank.key, "acme/spring");
  assert.deepEqual(rank.value, {
    schema_version: 1,
    event_id: "r-1",
    tenant_id: "acme",
    occurred_at: "2026-11-24T07:00:00.123456Z",
    campaign_id: "spring",
    keyword: "shoes",
    geo: "us",
    engine: "google",
    device: "desktop",
    url: null,
    position: null,
  });
  const crawl = crawlEvent({
    eventId: "c-1",
    tenantId: "acme",
    occurredAt: new Date(NOW),
    campaignId: "autumn",
    url: "https://a.example/",
    statusCode: 200,
    fetchMs: 4294967295,
    bytes: 4294967295,
  });
  validator.validate(crawl.kind, crawl.value);
  assert.equal(JSON.stringify(crawl.value).includes('"bytes":4294967295'), true);
  assert.equal(click().key, "acme/x7Gq");
  assert.equal(click().value.occurred_at, "2026-11-24T12:00:00.000000Z");
});

test("lengths count UTF-8 bytes, not characters", () => {
  validator.validate("click", click({ tenantId: "é".repeat(64) }).value); // 128 bytes
  assert.equal(refusedField(click({ tenantId: "é".repeat(65) })), "tenant_id"); // 130 bytes, 65 characters
  assert.throws(() => validator.validate("click", click({ tenantId: "é".repeat(65) }).value), /130 UTF-8 bytes, at most 128/);
});

test("a lone surrogate is refused naming the field", () => {
  assert.equal(refusedField(click({ visitorId: "v-\ud800" })), "visitor_id");
});

test("occurred_at must lie in Sluice's window", () => {
  validator.validate("click", click({ occurredAt: new Date(NOW - 366 * 86400_000) }).value);
  validator.validate("click", click({ occurredAt: new Date(NOW + 3600_000) }).value);
  assert.equal(refusedField(click({ occurredAt: new Date(NOW - 367 * 86400_000) })), "occurred_at");
  assert.equal(refusedField(click({ occurredAt: new Date(NOW + 3601_000) })), "occurred_at");
  assert.equal(refusedField(click({ occurredAt: "yesterday" })), "occurred_at");
});

test("missing or empty required values name the field", () => {
  assert.equal(refusedField(click({ shortCode: "" })), "short_code");
  const noTenant = click();
  delete (noTenant.value as unknown as Record<string, unknown>)["tenant_id"];
  assert.equal(refusedField(noTenant), "tenant_id");
  const relative = crawlEvent({
    eventId: "c",
    tenantId: "acme",
    occurredAt: new Date(NOW),
    campaignId: "c",
    url: "/relative",
    statusCode: 200,
    fetchMs: 1,
    bytes: 1,
  });
  assert.equal(refusedField(relative), "url");
});

test("RFC 3339 parses as Sluice stores it", () => {
  const f = (s: string) => formatRfc3339(parseRfc3339(s));
  assert.equal(f("2026-06-15T23:59:00+23:59"), "2026-06-15T00:00:00.000000Z");
  assert.equal(f("2026-06-15t12:00:00.1234569z"), "2026-06-15T12:00:00.123456Z");
  assert.equal(f("2016-12-31T18:59:60.5-05:00"), "2016-12-31T23:59:59.999999Z");
  assert.equal(f("2026-01-01T00:00:00-00:00"), "2026-01-01T00:00:00.000000Z");
  for (const bad of [
    "2026-01-01 00:00:00Z",
    "2026-01-01T00:00:00",
    "2026-01-01T00:00:00+0200",
    "2026-01-01T00:00:00+24:00",
    "2026-01-01T00:00:00+02:60",
    "2026-01-01T24:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-01-01T00:00Z",
    "2026-01-01T00:00:00.Z",
    "2026-01-01T12:59:60Z",
  ]) {
    assert.throws(() => parseRfc3339(bad), DateTimeError, bad);
  }
});

test("the client is idempotent with acks=all and the Java-compatible partitioner", () => {
  const options = producerOptions(["127.0.0.1:9092"]);
  assert.equal(options.idempotent, true);
  assert.equal(options.acks, ProduceAcks.ALL);
  assert.equal(options.partitioner, compatibilityPartitioner);
});

/** A sender that fails the first `failures` sends with `error`, then acknowledges. */
function flaky(failures: number, error: Error): Sender & { sent: Message[] } {
  const sent: Message[] = [];
  return {
    sent,
    send: async ({ messages }) => {
      sent.push(...messages);
      if (sent.length <= failures) {
        throw error;
      }
      return { offsets: [{ topic: messages[0]!.topic, partition: 1, offset: 7n }] };
    },
    close: async () => {},
  };
}

test("a retry re-sends the same event_id", async () => {
  const sender = flaky(1, new NetworkError("connection reset"));
  const producer = new SluiceProducer(sender, DEFAULT_TOPICS, validator, 3);
  const at = await producer.send(click({ eventId: "evt-7" }));
  assert.deepEqual(at, { topic: "click-events", partition: 1, offset: 7n });
  assert.equal(sender.sent.length, 2);
  assert.equal(sender.sent[1], sender.sent[0], "the same message object");
  assert.equal(JSON.parse(sender.sent[1]!.value as string).event_id, "evt-7");
  assert.equal(sender.sent[1]!.key, "acme/x7Gq");
});

test("a non-retriable failure is not retried", async () => {
  const sender = flaky(1, new UserError("bad request"));
  const producer = new SluiceProducer(sender, DEFAULT_TOPICS, validator, 3);
  await assert.rejects(producer.send(click()), DeliveryError);
  assert.equal(sender.sent.length, 1);
});

test("retries stop after the last attempt", async () => {
  const sender = flaky(5, new NetworkError("down"));
  const producer = new SluiceProducer(sender, DEFAULT_TOPICS, validator, 3);
  await assert.rejects(producer.send(click()), /after 3 attempt\(s\)/);
  assert.equal(sender.sent.length, 3);
});

test("an invalid event is never sent", async () => {
  const sender = flaky(0, new Error("unused"));
  const producer = new SluiceProducer(sender, DEFAULT_TOPICS, validator, 3);
  const bad = rankEvent({
    eventId: "r",
    tenantId: "acme",
    occurredAt: new Date(NOW),
    campaignId: "c",
    keyword: "k",
    geo: "us",
    engine: "google",
    device: "desktop",
    position: 101,
  });
  await assert.rejects(producer.send(bad), (err: unknown) => err instanceof InvalidEventError && err.field === "position");
  assert.equal(sender.sent.length, 0);
});
