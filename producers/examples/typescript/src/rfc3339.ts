/**
 * `occurred_at` as Sluice reads and stores it (docs/events.md, "occurred_at"): RFC 3339 `date-time`
 * with `T`/`t`, `Z`/`z` or an offset -23:59..+23:59, fractions truncated to microseconds, and a leap
 * second `23:59:60` UTC stored as `23:59:59.999999`. JavaScript's `Date` holds milliseconds only, so an
 * instant here is whole epoch seconds plus microseconds.
 */

export interface Instant {
  /** Seconds since 1970-01-01T00:00:00Z. */
  readonly epochSeconds: number;
  /** 0-999999. */
  readonly micros: number;
}

const DATE_TIME =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/** Why a date-time was refused. */
export class DateTimeError extends Error {}

/** Parses an RFC 3339 date-time to the instant Sluice stores; throws {@link DateTimeError} saying why not. */
export function parseRfc3339(text: string): Instant {
  const m = DATE_TIME.exec(text);
  if (m === null) {
    throw new DateTimeError(`not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM)): ${text}`);
  }
  const [year, month, day, hour, minute, second] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i]));
  if (
    month! < 1 || month! > 12 || day! < 1 || day! > daysInMonth(year!, month!) ||
    hour! > 23 || minute! > 59 || second! > 60
  ) {
    throw new DateTimeError(`not a valid date-time: ${text}`);
  }
  let offsetSeconds = 0;
  if (m[8] === undefined) {
    const [oh, om] = [Number(m[10]), Number(m[11])];
    if (oh > 23 || om > 59) {
      throw new DateTimeError(`offset out of range (-23:59..+23:59): ${text}`);
    }
    offsetSeconds = (oh * 3600 + om * 60) * (m[9] === "-" ? -1 : 1);
  }
  const local = Date.UTC(year!, month! - 1, day!, hour!, minute!, Math.min(second!, 59)) / 1000;
  // Date.UTC maps years 0-99 to 1900-1999; set the year exactly.
  const fixed = year! < 100 ? epochOfYear(year!, local) : local;
  const epochSeconds = fixed - offsetSeconds;
  const fraction = m[7] ?? "";
  const micros = fraction === "" ? 0 : Number((fraction + "00000").slice(0, 6));
  if (second === 60) {
    const utc = new Date(epochSeconds * 1000);
    if (utc.getUTCHours() !== 23 || utc.getUTCMinutes() !== 59) {
      throw new DateTimeError(`second 60 is only a leap second at 23:59 UTC: ${text}`);
    }
    return { epochSeconds, micros: 999_999 };
  }
  return { epochSeconds, micros };
}

/** The UTC form with six fractional digits, e.g. `2026-11-24T07:00:00.123000Z`. */
export function formatRfc3339(instant: Instant): string {
  const iso = new Date(instant.epochSeconds * 1000).toISOString(); // YYYY-MM-DDTHH:MM:SS.000Z
  return `${iso.slice(0, 19)}.${String(instant.micros).padStart(6, "0")}Z`;
}

/** A `Date` as an instant (millisecond precision). */
export function fromDate(date: Date): Instant {
  const ms = date.getTime();
  if (Number.isNaN(ms)) {
    throw new DateTimeError("invalid Date");
  }
  const epochSeconds = Math.floor(ms / 1000);
  return { epochSeconds, micros: (ms - epochSeconds * 1000) * 1000 };
}

function daysInMonth(year: number, month: number): number {
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]!;
}

function epochOfYear(year: number, computed: number): number {
  const d = new Date(computed * 1000);
  d.setUTCFullYear(year);
  return d.getTime() / 1000;
}
