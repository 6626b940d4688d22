package dev.sluice.producer;

import java.time.Instant;

/** One click on a short link; {@code referrer}, {@code country}, {@code userAgent}, {@code visitorId} are optional. */
public record ClickEvent(
        String eventId,
        String tenantId,
        Instant occurredAt,
        String shortCode,
        String referrer,
        String country,
        String userAgent,
        String visitorId)
        implements SluiceEvent {

    @Override
    public String entity() {
        return shortCode;
    }
}
