package io.pgtrickle.sink.log;

import io.pgtrickle.api.notify.Notification;
import io.pgtrickle.api.notify.NotificationSink;
import io.pgtrickle.api.notify.NotificationSinkType;
import java.util.Locale;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.ConfigurationPolicy;
import org.osgi.service.component.annotations.Modified;
import org.osgi.service.metatype.annotations.AttributeDefinition;
import org.osgi.service.metatype.annotations.Designate;
import org.osgi.service.metatype.annotations.ObjectClassDefinition;
import org.osgi.service.metatype.annotations.Option;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The {@code log} sink: one structured slf4j line per notification, e.g.
 * {@code pgtrickle notification id=pgt-12 sink=log:log stream_table=public.totals channel=orders refresh_id=17
 * first_refresh_id=15 refreshes=3 inserted=5 deleted=2}.
 *
 * <p>Active without configuration (all channels, level INFO); PID {@code io.pgtrickle.sink.log} narrows
 * the channels or changes the level. The configuration's properties become the service's, so the
 * channels are configured under their service property name {@code pgtrickle.sink.channels}, and the
 * SPI's other properties ({@code pgtrickle.sink.name}, {@code pgtrickle.sink.maxAttempts},
 * {@code pgtrickle.sink.timeoutMs}) may be set in the same configuration.
 */
@Component(service = NotificationSink.class, configurationPid = LogSink.PID,
        configurationPolicy = ConfigurationPolicy.OPTIONAL)
@NotificationSinkType(type = "log")
@Designate(ocd = LogSink.Config.class)
public class LogSink implements NotificationSink {

    static final String PID = "io.pgtrickle.sink.log";

    /** The levels a notification may be logged at. */
    enum Level { INFO, DEBUG, WARN }

    @ObjectClassDefinition(name = "pgtrickle log sink",
            description = "Logs one line per notification (logger io.pgtrickle.sink.log.LogSink).")
    public @interface Config {
        // pgtrickle_sink_channels -> service property pgtrickle.sink.channels (DS name mapping: _ is .)
        @AttributeDefinition(name = "Channels",
                description = "Subscription channels to log (pgtrickle.sink.channels); * for all")
        String[] pgtrickle_sink_channels() default "*";

        @AttributeDefinition(description = "Log level of the notification lines (INFO, DEBUG or WARN)",
                options = { @Option(label = "INFO", value = "INFO"), @Option(label = "DEBUG", value = "DEBUG"),
                    @Option(label = "WARN", value = "WARN") })
        String level() default "INFO";
    }

    private static final Logger LOG = LoggerFactory.getLogger(LogSink.class);

    private final Logger logger;
    private volatile Level level = Level.INFO;

    public LogSink() {
        this(LOG);
    }

    LogSink(Logger logger) {
        this.logger = logger;
    }

    @Activate
    @Modified
    void configure(Config config) {
        level = parseLevel(config.level());
    }

    /** {@code INFO}, {@code DEBUG} or {@code WARN} in any case; anything else is INFO, with a warning. */
    Level parseLevel(String value) {
        if (value != null) {
            try {
                return Level.valueOf(value.trim().toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                // fall through
            }
        }
        logger.warn("{}: level {} is not INFO, DEBUG or WARN; logging notifications at INFO", PID, value);
        return Level.INFO;
    }

    Level level() {
        return level;
    }

    @Override
    public void deliver(Notification notification) {
        switch (level) {
            case DEBUG:
                if (logger.isDebugEnabled()) {
                    logger.debug(format(notification));
                }
                break;
            case WARN:
                if (logger.isWarnEnabled()) {
                    logger.warn(format(notification));
                }
                break;
            default:
                if (logger.isInfoEnabled()) {
                    logger.info(format(notification));
                }
        }
    }

    /** The line, {@code key=value} pairs; {@code attempt} only on redelivery (attempt 2 or later). */
    static String format(Notification n) {
        StringBuilder line = new StringBuilder(160).append("pgtrickle notification");
        field(line, "id", n.id());
        field(line, "sink", n.sinkId());
        field(line, "stream_table", n.streamTable());
        field(line, "channel", n.channel());
        line.append(" refresh_id=").append(n.refreshId());
        line.append(" first_refresh_id=").append(n.firstRefreshId());
        line.append(" refreshes=").append(n.refreshes());
        line.append(" inserted=").append(n.insertedCount());
        line.append(" deleted=").append(n.deletedCount());
        if (n.attempt() > 1) {
            line.append(" attempt=").append(n.attempt());
        }
        return line.toString();
    }

    private static void field(StringBuilder line, String key, String value) {
        line.append(' ').append(key).append('=');
        if (needsQuotes(value)) {
            line.append('"');
            for (int i = 0; i < value.length(); i++) {
                char c = value.charAt(i);
                switch (c) {
                    case '"' -> line.append("\\\"");
                    case '\\' -> line.append("\\\\");
                    case '\n' -> line.append("\\n");
                    case '\r' -> line.append("\\r");
                    case '\t' -> line.append("\\t");
                    default -> {
                        if (Character.isISOControl(c)) {
                            line.append(String.format("\\u%04x", (int) c));
                        } else {
                            line.append(c);
                        }
                    }
                }
            }
            line.append('"');
        } else {
            line.append(value);
        }
    }

    /**
     * Quoted when a reader splitting on spaces would get it wrong: empty, or containing whitespace, a
     * control character or a double quote (a quoted identifier, {@code public."my table"}).
     */
    private static boolean needsQuotes(String value) {
        if (value.isEmpty()) {
            return true;
        }
        for (int i = 0; i < value.length(); i++) {
            char c = value.charAt(i);
            if (Character.isWhitespace(c) || Character.isSpaceChar(c) || Character.isISOControl(c) || c == '"') {
                return true;
            }
        }
        return false;
    }
}
