// Prints Kafka's default partition for each key given on the command line: one line
// "<partition>\t<key>" per key, computed by the Java client itself
// (org.apache.kafka.common.utils.Utils.murmur2 and toPositive, as BuiltInPartitioner does).
// Run with the kafka-clients jar on the class path (single-file source launch, Java 11+):
//   java -cp kafka-clients-<v>.jar KafkaPartition.java <partitions> <key>...
import java.nio.charset.StandardCharsets;
import org.apache.kafka.common.utils.Utils;

public class KafkaPartition {
    public static void main(String[] args) {
        int partitions = Integer.parseInt(args[0]);
        for (int i = 1; i < args.length; i++) {
            byte[] key = args[i].getBytes(StandardCharsets.UTF_8);
            int partition = Utils.toPositive(Utils.murmur2(key)) % partitions;
            System.out.println(partition + "\t" + args[i]);
        }
    }
}
