package dev.sluice.producer;

import com.fasterxml.jackson.core.JsonProcessingException;
import java.nio.charset.StandardCharsets;
import java.util.Objects;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.errors.RetriableException;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Sluice events out to Kafka: each {@link SluiceEvent} is validated ({@link EventValidator}), encoded as
 * JSON with the {@code sluice-encoding: json} header, and sent on its kind's topic under its contract key.
 * The partition is left to kafka-clients' default partitioner, murmur2 of the key - the contract's.
 *
 * <p>Delivery is idempotent ({@code enable.idempotence=true}, {@code acks=all}): the client retries a
 * batch under the same producer id and sequence numbers, so the broker writes it once. If a send still
 * fails with a retriable error (for example {@code delivery.timeout.ms} passed during an outage),
 * {@link #send} sends the <em>same</em> record again, same key and same {@code event_id}, up to
 * {@code attempts} times; should both copies land, Sluice counts the event once.
 */
public final class SluiceProducer implements AutoCloseable {
    /** The record header naming the value's encoding. */
    public static final String ENCODING_HEADER = "sluice-encoding";

    /** The topic of each kind. */
    public record Topics(String rank, String crawl, String click) {
        public static Topics defaults() {
            return new Topics("rank-events", "crawl-events", "click-events");
        }

        public String of(EventKind kind) {
            return switch (kind) {
                case RANK -> rank;
                case CRAWL -> crawl;
                case CLICK -> click;
            };
        }
    }

    private final Producer<String, byte[]> producer;
    private final Topics topics;
    private final EventValidator validator;
    private final int attempts;

    /** A producer on {@code brokers} with {@link #config}. */
    public SluiceProducer(String brokers, Topics topics, EventValidator validator) {
        this(new KafkaProducer<>(config(brokers)), topics, validator, 3);
    }

    /** Over any {@link Producer} (tests pass a {@code MockProducer}); {@code attempts} >= 1. */
    public SluiceProducer(Producer<String, byte[]> producer, Topics topics, EventValidator validator, int attempts) {
        if (attempts < 1) {
            throw new IllegalArgumentException("attempts must be at least 1 (got " + attempts + ")");
        }
        this.producer = Objects.requireNonNull(producer);
        this.topics = Objects.requireNonNull(topics);
        this.validator = Objects.requireNonNull(validator);
        this.attempts = attempts;
    }

    /**
     * The client settings: idempotent, {@code acks=all}, and no {@code partitioner.class}, so the
     * default (murmur2 of the key, {@code BuiltInPartitioner.partitionForKey}) picks the partition.
     */
    public static Properties config(String brokers) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        // Idempotence keeps order with up to 5 requests in flight per partition.
        p.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5");
        p.put(ProducerConfig.RETRIES_CONFIG, Integer.toString(Integer.MAX_VALUE));
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "120000");
        // How long send() waits for the topic's metadata (an unreachable broker): 20 s, not 60 s, so three
        // attempts give up within a minute.
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "20000");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "sluice-producer-java");
        return p;
    }

    /** The record for {@code event}: validated, JSON value, contract key, encoding header. */
    public ProducerRecord<String, byte[]> record(SluiceEvent event) {
        var json = event.toJson();
        validator.validate(event.kind(), json);
        byte[] value;
        try {
            value = Json.MAPPER.writeValueAsBytes(json);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot encode " + event.kind().wireName() + " event as JSON", e);
        }
        var record = new ProducerRecord<>(topics.of(event.kind()), event.key(), value);
        record.headers().add(ENCODING_HEADER, "json".getBytes(StandardCharsets.UTF_8));
        return record;
    }

    /**
     * Sends {@code event} and waits for the broker's acknowledgement. Throws {@link InvalidEventException}
     * before sending anything if the event breaks the contract, {@link DeliveryException} if every
     * attempt failed.
     */
    public RecordMetadata send(SluiceEvent event) throws InterruptedException {
        ProducerRecord<String, byte[]> record = record(event);
        for (int attempt = 1; ; attempt++) {
            try {
                return producer.send(record).get();
            } catch (ExecutionException e) {
                Throwable cause = e.getCause();
                if (!(cause instanceof RetriableException) || attempt >= attempts) {
                    throw new DeliveryException(record.topic(), event.eventId(), attempt, cause);
                }
                // Same record object: same key, same value, same event_id.
            }
        }
    }

    /** Waits for every record sent so far. */
    public void flush() {
        producer.flush();
    }

    @Override
    public void close() {
        producer.close();
    }

    /** Every attempt to deliver one event failed. */
    public static final class DeliveryException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        DeliveryException(String topic, String eventId, int attempts, Throwable cause) {
            super("delivery of event " + eventId + " to topic " + topic + " failed after " + attempts
                    + " attempt(s): " + cause, cause);
        }
    }
}
