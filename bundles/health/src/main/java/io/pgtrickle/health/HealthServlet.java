package io.pgtrickle.health;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;
import io.pgtrickle.api.health.HealthCheck;
import jakarta.servlet.Servlet;
import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.metatype.annotations.Designate;
import org.osgi.service.servlet.whiteboard.propertytypes.HttpWhiteboardServletPattern;

/**
 * {@code GET /health}: runs every registered {@link HealthCheck} at once ({@link HealthChecks}) and
 * answers 200 when none is CRITICAL, 503 otherwise, with each check's verdict in the JSON shape of Felix Health Checks'
 * servlet ({@code overallResult}, {@code results[].name/status/timeInMs/messages}).
 */
@Component(service = Servlet.class, configurationPid = HealthConfig.PID)
@Designate(ocd = HealthConfig.class)
@HttpWhiteboardServletPattern("/health")
public class HealthServlet extends HttpServlet {

    private static final long serialVersionUID = 1L;

    private static final JsonFactory JSON = new JsonFactory();

    @Reference
    transient HealthChecks checks;

    @Override
    protected void doGet(HttpServletRequest request, HttpServletResponse response) throws IOException {
        HealthChecks.Report report;
        try {
            report = checks.run();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
        HealthCheck.Status overall = report.overall();
        Map<String, HealthChecks.Verdict> verdicts = report.verdicts();
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
                HealthChecks.Verdict v = verdicts.get(name);
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
}
