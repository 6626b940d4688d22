/**
 * The shared test vectors (`schemas/vectors/events.json`) against this library: every valid event
 * builds, validates and serializes to the vector's JSON under the vector's key and partition (computed
 * by the client's own partitioner functions); every invalid one is refused naming the vector's field.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { compatibilityPartitioner, defaultPartitioner, murmur2 } from "@platformatic/kafka";
import { parseKind } from "../src/events.js";
import { eventFromJson } from "../src/from-json.js";
import { DEFAULT_TOPICS, ENCODING_HEADER, SluiceProducer, type Sender } from "../src/producer.js";
import { EventValidator, InvalidEventError } from "../src/validate.js";
import { SCHEMAS, VECTORS } from "./paths.js";

interface Vectors {
  partitions: number;
  valid: { name: string; kind: string; key: string; partition: number; event: Record<string, unknown> }[];
  invalid: { name: string; kind: string; field: string; event: Record<string, unknown> }[];
}

const vectors = JSON.parse(readFileSync(VECTORS, "utf8")) as Vectors;
// The vector days are 2000-01-01 and 2000-01-02; offline tests put "now" three days after the first.
const validator = EventValidator.fromDirectory(SCHEMAS, { now: () => Date.parse("2000-01-04T00:00:00Z") });
const unused: Sender = {
  send: () => Promise.reject(new Error("not sent in this test")),
  close: () => Promise.resolve(),
};
const producer = new SluiceProducer(unused, DEFAULT_TOPICS, validator);

/** The partition @platformatic/kafka gives a keyed record: partitioner(key) % partitions (producer.js). */
function clientPartition(partitioner: typeof compatibilityPartitioner, key: string, partitions: number): number {
  return partitioner({ topic: "t" }, Buffer.from(key, "utf8")) % partitions;
}

test("the vectors are there", () => {
  assert.equal(vectors.partitions, 6);
  assert.ok(vectors.valid.length >= 15, `valid vectors: ${vectors.valid.length}`);
  assert.ok(vectors.invalid.length >= 10, `invalid vectors: ${vectors.invalid.length}`);
});

describe("valid vectors build to their JSON, key and partition", () => {
  for (const v of vectors.valid) {
    test(v.name, () => {
      const kind = parseKind(v.kind);
      const event = eventFromJson(kind, v.event, validator);
      assert.equal(event.kind, kind);
      assert.equal(event.key, v.key);
      const message = producer.message(event);
      assert.equal(message.key, v.key);
      assert.equal(message.topic, DEFAULT_TOPICS[kind]);
      assert.deepEqual(JSON.parse(message.value as string), v.event, "the JSON the producer writes");
      assert.deepEqual(message.headers, { [ENCODING_HEADER]: "json" });
      assert.equal(clientPartition(compatibilityPartitioner, v.key, vectors.partitions), v.partition);
      assert.equal(((murmur2(Buffer.from(v.key, "utf8")) & 0x7fffffff) % vectors.partitions), v.partition);
    });
  }
});

describe("invalid vectors are refused naming their field", () => {
  for (const v of vectors.invalid) {
    test(v.name, () => {
      assert.throws(
        () => eventFromJson(parseKind(v.kind), v.event, validator),
        (err: unknown) => {
          assert.ok(err instanceof InvalidEventError, String(err));
          assert.equal(err.field, v.field, err.message);
          assert.match(err.message, new RegExp(`field '${v.field}'`));
          return true;
        },
      );
    });
  }
});

test("the client's default partitioner is not the contract's: some keys land elsewhere", () => {
  // defaultPartitioner is murmur2(key) >>> 0 (unsigned); Java masks the sign bit. They part ways for
  // every key whose hash has the top bit set; among 100 keys some do.
  const keys = Array.from({ length: 100 }, (_, i) => `acme/campaign-${i}`);
  const differ = keys.filter(
    (k) => clientPartition(defaultPartitioner, k, 6) !== clientPartition(compatibilityPartitioner, k, 6),
  );
  assert.ok(differ.length > 0, "expected keys the default partitioner misroutes");
});
