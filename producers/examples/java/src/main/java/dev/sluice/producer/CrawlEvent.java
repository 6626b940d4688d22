package dev.sluice.producer;

import com.fasterxml.jackson.databind.node.ObjectNode;
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
    public EventKind kind() {
        return EventKind.CRAWL;
    }

    @Override
    public String entity() {
        return campaignId;
    }

    @Override
    public ObjectNode toJson() {
        ObjectNode node = SluiceEvent.common(this);
        node.put("campaign_id", campaignId);
        node.put("url", url);
        node.put("status_code", statusCode);
        node.put("fetch_ms", fetchMs);
        node.put("bytes", bytes);
        SluiceEvent.putOptional(node, "content_hash", contentHash);
        return node;
    }
}
