// The partition Apache Kafka's Java producer chooses for a keyed record: reads one key
// per line on stdin (UTF-8, without the newline) and prints its partition among the
// number of partitions given as the first argument. Used by tests/it/kafka_compat.rs to
// check that binlake places every key where Java producers and Kafka Streams would.
//
//   java -cp "<kafka lib dir>/*" tests/java/JavaPartition.java 6 < keys

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;

public class JavaPartition {
    public static void main(String[] args) throws Exception {
        int partitions = Integer.parseInt(args[0]);
        BufferedReader in =
                new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        StringBuilder out = new StringBuilder();
        String line;
        while ((line = in.readLine()) != null) {
            byte[] key = line.getBytes(StandardCharsets.UTF_8);
            out.append(BuiltInPartitioner.partitionForKey(key, partitions)).append('\n');
        }
        System.out.print(out);
    }
}
