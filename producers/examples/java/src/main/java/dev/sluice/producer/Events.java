package dev.sluice.producer;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * Typed events from JSON (a service that receives events as JSON, or the shared test vectors): the
 * JSON is validated first, so a bad document fails naming its field rather than as a mapping error.
 */
public final class Events {
    private Events() {}

    public static SluiceEvent fromJson(EventKind kind, JsonNode json, EventValidator validator) {
        validator.validate(kind, json);
        String eventId = json.get("event_id").textValue();
        String tenantId = json.get("tenant_id").textValue();
        var occurredAt = Rfc3339.parse(json.get("occurred_at").textValue());
        return switch (kind) {
            case RANK -> new RankEvent(
                    eventId,
                    tenantId,
                    occurredAt,
                    text(json, "campaign_id"),
                    text(json, "keyword"),
                    text(json, "geo"),
                    text(json, "engine"),
                    text(json, "device"),
                    text(json, "url"),
                    json.get("position").isNull() ? null : json.get("position").intValue());
            case CRAWL -> new CrawlEvent(
                    eventId,
                    tenantId,
                    occurredAt,
                    text(json, "campaign_id"),
                    text(json, "url"),
                    json.get("status_code").intValue(),
                    json.get("fetch_ms").longValue(),
                    json.get("bytes").longValue(),
                    text(json, "content_hash"));
            case CLICK -> new ClickEvent(
                    eventId,
                    tenantId,
                    occurredAt,
                    text(json, "short_code"),
                    text(json, "referrer"),
                    text(json, "country"),
                    text(json, "user_agent"),
                    text(json, "visitor_id"));
        };
    }

    /** A string field, or {@code null} when absent or null. */
    private static String text(JsonNode json, String field) {
        JsonNode value = json.get(field);
        return value == null || value.isNull() ? null : value.textValue();
    }
}
