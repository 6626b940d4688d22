package dev.sluice.producer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.DynamicTest.dynamicTest;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.apache.kafka.clients.producer.MockProducer;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.Utils;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * The shared test vectors ({@code schemas/vectors/events.json}) against this library: every valid event
 * builds, validates and serializes to the vector's JSON under the vector's key and partition (computed by
 * kafka-clients' own partitioner code); every invalid one is refused naming the vector's field.
 */
class ContractTest {
    /** The vector days are 2000-01-01 and 2000-01-02; offline tests put "now" three days after the first. */
    static final Clock VECTOR_CLOCK = Clock.fixed(Instant.parse("2000-01-04T00:00:00Z"), ZoneOffset.UTC);

    static JsonNode vectors;
    static EventValidator validator;

    @BeforeAll
    static void load() throws Exception {
        Path file = Path.of(System.getProperty("sluice.vectors"));
        vectors = Json.MAPPER.readTree(Files.readAllBytes(file));
        validator = EventValidator.fromDirectory(
                Path.of(System.getProperty("sluice.schemas")),
                VECTOR_CLOCK,
                EventValidator.DEFAULT_MAX_AGE,
                EventValidator.DEFAULT_MAX_FUTURE);
    }

    static SluiceProducer mockProducer() {
        var mock = new MockProducer<>(true, null, new StringSerializer(), new ByteArraySerializer());
        return new SluiceProducer(mock, SluiceProducer.Topics.defaults(), validator, 3);
    }

    @Test
    void vectorsAreThere() {
        assertEquals(6, vectors.get("partitions").intValue());
        assertTrue(vectors.get("valid").size() >= 15, "valid vectors: " + vectors.get("valid").size());
        assertTrue(vectors.get("invalid").size() >= 10, "invalid vectors: " + vectors.get("invalid").size());
    }

    @TestFactory
    Stream<DynamicTest> validVectorsBuildToTheirJsonKeyAndPartition() {
        int partitions = vectors.get("partitions").intValue();
        SluiceProducer producer = mockProducer();
        List<DynamicTest> tests = new ArrayList<>();
        for (JsonNode v : vectors.get("valid")) {
            tests.add(dynamicTest(v.get("name").asText(), () -> {
                EventKind kind = EventKind.parse(v.get("kind").asText());
                SluiceEvent event = Events.fromJson(kind, v.get("event"), validator);
                assertEquals(kind, event.kind());
                String key = v.get("key").asText();
                assertEquals(key, event.key());

                var record = producer.record(event);
                assertEquals(key, record.key());
                assertEquals(SluiceProducer.Topics.defaults().of(kind), record.topic());
                assertEquals(v.get("event"), Json.MAPPER.readTree(record.value()), "the JSON the producer writes");
                var header = record.headers().lastHeader(SluiceProducer.ENCODING_HEADER);
                assertEquals("json", new String(header.value(), StandardCharsets.UTF_8));

                byte[] keyBytes = key.getBytes(StandardCharsets.UTF_8);
                int expected = v.get("partition").intValue();
                // What KafkaProducer calls for a keyed record when no partitioner.class is set:
                assertEquals(expected, BuiltInPartitioner.partitionForKey(keyBytes, partitions), "partitionForKey");
                // The contract's formula over the client's murmur2:
                assertEquals(expected, Utils.toPositive(Utils.murmur2(keyBytes)) % partitions, "murmur2 formula");
            }));
        }
        return tests.stream();
    }

    @TestFactory
    Stream<DynamicTest> invalidVectorsAreRefusedNamingTheirField() {
        List<DynamicTest> tests = new ArrayList<>();
        for (JsonNode v : vectors.get("invalid")) {
            tests.add(dynamicTest(v.get("name").asText(), () -> {
                EventKind kind = EventKind.parse(v.get("kind").asText());
                var e = assertThrows(
                        InvalidEventException.class, () -> Events.fromJson(kind, v.get("event"), validator));
                assertEquals(v.get("field").asText(), e.field(), e.getMessage());
                assertTrue(e.getMessage().contains("'" + v.get("field").asText() + "'"), e.getMessage());
            }));
        }
        return tests.stream();
    }
}
