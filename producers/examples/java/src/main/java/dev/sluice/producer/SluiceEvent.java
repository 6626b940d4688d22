package dev.sluice.producer;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.annotation.JsonPropertyOrder;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.annotation.JsonNaming;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Instant;
import java.util.UUID;

/**
 * A Sluice event built from typed values: one of {@link RankEvent}, {@link CrawlEvent}, {@link ClickEvent}.
 *
 * <p>{@link #key()} is the record key of the contract (docs/events.md, "Topics and keys"): Kafka's
 * default partitioner hashes it with murmur2, so one tenant's campaign (or link) stays on one
 * partition, and a re-sent event lands on the same partition as the original.
 *
 * <p>The JSON is the records' own components under their snake_case names, in declaration order after
 * {@code schema_version}; {@code occurred_at} goes through {@link Rfc3339} ({@link Json#MAPPER}), and an
 * absent optional field is written as JSON {@code null} (the contract reads null and absent alike; every
 * field present is the form the shared test vectors compare against). Reading ignores unknown fields, as
 * the contract does.
 */
@JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
@JsonPropertyOrder({"schema_version", "event_id", "tenant_id", "occurred_at"})
@JsonIgnoreProperties(ignoreUnknown = true)
public sealed interface SluiceEvent permits RankEvent, CrawlEvent, ClickEvent {
    /** The only schema version this contract knows. */
    int SCHEMA_VERSION = 1;

    default EventKind kind() {
        return EventKind.of(this);
    }

    /** Written into every record; on reading, the validator has already checked it. */
    @JsonProperty(value = "schema_version", access = JsonProperty.Access.READ_ONLY)
    default int schemaVersion() {
        return SCHEMA_VERSION;
    }

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
    default ObjectNode toJson() {
        return Json.MAPPER.valueToTree(this);
    }

    /** A fresh idempotency key for a new event; keep it with the event for every retry. */
    static String newEventId() {
        return UUID.randomUUID().toString();
    }
}
