package io.pgtrickle.metrics;

import java.io.PrintStream;
import java.util.Locale;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;

/**
 * Shell command {@code pgtrickle:metrics [FILTER]}: the figures of {@code /metrics}, as text, for an
 * operator at the console (Gogo, or Karaf's shell, which follows the same {@code osgi.command.*}
 * convention). With a filter, only the families whose name contains it.
 */
@Component(service = MetricsCommands.class, property = {"osgi.command.scope=pgtrickle", "osgi.command.function=metrics"})
public class MetricsCommands {

    private final MetricsCollector collector;
    private final PrintStream out;

    @Activate
    public MetricsCommands(@Reference(name = "collector") MetricsCollector collector) {
        this(collector, System.out);
    }

    MetricsCommands(MetricsCollector collector, PrintStream out) {
        this.collector = collector;
        this.out = out;
    }

    /** {@code pgtrickle:metrics}: every figure. */
    public void metrics() throws Exception {
        metrics("");
    }

    /** {@code pgtrickle:metrics FILTER}: the families whose name contains {@code FILTER} (e.g. scheduler, sse, outbox). */
    public void metrics(String filter) throws Exception {
        String text;
        try {
            text = collector.scrape();
        } catch (MetricsCollector.Unavailable e) {
            throw new IllegalStateException("no metrics: " + e.getMessage());
        }
        out.print(filter(text, filter));
        out.flush();
    }

    /** The families (HELP, TYPE and samples) whose name contains {@code filter}. */
    static String filter(String text, String filter) {
        if (filter == null || filter.isEmpty()) {
            return text;
        }
        String needle = filter.toLowerCase(Locale.ROOT);
        StringBuilder kept = new StringBuilder();
        boolean keep = false;
        for (String line : text.split("\n")) {
            if (line.startsWith("# HELP ")) {
                keep = line.substring(7).split(" ", 2)[0].toLowerCase(Locale.ROOT).contains(needle);
            }
            if (keep) {
                kept.append(line).append('\n');
            }
        }
        return kept.toString();
    }
}
