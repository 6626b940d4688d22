package dev.sluice.producer;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;

/**
 * Typed events from JSON (a service that receives events as JSON, or the shared test vectors): the
 * JSON is validated first, so a bad document fails naming its field rather than as a mapping error,
 * then mapped onto the kind's record ({@link SluiceEvent} says how).
 */
public final class Events {
    private Events() {}

    public static SluiceEvent fromJson(EventKind kind, JsonNode json, EventValidator validator) {
        validator.validate(kind, json);
        try {
            return Json.MAPPER.treeToValue(json, kind.type());
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("a validated " + kind.wireName() + " event does not map: " + e, e);
        }
    }
}
