package dev.sluice.producer;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Instant;
import java.util.UUID;

/**
 * A Sluice event built from typed values: one of {@link RankEvent}, {@link CrawlEvent}, {@link ClickEvent}.
 *
 * <p>{@link #key()} is the record key of the contract (docs/events.md, "Topics and keys"): Kafka's
 * default partitioner hashes it with murmur2, so one tenant's campaign (or link) stays on one
 * partition, and a re-sent event lands on the same partition as the original.
 */
public sealed interface SluiceEvent permits RankEvent, CrawlEvent, ClickEvent {
    /** The only schema version this contract knows. */
    int SCHEMA_VERSION = 1;

    EventKind kind();

    /** The idempotency key: a retry re-sends the same id, so Sluice counts the event once. */
    String eventId();

    String tenantId();

    Instant occurredAt();

    /** The entity whose events stay in order: the campaign (rank, crawl) or the short link (click). */
    String entity();

    /** The record key: {@code "{tenant_id}/{entity}"}. */
    default String key() {
        return tenantId() + "/" + entity();
    }

    /** The JSON record value (unvalidated; {@link SluiceProducer} validates before sending). */
    ObjectNode toJson();

    /** A fresh idempotency key for a new event; keep it with the event for every retry. */
    static String newEventId() {
        return UUID.randomUUID().toString();
    }

    /** The fields every kind shares, in contract order. */
    static ObjectNode common(SluiceEvent e) {
        ObjectNode node = Json.MAPPER.createObjectNode();
        node.put("schema_version", SCHEMA_VERSION);
        node.put("event_id", e.eventId());
        node.put("tenant_id", e.tenantId());
        node.put("occurred_at", e.occurredAt() == null ? null : Rfc3339.format(e.occurredAt()));
        return node;
    }

    /**
     * Puts an optional string; {@code null} is written as JSON {@code null} (the contract reads null and
     * absent alike; every field present is the form the shared test vectors compare against).
     */
    static void putOptional(ObjectNode node, String field, String value) {
        node.put(field, value);
    }
}
