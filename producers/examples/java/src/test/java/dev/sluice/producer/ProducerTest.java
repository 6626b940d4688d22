package dev.sluice.producer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.core.JsonProcessingException;
import java.nio.file.Path;
import java.time.Clock;
import java.time.DateTimeException;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.producer.MockProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The library's own rules: builders, the checks the schema files cannot make, retries, client settings. */
class ProducerTest {
    static final Instant NOW = Instant.parse("2026-11-24T12:00:00Z");
    static EventValidator validator;

    @BeforeAll
    static void load() throws Exception {
        validator = EventValidator.fromDirectory(
                Path.of(System.getProperty("sluice.schemas")),
                Clock.fixed(NOW, ZoneOffset.UTC),
                EventValidator.DEFAULT_MAX_AGE,
                EventValidator.DEFAULT_MAX_FUTURE);
    }

    static ClickEvent click(String eventId, String tenantId, Instant at) {
        return new ClickEvent(eventId, tenantId, at, "x7Gq", "https://news.example/", "de", null, "v-42");
    }

    static InvalidEventException refusal(SluiceEvent event) {
        return assertThrows(InvalidEventException.class, () -> validator.validate(event.kind(), event.toJson()));
    }

    @Test
    void typedEventsWriteTheContractJson() throws Exception {
        var rank = new RankEvent("r-1", "acme", Instant.parse("2026-11-24T07:00:00.1234567Z"), "spring", "shoes",
                "us", "google", "desktop", null, null);
        assertEquals(
                Json.MAPPER.readTree("{\"schema_version\":1,\"event_id\":\"r-1\",\"tenant_id\":\"acme\","
                        + "\"occurred_at\":\"2026-11-24T07:00:00.123456Z\",\"campaign_id\":\"spring\","
                        + "\"keyword\":\"shoes\",\"geo\":\"us\",\"engine\":\"google\",\"device\":\"desktop\","
                        + "\"url\":null,\"position\":null}"),
                rank.toJson());
        assertEquals("acme/spring", rank.key());
        var crawl = new CrawlEvent("c-1", "acme", NOW, "autumn", "https://a.example/", 200, 4294967295L,
                4294967295L, null);
        validator.validate(EventKind.CRAWL, crawl.toJson());
        assertEquals(4294967295L, crawl.toJson().get("bytes").longValue());
        assertEquals("acme/x7Gq", click("k-1", "acme", NOW).key());
    }

    @Test
    void lengthsCountUtf8BytesNotCharacters() {
        // 64 two-byte characters: 128 bytes, accepted; 65: 130 bytes (65 characters, which the schema's
        // maxLength alone would let through), refused naming the field.
        validator.validate(EventKind.CLICK, click("e", "é".repeat(64), NOW).toJson());
        var e = refusal(click("e", "é".repeat(65), NOW));
        assertEquals("tenant_id", e.field());
        assertTrue(e.getMessage().contains("130 UTF-8 bytes, at most 128"), e.getMessage());
    }

    @Test
    void aLoneSurrogateIsRefusedNamingTheField() {
        var e = refusal(new ClickEvent("e", "acme", NOW, "x7Gq", null, null, null, "v-\uD800"));
        assertEquals("visitor_id", e.field());
        assertEquals("short_code", refusal(new ClickEvent("e", "acme", NOW, "x\uDE00", null, null, null, null)).field());
        validator.validate(EventKind.CLICK, new ClickEvent("e", "acme", NOW, "x\uD83D\uDE00", null, null, null, null).toJson());
    }

    @Test
    void integersMustBeWrittenAsIntegers() throws JsonProcessingException {
        var json = new RankEvent("r", "acme", NOW, "c", "k", "us", "google", "desktop", null, 3).toJson();
        validator.validate(EventKind.RANK, json);
        json.put("position", 3.0);
        var e = assertThrows(InvalidEventException.class, () -> validator.validate(EventKind.RANK, json));
        assertEquals("position", e.field());
    }

    @Test
    void aFieldGivenTwiceDoesNotParse() {
        assertThrows(JsonProcessingException.class,
                () -> Json.MAPPER.readTree("{\"event_id\":\"a\",\"event_id\":\"a\"}"));
    }

    @Test
    void occurredAtMustLieInSluicesWindow() {
        validator.validate(EventKind.CLICK, click("e", "acme", NOW.minus(Duration.ofDays(366))).toJson());
        validator.validate(EventKind.CLICK, click("e", "acme", NOW.plus(Duration.ofHours(1))).toJson());
        assertEquals("occurred_at", refusal(click("e", "acme", NOW.minus(Duration.ofDays(367)))).field());
        assertEquals("occurred_at", refusal(click("e", "acme", NOW.plus(Duration.ofMinutes(61)))).field());
        assertEquals("occurred_at", refusal(click("e", "acme", null)).field());
    }

    @Test
    void missingRequiredValuesNameTheField() {
        assertEquals("event_id", refusal(click(null, "acme", NOW)).field());
        assertEquals("short_code",
                refusal(new ClickEvent("e", "acme", NOW, "", null, null, null, null)).field());
        assertEquals("url", refusal(new CrawlEvent("e", "acme", NOW, "c", "/relative", 200, 1, 1, null)).field());
    }

    @Test
    void rfc3339ParsesAsSluiceStores() {
        assertEquals(Instant.parse("2026-06-15T00:00:00Z"), Rfc3339.parse("2026-06-15T23:59:00+23:59"));
        assertEquals(Instant.parse("2026-06-15T12:00:00.123456Z"), Rfc3339.parse("2026-06-15t12:00:00.1234569z"));
        assertEquals(Instant.parse("2016-12-31T23:59:59.999999Z"), Rfc3339.parse("2016-12-31T18:59:60.5-05:00"));
        assertEquals(Instant.parse("2026-01-01T00:00:00Z"), Rfc3339.parse("2026-01-01T00:00:00-00:00"));
        for (String bad : new String[] {"2026-01-01 00:00:00Z", "2026-01-01T00:00:00", "2026-01-01T00:00:00+0200",
                "2026-01-01T00:00:00+24:00", "2026-01-01T00:00:00+02:60", "2026-01-01T24:00:00Z",
                "2026-02-30T00:00:00Z", "2026-01-01T00:00Z", "2026-01-01T00:00:00.Z", "2026-01-01T12:59:60Z"}) {
            assertThrows(DateTimeException.class, () -> Rfc3339.parse(bad), bad);
        }
        assertEquals("2026-11-24T07:00:00.000000Z", Rfc3339.format(Instant.parse("2026-11-24T07:00:00Z")));
    }

    @Test
    void clientIsIdempotentWithAcksAllAndTheDefaultMurmur2Partitioner() {
        var config = SluiceProducer.config("127.0.0.1:9092");
        assertEquals("true", config.get(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG));
        assertEquals("all", config.get(ProducerConfig.ACKS_CONFIG));
        assertNull(config.get(ProducerConfig.PARTITIONER_CLASS_CONFIG), "the default partitioner is murmur2");
        assertFalse(config.containsKey(ProducerConfig.PARTITIONER_IGNORE_KEYS_CONFIG));
    }

    @Test
    void aRetryResendsTheSameEventId() throws Exception {
        try (var manual = ManualSends.create()) {
            var sent = manual.sendInBackground(click("evt-7", "acme", NOW));
            assertTrue(manual.mock().errorNext(new TimeoutException("delivery.timeout.ms passed")));
            awaitHistory(manual.mock(), 2);
            assertTrue(manual.mock().completeNext());
            sent.get(10, TimeUnit.SECONDS);
            var history = manual.mock().history();
            assertEquals(2, history.size());
            assertEquals("acme/x7Gq", history.get(1).key());
            assertArrayEquals(history.get(0).value(), history.get(1).value(), "the same bytes, same event_id");
            assertEquals("evt-7", Json.MAPPER.readTree(history.get(1).value()).get("event_id").asText());
        }
    }

    @Test
    void aNonRetriableFailureIsNotRetried() throws Exception {
        try (var manual = ManualSends.create()) {
            var sent = manual.sendInBackground(click("evt-8", "acme", NOW));
            assertTrue(manual.mock().errorNext(new RecordTooLargeException("too large")));
            var e = assertThrows(Exception.class, () -> sent.get(10, TimeUnit.SECONDS));
            assertTrue(e.getCause() instanceof SluiceProducer.DeliveryException, e.toString());
            assertEquals(1, manual.mock().history().size());
        }
    }

    @Test
    void anInvalidEventIsNeverSent() {
        var mock = new MockProducer<>(true, null, new StringSerializer(), new ByteArraySerializer());
        try (var producer = new SluiceProducer(mock, SluiceProducer.Topics.defaults(), validator, 3)) {
            var bad = new RankEvent("r", "acme", NOW, "c", "k", "us", "google", "desktop", null, 101);
            var e = assertThrows(InvalidEventException.class, () -> producer.send(bad));
            assertEquals("position", e.field());
            assertTrue(mock.history().isEmpty());
        }
    }

    /** A producer over a {@link MockProducer} whose sends the test completes or fails one at a time. */
    private record ManualSends(MockProducer<String, byte[]> mock, SluiceProducer producer) implements AutoCloseable {
        static ManualSends create() {
            var mock = new MockProducer<>(false, null, new StringSerializer(), new ByteArraySerializer());
            return new ManualSends(mock, new SluiceProducer(mock, SluiceProducer.Topics.defaults(), validator, 3));
        }

        /** Sends on another thread; returns once the first attempt waits in the mock. */
        CompletableFuture<RecordMetadata> sendInBackground(SluiceEvent event) throws InterruptedException {
            var sent = CompletableFuture.supplyAsync(() -> {
                try {
                    return producer.send(event);
                } catch (InterruptedException e) {
                    throw new IllegalStateException(e);
                }
            });
            awaitHistory(mock, 1);
            return sent;
        }

        @Override
        public void close() {
            producer.close();
        }
    }

    private static void awaitHistory(MockProducer<String, byte[]> mock, int size) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (mock.history().size() < size) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("no send #" + size + " within 10 s");
            }
            Thread.sleep(5);
        }
    }
}
