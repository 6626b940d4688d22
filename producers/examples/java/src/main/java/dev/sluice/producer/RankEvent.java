package dev.sluice.producer;

import com.fasterxml.jackson.databind.node.ObjectNode;
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
    public EventKind kind() {
        return EventKind.RANK;
    }

    @Override
    public String entity() {
        return campaignId;
    }

    @Override
    public ObjectNode toJson() {
        ObjectNode node = SluiceEvent.common(this);
        node.put("campaign_id", campaignId);
        node.put("keyword", keyword);
        node.put("geo", geo);
        node.put("engine", engine);
        node.put("device", device);
        SluiceEvent.putOptional(node, "url", url);
        node.put("position", position);
        return node;
    }
}
