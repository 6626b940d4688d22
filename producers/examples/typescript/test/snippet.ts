// The README's (and docs/events.md's) TypeScript snippet, kept here so tsc type-checks it. Not run.
import { clickEvent, newEventId, DEFAULT_TOPICS, EventValidator, InvalidEventError, SluiceProducer } from "../src/index.js";

export async function snippet(): Promise<void> {
  // --- snippet start
  const producer = new SluiceProducer(["kafka:9092"], DEFAULT_TOPICS, EventValidator.fromDirectory("schemas/json"));
  const click = clickEvent({ eventId: newEventId(), tenantId: "acme", occurredAt: new Date(), shortCode: "x7Gq",
                             referrer: "https://news.example/", country: "de", visitorId: "v-42" });
  try {
    const { partition, offset } = await producer.send(click); // key "acme/x7Gq", murmur2 partition, acks=all
    console.log(`click stored at partition ${partition}, offset ${offset}`);
  } catch (err) {
    if (err instanceof InvalidEventError) console.warn(`refused: field ${err.field}: ${err.message}`);
    else throw err;
  }
  await producer.close();
  // --- snippet end
}
