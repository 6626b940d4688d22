package dev.sluice.producer;

import java.time.DateTimeException;
import java.time.Instant;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.time.temporal.ChronoUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * {@code occurred_at} as Sluice reads and stores it (docs/events.md, "occurred_at"): RFC 3339
 * {@code date-time}, any offset from -23:59 to +23:59, fractions truncated to microseconds, and a leap
 * second {@code 23:59:60} UTC stored as {@code 23:59:59.999999}. {@link #format} writes the stored form.
 */
public final class Rfc3339 {
    private static final Pattern DATE_TIME = Pattern.compile(
            "(\\d{4})-(\\d{2})-(\\d{2})[Tt](\\d{2}):(\\d{2}):(\\d{2})(?:\\.(\\d+))?(?:([Zz])|([+-])(\\d{2}):(\\d{2}))");
    private static final DateTimeFormatter UTC_MICROS =
            DateTimeFormatter.ofPattern("uuuu-MM-dd'T'HH:mm:ss.SSSSSS'Z'").withZone(ZoneOffset.UTC);

    private Rfc3339() {}

    /** The UTC form with microseconds, e.g. {@code 2026-11-24T07:00:00.123000Z}; finer digits are dropped. */
    public static String format(Instant instant) {
        return UTC_MICROS.format(instant.truncatedTo(ChronoUnit.MICROS));
    }

    /** Parses an RFC 3339 date-time to the instant Sluice stores; the message says what is wrong. */
    public static Instant parse(String text) {
        Matcher m = DATE_TIME.matcher(text);
        if (!m.matches()) {
            throw new DateTimeException("not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM)): " + text);
        }
        int second = Integer.parseInt(m.group(6));
        LocalDateTime local;
        try {
            local = LocalDateTime.of(
                    Integer.parseInt(m.group(1)),
                    Integer.parseInt(m.group(2)),
                    Integer.parseInt(m.group(3)),
                    Integer.parseInt(m.group(4)),
                    Integer.parseInt(m.group(5)),
                    second == 60 ? 59 : second);
        } catch (DateTimeException e) {
            throw new DateTimeException("not a valid date-time: " + text + " (" + e.getMessage() + ")");
        }
        int offsetSeconds = 0;
        if (m.group(8) == null) {
            int hours = Integer.parseInt(m.group(10));
            int minutes = Integer.parseInt(m.group(11));
            if (hours > 23 || minutes > 59) {
                throw new DateTimeException("offset out of range (-23:59..+23:59): " + text);
            }
            offsetSeconds = (hours * 3600 + minutes * 60) * (m.group(9).equals("-") ? -1 : 1);
        }
        long epochSecond = local.toEpochSecond(ZoneOffset.UTC) - offsetSeconds;
        String fraction = m.group(7) == null ? "" : m.group(7);
        int micros = fraction.isEmpty() ? 0 : Integer.parseInt((fraction + "00000").substring(0, 6));
        Instant utc = Instant.ofEpochSecond(epochSecond, micros * 1000L);
        if (second == 60) {
            LocalDateTime atUtc = LocalDateTime.ofEpochSecond(epochSecond, 0, ZoneOffset.UTC);
            if (atUtc.getHour() != 23 || atUtc.getMinute() != 59) {
                throw new DateTimeException("second 60 is only a leap second at 23:59 UTC: " + text);
            }
            return Instant.ofEpochSecond(epochSecond, 999_999_000L);
        }
        return utc;
    }
}
