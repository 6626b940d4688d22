package dev.sluice.producer;

import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/** The three kinds of Sluice event; each has its own topic and JSON Schema file ({@code <kind>.schema.json}). */
public enum EventKind {
    RANK(RankEvent.class),
    CRAWL(CrawlEvent.class),
    CLICK(ClickEvent.class);

    private final Class<? extends SluiceEvent> type;

    EventKind(Class<? extends SluiceEvent> type) {
        this.type = type;
    }

    /** The record class of this kind's events. */
    public Class<? extends SluiceEvent> type() {
        return type;
    }

    /** The kind of an event. */
    public static EventKind of(SluiceEvent event) {
        for (EventKind kind : values()) {
            if (kind.type.isInstance(event)) {
                return kind;
            }
        }
        throw new IllegalArgumentException("not a Sluice event type: " + event.getClass());
    }

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
