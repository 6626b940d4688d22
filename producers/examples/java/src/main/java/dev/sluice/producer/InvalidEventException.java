package dev.sluice.producer;

/** An event the contract refuses; {@link #field()} names the offending field, as Sluice's rejection would. */
public final class InvalidEventException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    private final EventKind kind;
    private final String field;

    public InvalidEventException(EventKind kind, String field, String detail) {
        super("invalid " + kind.wireName() + " event: field '" + field + "': " + detail);
        this.kind = kind;
        this.field = field;
    }

    public EventKind kind() {
        return kind;
    }

    /** The field at fault ({@code "(record)"} when the value is not a JSON object at all). */
    public String field() {
        return field;
    }
}
