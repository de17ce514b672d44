package io.pgtrickle.health;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;
import io.pgtrickle.api.health.HealthCheck;
import io.pgtrickle.api.health.HealthCheckService;
import jakarta.servlet.Servlet;
import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
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
import org.osgi.service.metatype.annotations.Designate;
import org.osgi.service.servlet.whiteboard.propertytypes.HttpWhiteboardServletPattern;

/**
 * {@code GET /health}: runs every registered {@link HealthCheck} at once and answers 200 when none
 * is CRITICAL, 503 otherwise, with each check's verdict in the JSON shape of Felix Health Checks'
 * servlet ({@code overallResult}, {@code results[].name/status/timeInMs/messages}).
 */
@Component(service = Servlet.class, configurationPid = HealthConfig.PID)
@Designate(ocd = HealthConfig.class)
@HttpWhiteboardServletPattern("/health")
public class HealthServlet extends HttpServlet {

    private static final long serialVersionUID = 1L;

    /** A check that has not answered by then counts as CRITICAL: a health endpoint must answer, and fast. */
    static final long TIMEOUT_MS = 5_000;

    private static final JsonFactory JSON = new JsonFactory();

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

    private record Verdict(HealthCheck.Status status, String message, long timeInMs) {
    }

    @Override
    protected void doGet(HttpServletRequest request, HttpServletResponse response) throws IOException {
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
            } catch (InterruptedException ex) {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted", ex);
            } catch (java.util.concurrent.ExecutionException ex) {
                verdicts.put(e.getKey(), new Verdict(HealthCheck.Status.CRITICAL, String.valueOf(ex.getCause()), 0));
            }
        }
        HealthCheck.Status overall = verdicts.isEmpty() ? HealthCheck.Status.CRITICAL : HealthCheck.Status.OK;
        for (Verdict v : verdicts.values()) {
            if (v.status().compareTo(overall) > 0) {
                overall = v.status();
            }
        }
        response.setStatus(overall == HealthCheck.Status.CRITICAL ? HttpServletResponse.SC_SERVICE_UNAVAILABLE : HttpServletResponse.SC_OK);
        response.setContentType("application/json");
        response.setCharacterEncoding("UTF-8");
        response.setHeader("Cache-Control", "no-store");
        List<String> names = new ArrayList<>(verdicts.keySet());
        try (JsonGenerator json = JSON.createGenerator(response.getOutputStream())) {
            json.useDefaultPrettyPrinter();
            json.writeStartObject();
            json.writeStringField("overallResult", overall.name());
            json.writeStringField("finishedAt", Instant.now().toString());
            json.writeArrayFieldStart("results");
            for (String name : names) {
                Verdict v = verdicts.get(name);
                json.writeStartObject();
                json.writeStringField("name", name);
                json.writeStringField("status", v.status().name());
                json.writeNumberField("timeInMs", v.timeInMs());
                json.writeArrayFieldStart("messages");
                json.writeStartObject();
                json.writeStringField("status", v.status().name());
                json.writeStringField("message", v.message());
                json.writeEndObject();
                json.writeEndArray();
                json.writeEndObject();
            }
            json.writeEndArray();
            json.writeEndObject();
        }
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
