package dev.sluice.producer;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Instant;
import java.util.logging.Logger;
import org.apache.kafka.clients.producer.RecordMetadata;

/** The README's (and docs/events.md's) Java snippet, kept here so the build type-checks it. Not run. */
final class Snippet {
    private static final Logger log = Logger.getLogger("snippet");

    private Snippet() {}

    static void snippet() throws IOException, InterruptedException {
        // --- snippet start
        var validator = EventValidator.fromDirectory(Path.of("schemas/json"));
        try (var producer = new SluiceProducer("kafka:9092", SluiceProducer.Topics.defaults(), validator)) {
            var click = new ClickEvent(SluiceEvent.newEventId(), "acme", Instant.now(), "x7Gq",
                    "https://news.example/", "de", null, "v-42");
            RecordMetadata at = producer.send(click);   // key "acme/x7Gq", murmur2 partition, acks=all
            log.info("click stored at partition " + at.partition() + ", offset " + at.offset());
        } catch (InvalidEventException e) {
            log.warning("refused: field " + e.field() + ": " + e.getMessage());
        }
        // --- snippet end
    }
}
