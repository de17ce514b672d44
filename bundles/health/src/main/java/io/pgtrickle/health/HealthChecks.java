package io.pgtrickle.health;

import io.pgtrickle.api.health.HealthCheck;
import io.pgtrickle.api.health.HealthCheckService;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Deactivate;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.component.annotations.ReferenceCardinality;
import org.osgi.service.component.annotations.ReferencePolicy;
import org.osgi.service.component.annotations.ReferencePolicyOption;

/**
 * The one owner of the {@link HealthCheck} whiteboard: runs every registered check at once, each
 * within {@link #TIMEOUT_MS}. {@code /health} and {@code pgtrickle:health} both ask it.
 */
@Component(service = HealthChecks.class)
public class HealthChecks {

    /** A check that has not answered by then counts as CRITICAL: a health endpoint must answer, and fast. */
    static final long TIMEOUT_MS = 5_000;

    /** One check's verdict. */
    record Verdict(HealthCheck.Status status, String message, long timeInMs) {
    }

    /** Every check's verdict, by name, and the worst of them (CRITICAL when there is no check at all). */
    record Report(HealthCheck.Status overall, Map<String, Verdict> verdicts) {
    }

    private final Map<String, HealthCheck> checks = new ConcurrentHashMap<>();
    private final ExecutorService threads = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "pgtrickle-health");
        t.setDaemon(true);
        return t;
    });

    @Reference(service = HealthCheck.class, cardinality = ReferenceCardinality.MULTIPLE, policy = ReferencePolicy.DYNAMIC,
            policyOption = ReferencePolicyOption.GREEDY, unbind = "removeCheck")
    void addCheck(HealthCheck check, Map<String, Object> properties) {
        Object name = properties.get(HealthCheckService.NAME);
        checks.put(name == null ? check.getClass().getName() : name.toString(), check);
    }

    void removeCheck(HealthCheck check, Map<String, Object> properties) {
        checks.values().remove(check);
    }

    @Deactivate
    void deactivate() {
        threads.shutdownNow();
    }

    /** Runs every check at once and waits for them, at most {@link #TIMEOUT_MS} in all. */
    Report run() throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(TIMEOUT_MS);
        Map<String, Future<Verdict>> running = new TreeMap<>();
        checks.forEach((name, check) -> running.put(name, threads.submit(() -> run(check))));
        Map<String, Verdict> verdicts = new TreeMap<>();
        for (Map.Entry<String, Future<Verdict>> e : running.entrySet()) {
            try {
                verdicts.put(e.getKey(), e.getValue().get(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS));
            } catch (TimeoutException ex) {
                e.getValue().cancel(true);
                verdicts.put(e.getKey(), new Verdict(HealthCheck.Status.CRITICAL, "no answer within " + TIMEOUT_MS + " ms", TIMEOUT_MS));
            } catch (ExecutionException ex) {
                verdicts.put(e.getKey(), new Verdict(HealthCheck.Status.CRITICAL, String.valueOf(ex.getCause()), 0));
            }
        }
        HealthCheck.Status overall = verdicts.isEmpty() ? HealthCheck.Status.CRITICAL : HealthCheck.Status.OK;
        for (Verdict v : verdicts.values()) {
            if (v.status().compareTo(overall) > 0) {
                overall = v.status();
            }
        }
        return new Report(overall, verdicts);
    }

    private static Verdict run(HealthCheck check) {
        long start = System.nanoTime();
        HealthCheck.Result r;
        try {
            r = check.execute();
        } catch (RuntimeException e) {
            r = HealthCheck.Result.critical("the check failed: " + e);
        }
        long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
        if (r == null || r.status() == null) {
            return new Verdict(HealthCheck.Status.CRITICAL, "the check gave no verdict", ms);
        }
        return new Verdict(r.status(), r.message(), ms);
    }
}
