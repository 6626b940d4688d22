package dev.sluice.producer;

import com.fasterxml.jackson.databind.node.ObjectNode;
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
    public EventKind kind() {
        return EventKind.CLICK;
    }

    @Override
    public String entity() {
        return shortCode;
    }

    @Override
    public ObjectNode toJson() {
        ObjectNode node = SluiceEvent.common(this);
        node.put("short_code", shortCode);
        SluiceEvent.putOptional(node, "referrer", referrer);
        SluiceEvent.putOptional(node, "country", country);
        SluiceEvent.putOptional(node, "user_agent", userAgent);
        SluiceEvent.putOptional(node, "visitor_id", visitorId);
        return node;
    }
}
