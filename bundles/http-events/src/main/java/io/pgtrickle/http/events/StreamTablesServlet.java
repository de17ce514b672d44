package io.pgtrickle.http.events;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.schema.SchemaUnit;
import jakarta.servlet.Servlet;
import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.servlet.whiteboard.propertytypes.HttpWhiteboardServletPattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code GET /pgtrickle/stream-tables}: the stream tables the caller's token may read, as a JSON array
 * (docs/live.md), for the live page and any other UI that lists before it follows.
 *
 * <p>It lives here, beside the events, rather than in the page's bundle, because it must answer to
 * exactly the same tokens and privileges as the events: a page that lists a stream table it may then
 * not follow (or the reverse) would be a second access policy. Tokens stay private to this bundle, and
 * the page's bundle stays static files only, replaceable by anyone's own UI.
 */
@Component(service = Servlet.class, configurationPid = EventsServlet.PID, immediate = true)
@HttpWhiteboardServletPattern(StreamTablesServlet.PATH)
public class StreamTablesServlet extends HttpServlet {

    private static final long serialVersionUID = 1L;
    private static final Logger LOG = LoggerFactory.getLogger(StreamTablesServlet.class);

    static final String PATH = "/pgtrickle/stream-tables";

    /**
     * PostgreSQL writes the JSON (so names are escaped as JSON, not by hand). Shadows of an evolution
     * are left out, as everywhere users look; the last refresh is the newest history row, whatever
     * became of it, so a failing stream table shows its failure.
     */
    static final String LIST = "SELECT coalesce(json_agg(json_build_object("
            + "'name', format('%I.%I', s.pgt_schema, s.pgt_name),"
            + " 'status', s.status,"
            + " 'refresh_mode', s.refresh_mode,"
            + " 'is_populated', s.is_populated,"
            + " 'consecutive_errors', s.consecutive_errors,"
            + " 'data_timestamp', s.data_timestamp,"
            // the refresh unit's measure: 0 while nothing is pending (an idle 'calculated' stream table is current)
            + " 'staleness_seconds', round(extract(epoch FROM pgtrickle.staleness(s))::numeric, 3),"
            + " 'last_refresh', CASE WHEN h.refresh_id IS NOT NULL THEN json_build_object('refresh_id', h.refresh_id,"
            + "   'at', coalesce(h.end_time, h.start_time), 'action', h.action, 'status', h.status,"
            + "   'rows_inserted', h.rows_inserted, 'rows_deleted', h.rows_deleted) END,"
            + " 'events', EXISTS (SELECT FROM pgtrickle.pgt_subscriptions u WHERE u.pgt_id = s.pgt_id AND u.channel = ?)"
            + ") ORDER BY s.pgt_schema, s.pgt_name), '[]')"
            + " FROM pgtrickle.pgt_stream_tables s"
            // a role that does not exist reads nothing (has_table_privilege(text, ...) would raise)
            + " JOIN pg_roles r ON r.rolname = ? AND has_table_privilege(r.oid, s.pgt_relid, 'SELECT')"
            + " LEFT JOIN LATERAL (SELECT x.refresh_id, x.start_time, x.end_time, x.action, x.status, x.rows_inserted,"
            + "   x.rows_deleted FROM pgtrickle.pgt_refresh_history x WHERE x.pgt_id = s.pgt_id"
            + "   ORDER BY x.start_time DESC, x.refresh_id DESC LIMIT 1) h ON true"
            + " WHERE s.shadow_of IS NULL";

    @Reference(target = "(" + Catalog.VERSION_PROPERTY + ">=0.33.0)")
    Catalog catalog;

    /** pgt_subscriptions is the notify bundle's. */
    @Reference(target = "(" + SchemaUnit.UNIT_PROPERTY + "=io.pgtrickle.notify)")
    SchemaUnit notifyUnit;

    /** pgtrickle.staleness is the refresh bundle's SQL. */
    @Reference(target = "(" + SchemaUnit.UNIT_PROPERTY + "=io.pgtrickle.refresh)")
    SchemaUnit refreshUnit;

    private Tokens tokens;

    @Activate
    void activate(EventsServlet.Config config) {
        tokens = Tokens.parse(config.tokens());
    }

    @Override
    protected void doGet(HttpServletRequest request, HttpServletResponse response) throws IOException {
        String role = tokens.role(request);
        // per token, and it changes with every refresh: no cache may keep it
        response.setHeader("Cache-Control", "no-store");
        if (role == null) {
            Answers.unauthorized(response);
            return;
        }
        String json;
        try (Connection c = catalog.dataSource().getConnection(); PreparedStatement ps = c.prepareStatement(LIST)) {
            c.setAutoCommit(true);
            ps.setString(1, EventStore.CHANNEL);
            ps.setString(2, role);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                json = rs.getString(1);
            }
        } catch (SQLException e) {
            LOG.warn("pgtrickle stream tables: cannot serve a request: {}", e.getMessage());
            Answers.text(response, HttpServletResponse.SC_SERVICE_UNAVAILABLE, "the database is not reachable; retry later");
            return;
        }
        Answers.write(response, HttpServletResponse.SC_OK, "application/json", json + "\n");
    }
}
