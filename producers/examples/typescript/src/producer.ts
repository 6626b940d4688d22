/**
 * Sluice events out to Kafka with @platformatic/kafka: each event is validated (`EventValidator`),
 * encoded as JSON with the `sluice-encoding: json` header, and sent on its kind's topic under its
 * contract key. The partition is `compatibilityPartitioner` — `(murmur2(key) & 0x7fffffff)`, then the
 * client takes it modulo the partition count — i.e. the Java client's. The client's *default*
 * partitioner (`murmur2(key) >>> 0`) is not: it differs for every key whose hash has the top bit set.
 *
 * Delivery is idempotent (`idempotent: true`, which makes the client use acks=all, one request in
 * flight, and retries under the same producer id and sequence numbers). If a send still fails with a
 * retriable error, `send` sends the same message again — same key, same bytes, same `event_id` — up to
 * `attempts` times; should both copies land, Sluice counts the event once.
 */
import {
  compatibilityPartitioner,
  GenericError,
  NetworkError,
  ProduceAcks,
  Producer,
  stringSerializers,
  TimeoutError,
  type MessageToProduce,
  type ProduceResult,
  type ProducerOptions,
} from "@platformatic/kafka";
import type { EventKind, SluiceEvent } from "./events.js";
import type { EventValidator } from "./validate.js";

export const ENCODING_HEADER = "sluice-encoding";

export type Topics = Record<EventKind, string>;
export const DEFAULT_TOPICS: Topics = { rank: "rank-events", crawl: "crawl-events", click: "click-events" };

export type Message = MessageToProduce<string, string, string, string>;

/** What `SluiceProducer` needs of a client: the `send`/`close` of @platformatic/kafka's `Producer`. */
export interface Sender {
  send(options: { messages: Message[] }): Promise<ProduceResult>;
  close(): Promise<void>;
}

export interface Delivery {
  topic: string;
  partition: number;
  offset: bigint;
}

/** The client settings: idempotent, acks=all, the Java-compatible murmur2 partitioner. */
export function producerOptions(brokers: string[]): ProducerOptions<string, string, string, string> {
  return {
    clientId: "sluice-producer-typescript",
    bootstrapBrokers: brokers,
    serializers: stringSerializers,
    idempotent: true,
    acks: ProduceAcks.ALL,
    partitioner: compatibilityPartitioner,
    retries: 10,
    retryDelay: 500,
  };
}

export class SluiceProducer {
  private readonly sender: Sender;

  /** `brokers` as `host:port` strings, or any {@link Sender} (tests pass a fake); `attempts` >= 1. */
  constructor(
    brokers: string[] | Sender,
    private readonly topics: Topics,
    private readonly validator: EventValidator,
    private readonly attempts = 3,
  ) {
    if (!Number.isInteger(attempts) || attempts < 1) {
      throw new Error(`attempts must be an integer of at least 1 (got ${attempts})`);
    }
    this.sender = Array.isArray(brokers)
      ? new Producer<string, string, string, string>(producerOptions(brokers))
      : brokers;
  }

  /** The message for `event`: validated, JSON value, contract key, encoding header. */
  message(event: SluiceEvent): Message {
    this.validator.validate(event.kind, event.value);
    return {
      topic: this.topics[event.kind],
      key: event.key,
      value: JSON.stringify(event.value),
      headers: { [ENCODING_HEADER]: "json" },
    };
  }

  /**
   * Sends `event` and waits for the broker's acknowledgement. Throws `InvalidEventError` before sending
   * anything if the event breaks the contract; `DeliveryError` if every attempt failed.
   */
  async send(event: SluiceEvent): Promise<Delivery> {
    const message = this.message(event);
    for (let attempt = 1; ; attempt++) {
      try {
        const result = await this.sender.send({ messages: [message] });
        const at = result.offsets?.[0];
        if (at === undefined) {
          throw new Error("the broker acknowledged no offset");
        }
        return { topic: at.topic, partition: at.partition, offset: at.offset };
      } catch (err) {
        if (!isRetriable(err) || attempt >= this.attempts) {
          throw new DeliveryError(message.topic, event.value.event_id, attempt, err);
        }
        // Same message object: same key, same value, same event_id.
      }
    }
  }

  async close(): Promise<void> {
    await this.sender.close();
  }
}

/** A network error or a time-out, or a broker error the client marks retriable. */
export function isRetriable(err: unknown): boolean {
  if (!(err instanceof Error) || !GenericError.isGenericError(err)) {
    return false;
  }
  return err.code === NetworkError.code || err.code === TimeoutError.code || (err as GenericError).findBy("canRetry", true) !== null;
}

/** Every attempt to deliver one event failed. */
export class DeliveryError extends Error {
  constructor(topic: string, eventId: string, attempts: number, cause: unknown) {
    super(`delivery of event ${eventId} to topic ${topic} failed after ${attempts} attempt(s): ${String(cause)}`, {
      cause,
    });
    this.name = "DeliveryError";
  }
}
