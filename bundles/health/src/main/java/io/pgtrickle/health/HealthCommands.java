package io.pgtrickle.health;

import io.pgtrickle.api.health.HealthCheck;
import java.io.PrintStream;
import java.util.List;
import java.util.Map;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;

/**
 * Shell command {@code pgtrickle:health}: every check of {@code /health}, its status and message, one
 * line each, then the overall verdict. When a check is CRITICAL the command fails (Gogo and Karaf
 * print the error; a script stops there) after printing, naming the failing checks.
 */
@Component(service = HealthCommands.class, property = {"osgi.command.scope=pgtrickle", "osgi.command.function=health"})
public class HealthCommands {

    private final HealthChecks checks;
    private final PrintStream out;

    @Activate
    public HealthCommands(@Reference(name = "checks") HealthChecks checks) {
        this(checks, System.out);
    }

    HealthCommands(HealthChecks checks, PrintStream out) {
        this.checks = checks;
        this.out = out;
    }

    /** {@code pgtrickle:health}: each check; an exception (after the table) when one is CRITICAL. */
    public void health() throws Exception {
        HealthChecks.Report report = checks.run();
        out.print(format(report));
        out.flush();
        if (report.overall() == HealthCheck.Status.CRITICAL) {
            List<String> failing = report.verdicts().entrySet().stream()
                    .filter(e -> e.getValue().status() == HealthCheck.Status.CRITICAL).map(Map.Entry::getKey).toList();
            throw new IllegalStateException("pgtrickle is unhealthy: "
                    + (failing.isEmpty() ? "no health check is registered" : "CRITICAL " + String.join(", ", failing)));
        }
    }

    static String format(HealthChecks.Report report) {
        int width = Math.max(5, report.verdicts().keySet().stream().mapToInt(String::length).max().orElse(0));
        StringBuilder b = new StringBuilder();
        b.append(String.format("%-" + width + "s  %-8s  %7s  %s%n", "CHECK", "STATUS", "TIME_MS", "MESSAGE"));
        report.verdicts().forEach((name, v) -> b.append(String.format("%-" + width + "s  %-8s  %7d  %s%n", name, v.status(),
                v.timeInMs(), v.message() == null ? "" : v.message().replace('\n', ' '))));
        b.append("overall: ").append(report.overall()).append(System.lineSeparator());
        return b.toString();
    }
}
