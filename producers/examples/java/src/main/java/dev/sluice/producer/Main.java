package dev.sluice.producer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.kafka.clients.producer.RecordMetadata;

/**
 * {@code send --brokers B --vectors FILE --topic-rank T --topic-crawl T --topic-click T [--schemas DIR]}:
 * builds every valid event of the shared test vectors ({@code schemas/vectors/events.json}) as a typed
 * event, publishes it, and prints one JSON line per delivered record
 * ({@code {"name", "topic", "partition", "offset"}}). Errors go to stderr with exit status 1 (2 for usage).
 */
public final class Main {
    private static final List<String> REQUIRED =
            List.of("--brokers", "--vectors", "--topic-rank", "--topic-crawl", "--topic-click");
    private static final String USAGE = "usage: run.sh send --brokers HOST:PORT --vectors FILE"
            + " --topic-rank TOPIC --topic-crawl TOPIC --topic-click TOPIC [--schemas DIR]"
            + " (--schemas defaults to $SLUICE_SCHEMAS_DIR)";

    private Main() {}

    public static void main(String[] args) {
        int status;
        try {
            status = run(args, System.out);
        } catch (UsageException e) {
            System.err.println("error: " + e.getMessage());
            System.err.println(USAGE);
            status = 2;
        } catch (Exception e) {
            System.err.println("error: " + e.getMessage());
            status = 1;
        }
        System.exit(status);
    }

    static int run(String[] args, PrintStream out) throws IOException, InterruptedException {
        if (args.length == 0 || !args[0].equals("send")) {
            throw new UsageException(args.length == 0 ? "missing command" : "unknown command '" + args[0] + "'");
        }
        Map<String, String> opts = new HashMap<>();
        for (int i = 1; i < args.length; i += 2) {
            String name = args[i];
            if (!REQUIRED.contains(name) && !name.equals("--schemas")) {
                throw new UsageException("unknown option '" + name + "'");
            }
            if (i + 1 >= args.length) {
                throw new UsageException("option " + name + " needs a value");
            }
            opts.put(name, args[i + 1]);
        }
        for (String name : REQUIRED) {
            if (!opts.containsKey(name)) {
                throw new UsageException("missing option " + name);
            }
        }
        String schemas = opts.getOrDefault("--schemas", System.getenv("SLUICE_SCHEMAS_DIR"));
        if (schemas == null || schemas.isEmpty()) {
            throw new UsageException("no schema directory: pass --schemas or set SLUICE_SCHEMAS_DIR");
        }

        EventValidator validator = EventValidator.fromDirectory(Path.of(schemas));
        Path vectorsFile = Path.of(opts.get("--vectors"));
        JsonNode vectors;
        try {
            vectors = Json.MAPPER.readTree(Files.readAllBytes(vectorsFile));
        } catch (IOException e) {
            throw new IOException("cannot read vectors file " + vectorsFile + ": " + e, e);
        }
        var topics = new SluiceProducer.Topics(
                opts.get("--topic-rank"), opts.get("--topic-crawl"), opts.get("--topic-click"));

        try (SluiceProducer producer = new SluiceProducer(opts.get("--brokers"), topics, validator)) {
            for (JsonNode vector : vectors.path("valid")) {
                String name = vector.path("name").asText();
                EventKind kind = EventKind.parse(vector.path("kind").asText());
                SluiceEvent event;
                try {
                    event = Events.fromJson(kind, vector.get("event"), validator);
                } catch (InvalidEventException e) {
                    throw new IOException("vector '" + name + "': " + e.getMessage(), e);
                }
                String expectedKey = vector.path("key").asText();
                if (!event.key().equals(expectedKey)) {
                    throw new IOException("vector '" + name + "': key " + event.key() + " differs from the vector's "
                            + expectedKey);
                }
                RecordMetadata sent = producer.send(event);
                ObjectNode line = Json.MAPPER.createObjectNode();
                line.put("name", name);
                line.put("topic", sent.topic());
                line.put("partition", sent.partition());
                line.put("offset", sent.offset());
                out.println(Json.MAPPER.writeValueAsString(line));
            }
        }
        out.flush();
        return 0;
    }

    /** A command line that cannot be run; exit status 2 with the usage line. */
    static final class UsageException extends IllegalArgumentException {
        private static final long serialVersionUID = 1L;

        UsageException(String message) {
            super(message);
        }
    }
}
