package io.pgtrickle.notify;

import io.pgtrickle.api.notify.NotificationSinkType;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What a sink service's properties say about it. Only the {@code pgtrickle.sink.*} properties are
 * read: the others (a webhook's secret, say) are never looked at, let alone logged.
 *
 * @param sinkId      {@code type:name}
 * @param channels    the subscription channels it receives, {@code *} for all
 * @param maxAttempts deliveries tried before a notification becomes a dead letter
 * @param timeoutMs   milliseconds one delivery may take
 */
record SinkSpec(String sinkId, List<String> channels, int maxAttempts, long timeoutMs) {

    static final int DEFAULT_MAX_ATTEMPTS = 10;
    static final long DEFAULT_TIMEOUT_MS = 10_000;

    private static final Logger LOG = LoggerFactory.getLogger(SinkSpec.class);

    /** The spec, or null when the service has no {@code pgtrickle.sink.type}. */
    static SinkSpec of(Map<String, ?> properties) {
        String type = text(properties.get(NotificationSinkType.TYPE));
        if (type == null) {
            return null;
        }
        String name = text(properties.get(NotificationSinkType.NAME));
        String sinkId = type + ":" + (name == null ? type : name);
        List<String> channels = channels(properties.get(NotificationSinkType.CHANNELS));
        int maxAttempts = (int) number(sinkId, NotificationSinkType.MAX_ATTEMPTS, properties.get(NotificationSinkType.MAX_ATTEMPTS),
                DEFAULT_MAX_ATTEMPTS, 1, Integer.MAX_VALUE);
        long timeoutMs = number(sinkId, NotificationSinkType.TIMEOUT_MS, properties.get(NotificationSinkType.TIMEOUT_MS),
                DEFAULT_TIMEOUT_MS, 1, Integer.MAX_VALUE);
        return new SinkSpec(sinkId, channels, maxAttempts, timeoutMs);
    }

    private static String text(Object value) {
        if (value instanceof String[] array && array.length > 0) {
            value = array[0];
        }
        if (value == null) {
            return null;
        }
        String s = value.toString().trim();
        return s.isEmpty() ? null : s;
    }

    /** A String (commas or blanks separate several), a String[] or a collection; {@code *} when none. */
    private static List<String> channels(Object value) {
        List<String> out = new ArrayList<>();
        if (value instanceof String[] array) {
            for (String s : array) {
                split(s, out);
            }
        } else if (value instanceof Collection<?> collection) {
            for (Object o : collection) {
                split(o == null ? null : o.toString(), out);
            }
        } else if (value != null) {
            split(value.toString(), out);
        }
        return out.isEmpty() ? List.of("*") : List.copyOf(out);
    }

    private static void split(String s, List<String> out) {
        if (s == null) {
            return;
        }
        for (String part : s.split("[,\\s]+")) {
            if (!part.isEmpty() && !out.contains(part)) {
                out.add(part);
            }
        }
    }

    private static long number(String sinkId, String property, Object value, long fallback, long min, long max) {
        if (value == null) {
            return fallback;
        }
        try {
            long n = value instanceof Number number ? number.longValue() : Long.parseLong(value.toString().trim());
            if (n >= min && n <= max) {
                return n;
            }
        } catch (NumberFormatException e) {
            // below
        }
        LOG.warn("Notification sink {}: ignoring {} = {}, using {}", sinkId, property, value, fallback);
        return fallback;
    }
}
