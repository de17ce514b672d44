package io.pgtrickle.bench;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.Locale;

/** What the benchmark programs print and write the same way: progress lines, millisecond figures, the report. */
final class BenchOutput {

    private BenchOutput() {
    }

    /** A progress line on stdout, stamped to the second. */
    static void log(String format, Object... args) {
        System.out.printf(Locale.ROOT, "[bench %s] %s%n", Instant.now().truncatedTo(ChronoUnit.SECONDS),
                String.format(Locale.ROOT, format, args));
        System.out.flush();
    }

    /** Milliseconds with about three significant digits; "–" for no value (NaN). */
    static String ms(double v) {
        if (Double.isNaN(v)) {
            return "–";
        }
        if (v < 10) {
            return String.format(Locale.ROOT, "%.2f", v);
        }
        if (v < 100) {
            return String.format(Locale.ROOT, "%.1f", v);
        }
        return String.format(Locale.ROOT, "%,.0f", v);
    }

    /** Prints the Markdown report and writes it to {@code report}. */
    static void publish(String markdown, Path report, double minutes) throws IOException {
        System.out.println();
        System.out.println(markdown);
        Files.createDirectories(report.toAbsolutePath().getParent());
        Files.writeString(report, markdown, StandardCharsets.UTF_8);
        log("report written to %s (%.1f min)", report.toAbsolutePath().normalize(), minutes);
    }
}
