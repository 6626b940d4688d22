package dev.sluice.producer;

import com.fasterxml.jackson.databind.JsonNode;
import com.networknt.schema.Error;
import com.networknt.schema.Schema;
import com.networknt.schema.SchemaRegistry;
import com.networknt.schema.SpecificationVersion;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.DateTimeException;
import java.time.Duration;
import java.time.Instant;
import java.util.Comparator;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;

/**
 * Checks an event's JSON against {@code schemas/json/<kind>.schema.json} (read from the repository, not
 * copied), then the rules the schema files cannot express (their {@code $comment}; docs/events.md,
 * "Accepted values"): lengths in UTF-8 bytes (the schema's {@code maxLength}, read as bytes), no lone
 * UTF-16 surrogate in a string, integers written as integers, and {@code occurred_at} parsed the way Sluice parses it and inside its window
 * (366 days back, 1 hour ahead, Sluice's defaults). The error names the field.
 */
public final class EventValidator {
    /** Sluice's default {@code max_event_age_hours} (366 days). */
    public static final Duration DEFAULT_MAX_AGE = Duration.ofDays(366);
    /** Sluice's default {@code max_event_future_minutes}. */
    public static final Duration DEFAULT_MAX_FUTURE = Duration.ofHours(1);

    private final Map<EventKind, Schema> schemas = new EnumMap<>(EventKind.class);
    private final Map<EventKind, JsonNode> properties = new EnumMap<>(EventKind.class);
    private final Clock clock;
    private final Duration maxAge;
    private final Duration maxFuture;

    private EventValidator(Path schemaDir, Clock clock, Duration maxAge, Duration maxFuture) throws IOException {
        SchemaRegistry registry = SchemaRegistry.withDefaultDialect(SpecificationVersion.DRAFT_2020_12);
        for (EventKind kind : EventKind.values()) {
            Path file = schemaDir.resolve(kind.schemaFile());
            JsonNode node;
            try (InputStream in = Files.newInputStream(file)) {
                node = Json.MAPPER.readTree(in);
            } catch (IOException e) {
                throw new IOException("cannot read JSON Schema " + file + ": " + e.getMessage(), e);
            }
            schemas.put(kind, registry.getSchema(node));
            properties.put(kind, node.path("properties"));
        }
        this.clock = clock;
        this.maxAge = maxAge;
        this.maxFuture = maxFuture;
    }

    /** Loads the three schema files from {@code schemaDir} (the repository's {@code schemas/json}). */
    public static EventValidator fromDirectory(Path schemaDir) throws IOException {
        return new EventValidator(schemaDir, Clock.systemUTC(), DEFAULT_MAX_AGE, DEFAULT_MAX_FUTURE);
    }

    /** As {@link #fromDirectory(Path)}, with the clock and window Sluice's consumer is configured with. */
    public static EventValidator fromDirectory(Path schemaDir, Clock clock, Duration maxAge, Duration maxFuture)
            throws IOException {
        return new EventValidator(schemaDir, clock, maxAge, maxFuture);
    }

    /** Throws {@link InvalidEventException} naming the first offending field; returns normally if valid. */
    public void validate(EventKind kind, JsonNode event) {
        if (event == null || !event.isObject()) {
            throw new InvalidEventException(kind, "(record)", "the value must be a JSON object");
        }
        List<Error> errors = schemas.get(kind).validate(event);
        if (!errors.isEmpty()) {
            Error first = errors.stream()
                    .min(Comparator.comparing((Error e) -> fieldOf(e)).thenComparing(Error::getMessage))
                    .orElseThrow();
            throw new InvalidEventException(kind, fieldOf(first), first.getMessage());
        }
        var fields = properties.get(kind).properties();
        for (Map.Entry<String, JsonNode> property : fields) {
            String name = property.getKey();
            JsonNode rule = property.getValue();
            JsonNode value = event.get(name);
            if (value == null || value.isNull()) {
                continue;
            }
            if (value.isTextual() && hasLoneSurrogate(value.textValue())) {
                throw new InvalidEventException(kind, name, "contains a lone UTF-16 surrogate (not valid Unicode)");
            }
            if (value.isTextual() && rule.has("maxLength")) {
                int bytes = value.textValue().getBytes(StandardCharsets.UTF_8).length;
                int max = rule.get("maxLength").intValue();
                if (bytes > max) {
                    throw new InvalidEventException(kind, name, "is " + bytes + " UTF-8 bytes, at most " + max);
                }
            }
            if (value.isNumber() && !value.isIntegralNumber() && allowsInteger(rule)) {
                throw new InvalidEventException(
                        kind, name, "must be written as an integer (got " + value.toString() + ")");
            }
        }
        String occurredAt = event.path("occurred_at").asText();
        Instant at;
        try {
            at = Rfc3339.parse(occurredAt);
        } catch (DateTimeException e) {
            throw new InvalidEventException(kind, "occurred_at", e.getMessage());
        }
        Instant now = clock.instant();
        if (at.isBefore(now.minus(maxAge)) || at.isAfter(now.plus(maxFuture))) {
            throw new InvalidEventException(kind, "occurred_at",
                    occurredAt + " is outside the accepted window [now - " + human(maxAge) + ", now + "
                            + human(maxFuture) + "] (now = " + now + ")");
        }
    }

    /** Whether {@code s} holds a surrogate that is not half of a pair (no UTF-8 form; Sluice's parser refuses it). */
    static boolean hasLoneSurrogate(String s) {
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (Character.isHighSurrogate(c) && i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1))) {
                i++;
            } else if (Character.isSurrogate(c)) {
                return true;
            }
        }
        return false;
    }

    /** "366 days", "1 hours", "90 s". */
    private static String human(Duration d) {
        if (!d.isZero() && d.equals(Duration.ofDays(d.toDays()))) {
            return d.toDays() + " days";
        }
        if (!d.isZero() && d.equals(Duration.ofHours(d.toHours()))) {
            return d.toHours() + " hours";
        }
        return d.toSeconds() + " s";
    }

    private static boolean allowsInteger(JsonNode rule) {
        JsonNode type = rule.get("type");
        if (type == null) {
            return false;
        }
        if (type.isTextual()) {
            return type.textValue().equals("integer");
        }
        for (JsonNode t : type) {
            if (t.asText().equals("integer")) {
                return true;
            }
        }
        return false;
    }

    /** The top-level field an error is about: the missing one for {@code required}, else the instance path. */
    private static String fieldOf(Error error) {
        if ("required".equals(error.getKeyword()) && error.getProperty() != null) {
            return error.getProperty();
        }
        var location = error.getInstanceLocation();
        if (location != null && location.getNameCount() > 0) {
            return location.getName(0);
        }
        return "(record)";
    }
}
