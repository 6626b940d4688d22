/** The library: typed events, validation, the producer. */
export * from "./events.js";
export * from "./producer.js";
export * from "./rfc3339.js";
export * from "./validate.js";
export { eventFromJson } from "./from-json.js";
