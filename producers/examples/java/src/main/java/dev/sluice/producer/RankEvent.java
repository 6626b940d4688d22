package dev.sluice.producer;

import java.time.Instant;

/**
 * A keyword position check. {@code position} is 1-100, or {@code null} when the keyword did not rank
 * (sent as an explicit {@code null}: the field is required). {@code url} is optional.
 */
public record RankEvent(
        String eventId,
        String tenantId,
        Instant occurredAt,
        String campaignId,
        String keyword,
        String geo,
        String engine,
        String device,
        String url,
        Integer position)
        implements SluiceEvent {

    @Override
    public String entity() {
        return campaignId;
    }
}
