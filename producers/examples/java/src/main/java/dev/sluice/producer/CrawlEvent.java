package dev.sluice.producer;

import java.time.Instant;

/**
 * One page fetch. {@code url} is an absolute http(s) URL; {@code fetchMs} and {@code bytes} are
 * 0-4294967295 (hence {@code long}); {@code contentHash} is optional.
 */
public record CrawlEvent(
        String eventId,
        String tenantId,
        Instant occurredAt,
        String campaignId,
        String url,
        int statusCode,
        long fetchMs,
        long bytes,
        String contentHash)
        implements SluiceEvent {

    @Override
    public String entity() {
        return campaignId;
    }
}
