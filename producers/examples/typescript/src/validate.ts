/**
 * Checks an event's JSON against `schemas/json/<kind>.schema.json` (read from the repository, not
 * copied) with Ajv (JSON Schema 2020-12), then the rules the schema files cannot express (their
 * `$comment`; docs/events.md "Accepted values"): lengths in UTF-8 bytes (the schema's `maxLength`,
 * read as bytes), no lone surrogate in a string (Sluice's parser refuses one), and `occurred_at` parsed
 * by Sluice's rules and inside its window (366 days back, 1 hour ahead by default). The error names the
 * field. (`1.0` for an integer cannot happen here: JavaScript has one number type, and
 * `JSON.stringify(1.0)` is `1`.)
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import { EVENT_KINDS, type EventKind } from "./events.js";
import { DateTimeError, parseRfc3339 } from "./rfc3339.js";

/** An event the contract refuses; `field` names the offending field, as Sluice's rejection would. */
export class InvalidEventError extends Error {
  constructor(
    readonly kind: EventKind,
    readonly field: string,
    detail: string,
  ) {
    super(`invalid ${kind} event: field '${field}': ${detail}`);
    this.name = "InvalidEventError";
  }
}

export interface ValidatorOptions {
  /** The clock, in milliseconds since the epoch (default `Date.now`). */
  now?: () => number;
  /** Oldest accepted `occurred_at`, in seconds before now (default 366 days, Sluice's default). */
  maxAgeSeconds?: number;
  /** Latest accepted `occurred_at`, in seconds after now (default 1 hour). */
  maxFutureSeconds?: number;
}

export const DEFAULT_MAX_AGE_SECONDS = 366 * 24 * 3600;
export const DEFAULT_MAX_FUTURE_SECONDS = 3600;

interface PropertyRule {
  type?: string | string[];
  maxLength?: number;
}

export class EventValidator {
  private readonly validators = new Map<EventKind, ValidateFunction>();
  private readonly properties = new Map<EventKind, Record<string, PropertyRule>>();
  private readonly now: () => number;
  private readonly maxAgeSeconds: number;
  private readonly maxFutureSeconds: number;

  private constructor(schemaDir: string, options: ValidatorOptions) {
    // `format: date-time` is checked below by Sluice's own rules (ajv-formats' date-time would also
    // accept a space for `T`, which Sluice refuses), so Ajv leaves formats alone.
    const ajv = new Ajv2020({ strict: true, allErrors: false, validateFormats: false });
    for (const kind of EVENT_KINDS) {
      const file = join(schemaDir, `${kind}.schema.json`);
      let schema: { properties?: Record<string, PropertyRule> };
      try {
        schema = JSON.parse(readFileSync(file, "utf8"));
      } catch (err) {
        throw new Error(`cannot read JSON Schema ${file}: ${(err as Error).message}`);
      }
      this.validators.set(kind, ajv.compile(schema));
      this.properties.set(kind, schema.properties ?? {});
    }
    this.now = options.now ?? Date.now;
    this.maxAgeSeconds = options.maxAgeSeconds ?? DEFAULT_MAX_AGE_SECONDS;
    this.maxFutureSeconds = options.maxFutureSeconds ?? DEFAULT_MAX_FUTURE_SECONDS;
  }

  /** Loads the three schema files from `schemaDir` (the repository's `schemas/json`). */
  static fromDirectory(schemaDir: string, options: ValidatorOptions = {}): EventValidator {
    return new EventValidator(schemaDir, options);
  }

  /** Throws {@link InvalidEventError} naming the first offending field; returns if the event is valid. */
  validate(kind: EventKind, event: unknown): void {
    if (typeof event !== "object" || event === null || Array.isArray(event)) {
      throw new InvalidEventError(kind, "(record)", "the value must be a JSON object");
    }
    const check = this.validators.get(kind)!;
    if (!check(event)) {
      const first = check.errors![0]!;
      throw new InvalidEventError(kind, fieldOf(first), `${first.instancePath || "/"} ${first.message ?? "is invalid"}`);
    }
    const record = event as Record<string, unknown>;
    for (const [name, rule] of Object.entries(this.properties.get(kind)!)) {
      const value = record[name];
      if (typeof value !== "string") {
        continue;
      }
      if (!value.isWellFormed()) {
        throw new InvalidEventError(kind, name, "contains a lone UTF-16 surrogate (not valid Unicode)");
      }
      const bytes = Buffer.byteLength(value, "utf8");
      if (rule.maxLength !== undefined && bytes > rule.maxLength) {
        throw new InvalidEventError(kind, name, `is ${bytes} UTF-8 bytes, at most ${rule.maxLength}`);
      }
    }
    const text = record["occurred_at"] as string;
    let atMicros: number;
    try {
      const at = parseRfc3339(text);
      atMicros = at.epochSeconds * 1_000_000 + at.micros; // exact: below 2^53 for any year up to 2255
    } catch (err) {
      if (err instanceof DateTimeError) {
        throw new InvalidEventError(kind, "occurred_at", err.message);
      }
      throw err;
    }
    const nowMicros = this.now() * 1000;
    if (atMicros < nowMicros - this.maxAgeSeconds * 1_000_000 || atMicros > nowMicros + this.maxFutureSeconds * 1_000_000) {
      throw new InvalidEventError(
        kind,
        "occurred_at",
        `${text} is outside the accepted window [now - ${human(this.maxAgeSeconds)}, now + ${human(this.maxFutureSeconds)}]` +
          ` (now = ${new Date(this.now()).toISOString()})`,
      );
    }
  }
}

/** "366 days", "1 hours", "90 s". */
function human(seconds: number): string {
  if (seconds > 0 && seconds % 86400 === 0) return `${seconds / 86400} days`;
  if (seconds > 0 && seconds % 3600 === 0) return `${seconds / 3600} hours`;
  return `${seconds} s`;
}

/** The top-level field an Ajv error is about: the missing one for `required`, else the instance path. */
function fieldOf(error: ErrorObject): string {
  if (error.keyword === "required") {
    return String((error.params as { missingProperty: string }).missingProperty);
  }
  const segment = error.instancePath.split("/")[1];
  return segment === undefined || segment === "" ? "(record)" : segment.replace(/~1/g, "/").replace(/~0/g, "~");
}
