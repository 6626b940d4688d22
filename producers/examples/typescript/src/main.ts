/**
 * `send --brokers B --vectors FILE --topic-rank T --topic-crawl T --topic-click T [--schemas DIR]`:
 * builds every valid event of the shared test vectors (`schemas/vectors/events.json`) through the typed
 * builders, publishes it, and prints one JSON line per delivered record (`{"name", "topic",
 * "partition", "offset"}`). Errors go to stderr with exit status 1 (2 for a bad command line).
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parseKind } from "./events.js";
import { eventFromJson } from "./from-json.js";
import { SluiceProducer } from "./producer.js";
import { EventValidator, InvalidEventError } from "./validate.js";

const USAGE =
  "usage: run.sh send --brokers HOST:PORT[,HOST:PORT] --vectors FILE --topic-rank TOPIC --topic-crawl TOPIC" +
  " --topic-click TOPIC [--schemas DIR] (--schemas defaults to $SLUICE_SCHEMAS_DIR)";

class UsageError extends Error {}

interface Vector {
  name: string;
  kind: string;
  key: string;
  event: unknown;
}

async function run(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command !== "send") {
    throw new UsageError(command === undefined ? "missing command" : `unknown command '${command}'`);
  }
  let values;
  try {
    ({ values } = parseArgs({
      args: rest,
      strict: true,
      options: {
        brokers: { type: "string" },
        vectors: { type: "string" },
        "topic-rank": { type: "string" },
        "topic-crawl": { type: "string" },
        "topic-click": { type: "string" },
        schemas: { type: "string" },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  for (const name of ["brokers", "vectors", "topic-rank", "topic-crawl", "topic-click"] as const) {
    if (values[name] === undefined) {
      throw new UsageError(`missing option --${name}`);
    }
  }
  const schemas = values.schemas ?? process.env["SLUICE_SCHEMAS_DIR"];
  if (!schemas) {
    throw new UsageError("no schema directory: pass --schemas or set SLUICE_SCHEMAS_DIR");
  }

  const validator = EventValidator.fromDirectory(schemas);
  let vectors: { valid: Vector[] };
  try {
    vectors = JSON.parse(readFileSync(values.vectors!, "utf8")) as { valid: Vector[] };
  } catch (err) {
    throw new Error(`cannot read vectors file ${values.vectors}: ${(err as Error).message}`, { cause: err });
  }
  const producer = new SluiceProducer(
    values.brokers!.split(","),
    { rank: values["topic-rank"]!, crawl: values["topic-crawl"]!, click: values["topic-click"]! },
    validator,
  );
  try {
    for (const vector of vectors.valid) {
      let event;
      try {
        event = eventFromJson(parseKind(vector.kind), vector.event, validator);
      } catch (err) {
        throw new Error(`vector '${vector.name}': ${(err as Error).message}`, { cause: err });
      }
      if (event.key !== vector.key) {
        throw new Error(`vector '${vector.name}': key ${event.key} differs from the vector's ${vector.key}`);
      }
      const at = await producer.send(event);
      process.stdout.write(
        JSON.stringify({ name: vector.name, topic: at.topic, partition: at.partition, offset: Number(at.offset) }) +
          "\n",
      );
    }
  } finally {
    await producer.close();
  }
}

run(process.argv.slice(2)).then(
  () => process.exit(0),
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`error: ${err.message}\n${USAGE}\n`);
      process.exit(2);
    }
    const detail = err instanceof InvalidEventError || !(err instanceof Error) ? String(err) : err.message;
    process.stderr.write(`error: ${detail}\n`);
    process.exit(1);
  },
);
