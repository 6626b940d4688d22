/**
 * Typed events from JSON (a service that receives events as JSON, or the shared test vectors): the JSON
 * is validated first, so a bad document fails naming its field, then rebuilt through the typed builders.
 */
import { clickEvent, crawlEvent, rankEvent, type EventKind, type SluiceEvent } from "./events.js";
import type { EventValidator } from "./validate.js";

export function eventFromJson(kind: EventKind, json: unknown, validator: EventValidator): SluiceEvent {
  validator.validate(kind, json);
  const j = json as Record<string, unknown>;
  const s = (f: string) => j[f] as string;
  const opt = (f: string) => (j[f] ?? null) as string | null;
  const n = (f: string) => j[f] as number;
  const common = { eventId: s("event_id"), tenantId: s("tenant_id"), occurredAt: s("occurred_at") };
  switch (kind) {
    case "rank":
      return rankEvent({
        ...common,
        campaignId: s("campaign_id"),
        keyword: s("keyword"),
        geo: s("geo"),
        engine: s("engine"),
        device: s("device"),
        url: opt("url"),
        position: (j["position"] ?? null) as number | null,
      });
    case "crawl":
      return crawlEvent({
        ...common,
        campaignId: s("campaign_id"),
        url: s("url"),
        statusCode: n("status_code"),
        fetchMs: n("fetch_ms"),
        bytes: n("bytes"),
        contentHash: opt("content_hash"),
      });
    case "click":
      return clickEvent({
        ...common,
        shortCode: s("short_code"),
        referrer: opt("referrer"),
        country: opt("country"),
        userAgent: opt("user_agent"),
        visitorId: opt("visitor_id"),
      });
  }
}
