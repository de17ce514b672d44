package io.pgtrickle.examples.sink;

import io.pgtrickle.api.notify.Notification;
import io.pgtrickle.api.notify.NotificationSink;
import io.pgtrickle.api.notify.NotificationSinkType;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.ConfigurationPolicy;
import org.osgi.service.component.annotations.Modified;
import org.osgi.service.metatype.annotations.AttributeDefinition;
import org.osgi.service.metatype.annotations.Designate;
import org.osgi.service.metatype.annotations.ObjectClassDefinition;

/**
 * An example third-party sink: appends each notification as one JSON line to a file.
 *
 * <p>Everything a sink needs is here: implement {@link NotificationSink}, register it as a DS component
 * with {@link NotificationSinkType} (its type; the sink id is {@code example:example} unless the
 * configuration sets {@code pgtrickle.sink.name}), and let the configuration's properties become the
 * service's ({@code pgtrickle.sink.channels}, {@code pgtrickle.sink.maxAttempts},
 * {@code pgtrickle.sink.timeoutMs}).
 *
 * <p>The file is, by default, {@code data/example-sink.jsonl} under the pgtrickle home (system property
 * {@code pgtrickle.home}, set by {@code bin/pgtrickle}); in Karaf {@code example-sink.jsonl} under
 * {@code karaf.data}; otherwise {@code example-sink.jsonl} in the working directory.
 */
@Component(service = NotificationSink.class, configurationPid = ExampleSink.PID,
        configurationPolicy = ConfigurationPolicy.OPTIONAL)
@NotificationSinkType(type = "example")
@Designate(ocd = ExampleSink.Config.class)
public class ExampleSink implements NotificationSink {

    static final String PID = "io.pgtrickle.sink.example";

    @ObjectClassDefinition(name = "pgtrickle example sink",
            description = "Appends each notification as one JSON line to a file.")
    public @interface Config {
        @AttributeDefinition(required = false, description = "The file to append to; empty for "
                + "${pgtrickle.home}/data/example-sink.jsonl, else ${karaf.data}/example-sink.jsonl, "
                + "else example-sink.jsonl in the working directory")
        String file() default "";

        // pgtrickle_sink_channels is the service property pgtrickle.sink.channels (DS maps _ to .)
        @AttributeDefinition(name = "Channels", description = "Subscription channels to receive; * for all")
        String[] pgtrickle_sink_channels() default "*";
    }

    private volatile Path file;

    @Activate
    @Modified
    void configure(Config config) {
        file = resolve(config.file());
    }

    static Path resolve(String configured) {
        if (configured != null && !configured.isBlank()) {
            return Paths.get(configured.trim()).toAbsolutePath();
        }
        String home = System.getProperty("pgtrickle.home");
        if (home != null && !home.isBlank()) {
            return Paths.get(home, "data", "example-sink.jsonl");
        }
        String karafData = System.getProperty("karaf.data");
        if (karafData != null && !karafData.isBlank()) {
            return Paths.get(karafData, "example-sink.jsonl");
        }
        return Paths.get("example-sink.jsonl").toAbsolutePath();
    }

    /**
     * Appends the line and forces it to disk before returning: returning means delivered, and the notify
     * bundle then deletes the notification from its outbox. Any exception means "retry later". Calls for
     * different stream tables may come at the same time, hence {@code synchronized}: lines never interleave.
     * When the delivery times out the thread is interrupted, which closes the channel and fails the write.
     */
    @Override
    public synchronized void deliver(Notification notification) throws IOException {
        Path target = file;
        Path parent = target.getParent();
        if (parent != null) {
            Files.createDirectories(parent);
        }
        byte[] line = (toJson(notification) + "\n").getBytes(StandardCharsets.UTF_8);
        try (FileChannel channel = FileChannel.open(target, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.APPEND)) {
            ByteBuffer buffer = ByteBuffer.wrap(line);
            while (buffer.hasRemaining()) {
                channel.write(buffer);
            }
            channel.force(false);
        }
    }

    /**
     * One JSON object on one line. {@code id} is stable across retries and replays: a reader that must
     * see each notification once skips ids it has already seen. {@code payload} is the notification's
     * JSON (what {@code NOTIFY} sends), embedded as is.
     */
    static String toJson(Notification n) {
        StringBuilder json = new StringBuilder(256).append('{');
        string(json, "id", n.id()).append(',');
        string(json, "sink", n.sinkId()).append(',');
        string(json, "stream_table", n.streamTable()).append(',');
        string(json, "channel", n.channel()).append(',');
        json.append("\"refresh_id\":").append(n.refreshId()).append(',');
        json.append("\"first_refresh_id\":").append(n.firstRefreshId()).append(',');
        json.append("\"refreshes\":").append(n.refreshes()).append(',');
        json.append("\"inserted\":").append(n.insertedCount()).append(',');
        json.append("\"deleted\":").append(n.deletedCount()).append(',');
        string(json, "created_at", n.createdAt().toString()).append(',');
        json.append("\"attempt\":").append(n.attempt()).append(',');
        // valid JSON has line breaks only as whitespace between tokens: keep the record on one line
        String payload = n.payload().isBlank() ? "null" : n.payload().replace('\r', ' ').replace('\n', ' ');
        json.append("\"payload\":").append(payload);
        return json.append('}').toString();
    }

    private static StringBuilder string(StringBuilder json, String key, String value) {
        json.append('"').append(key).append("\":\"");
        for (int i = 0; i < value.length(); i++) {
            char c = value.charAt(i);
            switch (c) {
                case '"' -> json.append("\\\"");
                case '\\' -> json.append("\\\\");
                case '\n' -> json.append("\\n");
                case '\r' -> json.append("\\r");
                case '\t' -> json.append("\\t");
                default -> {
                    if (c < 0x20) {
                        json.append(String.format("\\u%04x", (int) c));
                    } else {
                        json.append(c);
                    }
                }
            }
        }
        return json.append('"');
    }
}
