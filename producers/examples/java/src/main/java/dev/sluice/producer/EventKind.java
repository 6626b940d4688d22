package dev.sluice.producer;

import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/** The three kinds of Sluice event; each has its own topic and JSON Schema file ({@code <kind>.schema.json}). */
public enum EventKind {
    RANK,
    CRAWL,
    CLICK;

    /** The name used in the contract, the vectors and the schema file name: {@code rank}, {@code crawl}, {@code click}. */
    public String wireName() {
        return name().toLowerCase(Locale.ROOT);
    }

    /** The file under {@code schemas/json} that describes this kind. */
    public String schemaFile() {
        return wireName() + ".schema.json";
    }

    /** Parses a wire name; the error lists the accepted values. */
    public static EventKind parse(String wireName) {
        for (EventKind kind : values()) {
            if (kind.wireName().equals(wireName)) {
                return kind;
            }
        }
        String accepted = Arrays.stream(values()).map(EventKind::wireName).collect(Collectors.joining(", "));
        throw new IllegalArgumentException("unknown event kind '" + wireName + "' (accepted: " + accepted + ")");
    }
}
