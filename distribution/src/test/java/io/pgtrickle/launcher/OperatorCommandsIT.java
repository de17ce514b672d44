package io.pgtrickle.launcher;

import static io.pgtrickle.launcher.ExistingDatabaseIT.SHUTDOWN;
import static io.pgtrickle.launcher.ExistingDatabaseIT.STARTUP;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.Statement;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * docs/operations.md's console commands against the running distribution: {@code pgtrickle:health}
 * prints every check and fails, naming the check, when one is CRITICAL; {@code pgtrickle:metrics}
 * prints the figures of /metrics, filtered by name, and they move.
 */
class OperatorCommandsIT {

    private static final Duration WAIT = Duration.ofSeconds(30);

    private PgTrickleProcess pgtrickle;

    /** Types {@code command} until what it prints (up to the next prompt) satisfies {@code done}; returns that output. */
    private String until(String command, Predicate<String> done) throws Exception {
        long deadline = System.nanoTime() + WAIT.toNanos();
        String output = run(command);
        while (!done.test(output)) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("'" + command + "' did not print what was expected; last output:\n" + output + pgtrickle.dump());
            }
            Thread.sleep(250);
            output = run(command);
        }
        return output;
    }

    /** Types a command and returns what was printed until the prompt that follows it. */
    private String run(String command) throws Exception {
        int from = pgtrickle.allLines().size();
        String marker = "echo end-of-" + System.nanoTime();
        pgtrickle.type(command);
        pgtrickle.type(marker);
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (true) {
            List<String> lines = pgtrickle.allLines();
            for (int i = from; i < lines.size(); i++) {
                if (lines.get(i).endsWith(marker.substring(5)) && !lines.get(i).contains("echo ")) {
                    return String.join("\n", lines.subList(from, i)).replace("g! ", "");
                }
            }
            if (System.nanoTime() > deadline) {
                throw new AssertionError("no output of '" + command + "'" + pgtrickle.dump());
            }
            Thread.sleep(50);
        }
    }

    private static long figure(String output, String sample) {
        Matcher m = Pattern.compile("(?m)^" + Pattern.quote(sample) + " (\\S+)$").matcher(output);
        assertTrue(m.find(), sample + " in:\n" + output);
        return (long) Double.parseDouble(m.group(1));
    }

    @Test
    void healthAndMetricsAtTheConsole(@TempDir Path tmp) throws Exception {
        Path home = Distribution.copyTo(tmp.resolve("pgtrickle"));
        int port = Distribution.freePort();
        try (PgTrickleProcess p = PgTrickleProcess.startWithConsole(home, Map.of("PGTRICKLE_EMBEDDED_PORT", Integer.toString(port)))) {
            pgtrickle = p;
            p.awaitLine(Pattern.quote("pgtrickle " + Distribution.version() + " - Apache Felix Gogo console"), STARTUP);
            p.awaitLine(ExistingDatabaseIT.catalogLine(), STARTUP);

            String healthy = until("pgtrickle:health", out -> out.contains("overall: OK"));
            for (String check : List.of("catalog", "database", "outbox", "scheduler", "suspended")) {
                assertTrue(Pattern.compile("(?m)^" + check + " +OK +\\d+ +\\S").matcher(healthy).find(), check + " in:\n" + healthy);
            }
            assertTrue(!healthy.contains("unhealthy"), healthy);

            String ticks = run("pgtrickle:metrics scheduler_ticks");
            assertTrue(ticks.contains("# TYPE pgtrickle_scheduler_ticks_total counter"), ticks);
            assertTrue(!ticks.contains("pgtrickle_refreshes_total"), "filtered by name:\n" + ticks);
            long before = figure(ticks, "pgtrickle_scheduler_ticks_total");
            until("pgtrickle:metrics scheduler_ticks", out -> figure(out, "pgtrickle_scheduler_ticks_total") > before);

            try (Connection c = DriverManager.getConnection(PgTrickleProcess.jdbcUrl(port), "postgres", null); Statement s = c.createStatement()) {
                // a stream table whose refresh fails three times in a row: SUSPENDED
                s.execute("CREATE TABLE divisors (id int PRIMARY KEY, d int)");
                s.execute("SELECT pgtrickle.create_stream_table('quotients', 'SELECT id, 100 / d AS q FROM divisors')");
                s.execute("INSERT INTO divisors VALUES (1, 0)");
                String sick = until("pgtrickle:health", out -> out.contains("overall: CRITICAL"));
                System.out.println("pgtrickle:health, unhealthy:\n" + sick);
                assertTrue(Pattern.compile("(?m)^suspended +CRITICAL +\\d+ +1 stream table\\(s\\) suspended: public.quotients").matcher(sick).find(), sick);
                assertTrue(Pattern.compile("(?m)^database +OK").matcher(sick).find(), sick);
                assertTrue(sick.contains("pgtrickle is unhealthy: CRITICAL suspended"), "the command fails, naming the check:\n" + sick);
                // the change it could not apply is still pending
                assertEquals(1, figure(run("pgtrickle:metrics pending_changes"), "pgtrickle_pending_changes{source=\"public.divisors\"}"));

                s.execute("DELETE FROM divisors");
                s.execute("SELECT pgtrickle.resume_stream_table('quotients')");
                until("pgtrickle:health", out -> out.contains("overall: OK") && !out.contains("unhealthy"));
            }
            p.type("exit");
            assertEquals(0, p.awaitExit(SHUTDOWN), p.dump());
        }
    }
}
