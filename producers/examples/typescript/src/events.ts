/**
 * Sluice events built from typed values. A builder (`rankEvent`, `crawlEvent`, `clickEvent`) turns an
 * input object into the record value exactly as the contract writes it (docs/events.md: every field
 * present, `null` for an absent optional one, `occurred_at` in UTC with six fractional digits) and
 * the record key `"{tenant_id}/{campaign_id}"` (rank, crawl) or `"{tenant_id}/{short_code}"` (click).
 * Builders do not validate: `EventValidator` / `SluiceProducer` do, naming the field.
 */
import { randomUUID } from "node:crypto";
import { DateTimeError, formatRfc3339, fromDate, parseRfc3339 } from "./rfc3339.js";

export type EventKind = "rank" | "crawl" | "click";
export const EVENT_KINDS: readonly EventKind[] = ["rank", "crawl", "click"];

/** Parses a kind name; the error lists the accepted values. */
export function parseKind(name: string): EventKind {
  if ((EVENT_KINDS as readonly string[]).includes(name)) {
    return name as EventKind;
  }
  throw new Error(`unknown event kind '${name}' (accepted: ${EVENT_KINDS.join(", ")})`);
}

interface CommonInput {
  /** The idempotency key: keep it with the event for every retry (see `newEventId`). */
  eventId: string;
  tenantId: string;
  /** A `Date` (millisecond precision) or an RFC 3339 string (kept to the microsecond). */
  occurredAt: Date | string;
}

export interface RankInput extends CommonInput {
  campaignId: string;
  keyword: string;
  geo: string;
  engine: string;
  device: string;
  url?: string | null;
  /** 1-100, or `null` when the keyword did not rank (required: pass `null` explicitly). */
  position: number | null;
}

export interface CrawlInput extends CommonInput {
  campaignId: string;
  /** Absolute http(s) URL. */
  url: string;
  statusCode: number;
  /** 0-4294967295. */
  fetchMs: number;
  /** 0-4294967295. */
  bytes: number;
  contentHash?: string | null;
}

export interface ClickInput extends CommonInput {
  shortCode: string;
  referrer?: string | null;
  country?: string | null;
  userAgent?: string | null;
  visitorId?: string | null;
}

interface CommonJson {
  schema_version: 1;
  event_id: string;
  tenant_id: string;
  occurred_at: string;
}

export interface RankJson extends CommonJson {
  campaign_id: string;
  keyword: string;
  geo: string;
  engine: string;
  device: string;
  url: string | null;
  position: number | null;
}

export interface CrawlJson extends CommonJson {
  campaign_id: string;
  url: string;
  status_code: number;
  fetch_ms: number;
  bytes: number;
  content_hash: string | null;
}

export interface ClickJson extends CommonJson {
  short_code: string;
  referrer: string | null;
  country: string | null;
  user_agent: string | null;
  visitor_id: string | null;
}

/** An event ready to send: its kind, record key and JSON value. */
export type SluiceEvent =
  | { readonly kind: "rank"; readonly key: string; readonly value: RankJson }
  | { readonly kind: "crawl"; readonly key: string; readonly value: CrawlJson }
  | { readonly kind: "click"; readonly key: string; readonly value: ClickJson };

/** A fresh idempotency key for a new event. */
export function newEventId(): string {
  return randomUUID();
}

/** The record key of the contract. */
export function partitionKey(tenantId: string, entity: string): string {
  return `${tenantId}/${entity}`;
}

/**
 * Each kind's own fields after the common ones, in contract order, by their input name; the JSON name
 * is the snake_case of it. A trailing `?` marks an optional field: absent, it is written as `null`.
 */
const KIND_FIELDS: Readonly<Record<EventKind, readonly string[]>> = {
  rank: ["campaignId", "keyword", "geo", "engine", "device", "url?", "position"],
  crawl: ["campaignId", "url", "statusCode", "fetchMs", "bytes", "contentHash?"],
  click: ["shortCode", "referrer?", "country?", "userAgent?", "visitorId?"],
};

export function rankEvent(e: RankInput): SluiceEvent {
  return build("rank", e, e.campaignId);
}

export function crawlEvent(e: CrawlInput): SluiceEvent {
  return build("crawl", e, e.campaignId);
}

export function clickEvent(e: ClickInput): SluiceEvent {
  return build("click", e, e.shortCode);
}

/** The event of `kind` from its input: the common fields, then the kind's own (`KIND_FIELDS`). */
function build(kind: EventKind, e: CommonInput, entity: string): SluiceEvent {
  const input = e as unknown as Record<string, unknown>;
  const value: Record<string, unknown> = { ...common(e) };
  for (const field of KIND_FIELDS[kind]) {
    const name = field.replace("?", "");
    const json = name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    value[json] = field.endsWith("?") ? (input[name] ?? null) : input[name];
  }
  // KIND_FIELDS and the *Json interfaces name the same fields (test/contract.test.ts checks every vector).
  return { kind, key: partitionKey(e.tenantId, entity), value } as unknown as SluiceEvent;
}

function common(e: CommonInput): CommonJson {
  return {
    schema_version: 1,
    event_id: e.eventId,
    tenant_id: e.tenantId,
    occurred_at: occurredAt(e.occurredAt),
  };
}

/** The stored form of a time; a string that does not parse is kept as is, for validation to refuse. */
function occurredAt(t: Date | string): string {
  try {
    return formatRfc3339(typeof t === "string" ? parseRfc3339(t) : fromDate(t));
  } catch (err) {
    if (err instanceof DateTimeError) {
      return typeof t === "string" ? t : String(t);
    }
    throw err;
  }
}
