package io.pgtrickle.http.events;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.metrics.MetricSource;
import io.pgtrickle.api.metrics.MetricWriter;
import io.pgtrickle.api.schema.SchemaUnit;
import jakarta.servlet.AsyncContext;
import jakarta.servlet.Servlet;
import jakarta.servlet.ServletOutputStream;
import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.sql.Connection;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Deactivate;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.metatype.annotations.AttributeDefinition;
import org.osgi.service.metatype.annotations.Designate;
import org.osgi.service.metatype.annotations.ObjectClassDefinition;
import org.osgi.service.servlet.whiteboard.propertytypes.HttpWhiteboardServletAsyncSupported;
import org.osgi.service.servlet.whiteboard.propertytypes.HttpWhiteboardServletPattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code GET /pgtrickle/events?stream_table=NAME[&stream_table=...]}: the refreshes of stream tables
 * subscribed to channel {@value EventStore#CHANNEL}, as server-sent events (docs/live.md).
 */
@Component(service = {Servlet.class, MetricSource.class}, configurationPid = EventsServlet.PID, immediate = true)
@Designate(ocd = EventsServlet.Config.class)
@HttpWhiteboardServletPattern(EventsServlet.PATH)
@HttpWhiteboardServletAsyncSupported
public class EventsServlet extends HttpServlet implements MetricSource {

    private static final long serialVersionUID = 1L;
    private static final Logger LOG = LoggerFactory.getLogger(EventsServlet.class);

    static final String PID = "io.pgtrickle.http.events";
    static final String PATH = "/pgtrickle/events";

    @ObjectClassDefinition(name = "pgtrickle server-sent events",
            description = "Streams the refreshes announced on channel pgtrickle_sse to HTTP clients, from the durable outbox.")
    public @interface Config {
        @AttributeDefinition(description = "Who may connect: entries role:token. A client sends the token as "
                + "'Authorization: Bearer <token>' or '?access_token=<token>' and sees a stream table only if that "
                + "PostgreSQL role has SELECT on it. Empty: nobody")
        String[] tokens() default {};

        @AttributeDefinition(min = "1", description = "Seconds an event stays resumable with Last-Event-ID; an older "
                + "Last-Event-ID gets one 'resync' event. Each stream table's newest event is kept regardless")
        long retentionSeconds() default 3600;

        @AttributeDefinition(min = "1", description = "Seconds between two keep-alive comments on an idle stream")
        long keepAliveSeconds() default 15;

        @AttributeDefinition(min = "0", description = "Milliseconds the browser waits before it reconnects (the 'retry:' field)")
        long retryMs() default 3000;
    }

    @Reference(target = "(" + Catalog.VERSION_PROPERTY + ">=0.33.0)")
    Catalog catalog;

    /** The outbox and the subscriptions are the notify bundle's SQL. */
    @Reference(target = "(" + SchemaUnit.UNIT_PROPERTY + "=io.pgtrickle.notify)")
    SchemaUnit notifyUnit;

    private Tokens tokens;
    private long retryMs;
    private Hub hub;

    @Activate
    void activate(Config config) {
        tokens = Tokens.parse(config.tokens());
        retryMs = Math.max(0, config.retryMs());
        if (tokens.size() == 0) {
            // closed: every request is refused, so nothing is read, and no sink is registered that would
            // keep events for nobody
            hub = null;
            LOG.info("pgtrickle server-sent events at {}: no tokens configured, every request is refused", PATH);
            return;
        }
        hub = new Hub(catalog.dataSource(), Math.max(1, config.retentionSeconds()) * 1000, Math.max(1, config.keepAliveSeconds()) * 1000);
        LOG.info("pgtrickle server-sent events at {}: {} token(s), retention {} s, keep-alive every {} s", PATH, tokens.size(),
                Math.max(1, config.retentionSeconds()), Math.max(1, config.keepAliveSeconds()));
    }

    @Deactivate
    void deactivate() {
        if (hub != null) {
            hub.close();
        }
    }

    /** Connected clients, for the metrics and for tests. */
    int connected() {
        return hub == null ? 0 : hub.connected();
    }

    @Override
    public void collect(MetricWriter out) {
        out.family("pgtrickle_sse_clients", MetricWriter.Type.GAUGE, "Server-sent event streams open on this container")
                .sample(Map.of(), connected());
    }

    @Override
    protected void doGet(HttpServletRequest request, HttpServletResponse response) throws IOException {
        String role = tokens.role(request);
        if (role == null) {
            Answers.unauthorized(response);
            return;
        }
        String[] names = request.getParameterValues("stream_table");
        if (names == null || names.length == 0) {
            Answers.text(response, HttpServletResponse.SC_BAD_REQUEST, "name at least one stream table: ?stream_table=NAME");
            return;
        }
        // The header is what EventSource sends when it reconnects by itself. The parameter is for a client
        // that opens a new EventSource (which cannot send headers) after the browser gave up on an error
        // answer, such as a 503 while the database is away; the header wins, being the newer.
        String lastEventId = request.getHeader("Last-Event-ID");
        if (lastEventId == null) {
            lastEventId = request.getParameter("last_event_id");
        }
        List<EventStore.StreamTable> tables = new ArrayList<>();
        long[] positions = new long[names.length];
        boolean resync = false;
        try (Connection c = catalog.dataSource().getConnection()) {
            c.setAutoCommit(true);
            for (String name : names) {
                EventStore.StreamTable t = EventStore.resolve(c, name, role);
                if (t == null) {
                    Answers.text(response, HttpServletResponse.SC_NOT_FOUND, "no stream table " + name);
                    return;
                }
                if (!t.readable()) {
                    Answers.text(response, HttpServletResponse.SC_FORBIDDEN, "not allowed to read " + t.name());
                    return;
                }
                if (!t.published()) {
                    Answers.text(response, HttpServletResponse.SC_NOT_FOUND, t.name() + " is not published as events: "
                            + "SELECT pgtrickle.subscribe('" + t.name() + "', '" + EventStore.CHANNEL + "')");
                    return;
                }
                tables.add(t);
            }
            long[] given = lastEventId == null || lastEventId.isBlank() ? null : parse(lastEventId, names.length);
            if (lastEventId != null && !lastEventId.isBlank() && given == null) {
                Answers.text(response, HttpServletResponse.SC_BAD_REQUEST, "Last-Event-ID (or last_event_id) is not one id per stream table requested");
                return;
            }
            for (int i = 0; i < tables.size(); i++) {
                long pgtId = tables.get(i).pgtId();
                if (given == null) {
                    positions[i] = EventStore.head(c, pgtId);
                } else if (given[i] > 0 && !EventStore.retained(c, pgtId, given[i])) {
                    resync = true;
                } else {
                    positions[i] = given[i];
                }
            }
            if (resync) {
                for (int i = 0; i < tables.size(); i++) {
                    positions[i] = EventStore.head(c, tables.get(i).pgtId());
                }
            }
        } catch (SQLException e) {
            LOG.warn("pgtrickle server-sent events: cannot serve a request: {}", e.getMessage());
            Answers.text(response, HttpServletResponse.SC_SERVICE_UNAVAILABLE, "the database is not reachable; retry later");
            return;
        }
        response.setStatus(HttpServletResponse.SC_OK);
        response.setContentType("text/event-stream");
        response.setCharacterEncoding("UTF-8");
        response.setHeader("Cache-Control", "no-cache");
        // proxies such as nginx would otherwise hold the events back in their buffers
        response.setHeader("X-Accel-Buffering", "no");
        AsyncContext async = request.startAsync();
        async.setTimeout(0);
        ServletOutputStream out = response.getOutputStream();
        Client client = new Client(hub, async, out, role, tables, positions);
        async.addListener(client);
        StringBuilder opening = new StringBuilder("retry: ").append(retryMs).append('\n');
        if (resync) {
            opening.append("id: ").append(Client.lastEventId(positions)).append("\nevent: resync\ndata: {\"reason\": ")
                    .append("\"the events after Last-Event-ID are no longer retained: reload, then follow the events\"}\n");
        } else if (!given(lastEventId)) {
            // the position a reconnect resumes from, before any event arrives
            opening.append("id: ").append(Client.lastEventId(positions)).append('\n');
        }
        // non-blocking from here on: the container calls the client whenever the connection can take more
        out.setWriteListener(client);
        client.send(opening.append('\n').toString());
        Map<Long, Long> start = new LinkedHashMap<>();
        for (int i = 0; i < tables.size(); i++) {
            start.merge(tables.get(i).pgtId(), positions[i], Math::min);
        }
        hub.join(client, start);
    }

    private static boolean given(String lastEventId) {
        return lastEventId != null && !lastEventId.isBlank();
    }

    /** The positions of a Last-Event-ID, or null when it is not one non-negative id per stream table. */
    static long[] parse(String lastEventId, int count) {
        String[] parts = lastEventId.trim().split(",", -1);
        if (parts.length != count) {
            return null;
        }
        long[] positions = new long[count];
        for (int i = 0; i < count; i++) {
            try {
                positions[i] = Long.parseLong(parts[i].trim());
            } catch (NumberFormatException e) {
                return null;
            }
            if (positions[i] < 0) {
                return null;
            }
        }
        return positions;
    }
}
