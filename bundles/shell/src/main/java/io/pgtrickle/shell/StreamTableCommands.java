package io.pgtrickle.shell;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.refresh.RefreshService;
import java.io.PrintStream;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;
import javax.sql.DataSource;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;

/**
 * Shell commands {@code pgtrickle:list|status|create|refresh|drop|resume|history|mode}, the subscription and
 * sink commands, {@code evolve|evolution|cancelevolution} for shadow evolutions, and {@code units}
 * for the bundles' database parts. Each one calls the
 * SQL function of the same name, so the shell does exactly what {@code psql} would; errors are the
 * database's own messages. {@code refresh} goes through the {@link RefreshService}, which runs the
 * same {@code pgtrickle.run_refresh} and also calls the post-refresh listeners, as the scheduler does. Gogo finds the methods through the {@code osgi.command.*} properties;
 * Karaf's shell supports the same convention, so no shell API is imported.
 */
@Component(service = StreamTableCommands.class, property = {
        "osgi.command.scope=pgtrickle",
        "osgi.command.function=list",
        "osgi.command.function=status",
        "osgi.command.function=create",
        "osgi.command.function=refresh",
        "osgi.command.function=drop",
        "osgi.command.function=resume",
        "osgi.command.function=history",
        "osgi.command.function=mode",
        "osgi.command.function=subscribe",
        "osgi.command.function=unsubscribe",
        "osgi.command.function=subscriptions",
        "osgi.command.function=sinks",
        "osgi.command.function=deadletters",
        "osgi.command.function=replay",
        "osgi.command.function=evolve",
        "osgi.command.function=evolution",
        "osgi.command.function=cancelevolution",
        "osgi.command.function=units"})
public class StreamTableCommands {

    private final DataSource dataSource;
    private final RefreshService refreshService;
    private final PrintStream out;

    @Activate
    public StreamTableCommands(@Reference(name = "catalog") Catalog catalog, @Reference(name = "refresh") RefreshService refreshService) {
        this(catalog.dataSource(), refreshService, System.out);
    }

    StreamTableCommands(DataSource dataSource, RefreshService refreshService, PrintStream out) {
        this.dataSource = dataSource;
        this.refreshService = refreshService;
        this.out = out;
    }

    /** {@code pgtrickle:list}: every stream table with its status (pgtrickle.pgt_status()). */
    public void list() throws SQLException {
        table("SELECT name, status, refresh_mode AS mode, is_populated AS populated, schedule,"
                + " consecutive_errors AS errors, data_timestamp, last_error_message AS last_error FROM pgtrickle.pgt_status()");
    }

    /** {@code pgtrickle:status}: every column of pgtrickle.pgt_status(), for every stream table. */
    public void status() throws SQLException {
        table("SELECT * FROM pgtrickle.pgt_status()");
    }

    /**
     * {@code pgtrickle:status NAME}: pgtrickle.pgt_status() for one stream table, the name resolved as
     * the SQL functions resolve it (an unknown name is the database's error).
     */
    public void status(String name) throws SQLException {
        table("SELECT s.* FROM pgtrickle.pgt_status() s"
                + " WHERE s.name = (SELECT format('%I.%I', st.pgt_schema, st.pgt_name) FROM pgtrickle.find_stream_table(?) st)", name);
    }

    /** {@code pgtrickle:create NAME QUERY}, refreshed every second in AUTO mode. */
    public void create(String name, String query) throws SQLException {
        create(name, query, "1s", "AUTO");
    }

    /** {@code pgtrickle:create NAME QUERY SCHEDULE MODE}. */
    public void create(String name, String query, String schedule, String mode) throws SQLException {
        call("SELECT pgtrickle.create_stream_table(?, ?, schedule => ?, refresh_mode => ?)", name, query, schedule, mode);
        out.println("created " + name);
    }

    /** {@code pgtrickle:refresh NAME}: a synchronous manual refresh, then what it did. */
    public void refresh(String name) throws SQLException {
        long refreshId = refreshService.refresh(name);
        table("SELECT refresh_id, action, rows_inserted, rows_deleted, round(extract(epoch FROM end_time - start_time) * 1000, 1) AS ms"
                + " FROM pgtrickle.pgt_refresh_history WHERE refresh_id = ?::bigint", Long.toString(refreshId));
    }

    public void drop(String name) throws SQLException {
        call("SELECT pgtrickle.drop_stream_table(?)", name);
        out.println("dropped " + name);
    }

    public void resume(String name) throws SQLException {
        call("SELECT pgtrickle.resume_stream_table(?)", name);
        out.println("resumed " + name);
    }

    /** {@code pgtrickle:history NAME}: the last 20 refreshes, with why AUTO ran one FULL ({@code fallback_reason}). */
    public void history(String name) throws SQLException {
        table("SELECT refresh_id, start_time, action, status, rows_inserted, rows_deleted,"
                + " round(duration_ms::numeric, 1) AS ms, error_message, fallback_reason FROM pgtrickle.get_refresh_history(?, 20)", name);
    }

    /**
     * {@code pgtrickle:units}: each bundle's database part (pgtrickle.pgt_schema_unit): READY, PENDING
     * or FAILED with the error, and at which versions. A FAILED one is tried again when its bundle is
     * updated or refreshed.
     */
    public void units() throws SQLException {
        table("SELECT unit, state, schema_version, bundle_version, updated_at, message FROM pgtrickle.pgt_schema_unit ORDER BY unit");
    }

    /** {@code pgtrickle:mode NAME}: the mode asked for, the mode that runs, and why. */
    public void mode(String name) throws SQLException {
        table("SELECT * FROM pgtrickle.explain_refresh_mode(?)", name);
    }

    /** {@code pgtrickle:subscribe NAME CHANNEL}: NOTIFY on CHANNEL after refreshes that change NAME. */
    public void subscribe(String name, String channel) throws SQLException {
        call("SELECT pgtrickle.subscribe(?, ?)", name, channel);
        out.println("subscribed " + channel + " to " + name);
    }

    public void unsubscribe(String name, String channel) throws SQLException {
        call("SELECT pgtrickle.unsubscribe(?, ?)", name, channel);
        out.println("unsubscribed " + channel + " from " + name);
    }

    /** {@code pgtrickle:subscriptions}: every subscription with its delivery state. */
    public void subscriptions() throws SQLException {
        table("SELECT * FROM pgtrickle.list_subscriptions()");
    }

    /** {@code pgtrickle:sinks}: registered notification sinks, their channels, queues and dead letters. */
    public void sinks() throws SQLException {
        table("SELECT * FROM pgtrickle.list_sinks()");
    }

    /** {@code pgtrickle:deadletters [SINK]}: notifications that used up their delivery attempts. */
    public void deadletters() throws SQLException {
        table("SELECT * FROM pgtrickle.list_dead_letters()");
    }

    public void deadletters(String sink) throws SQLException {
        table("SELECT * FROM pgtrickle.list_dead_letters(?)", sink);
    }

    /** {@code pgtrickle:replay [SINK]}: puts dead letters (all, or one sink's) back in the outbox. */
    public void replay() throws SQLException {
        table("SELECT pgtrickle.replay_dead_letters() AS replayed");
    }

    public void replay(String sink) throws SQLException {
        table("SELECT pgtrickle.replay_dead_letters(?) AS replayed", sink);
    }

    /**
     * {@code pgtrickle:evolve NAME QUERY}: starts a shadow evolution of NAME to QUERY
     * ({@code pgtrickle.alter_query(NAME, QUERY, shadow_build => true)}; the database must have
     * {@code pg_trickle.shadow_build_enabled = on}), then prints its id and how to watch it. The
     * evolution bundle builds, catches up and swaps it in the background.
     */
    public void evolve(String name, String query) throws SQLException {
        String id;
        try (Connection c = dataSource.getConnection()) {
            // the id is read in the starting transaction: the evolution cannot have ended yet
            c.setAutoCommit(false);
            try {
                try (PreparedStatement p = prepare(c, "SELECT pgtrickle.alter_query(?, ?, shadow_build => true)", name, query)) {
                    p.execute();
                }
                try (PreparedStatement p = prepare(c, "SELECT e.evolution_id FROM pgtrickle.pgt_evolutions e"
                        + " WHERE e.pgt_id = (pgtrickle.find_stream_table(?)).pgt_id AND e.status = 'in_progress'", name);
                        ResultSet rs = p.executeQuery()) {
                    id = rs.next() ? rs.getString(1) : "?";
                }
                c.commit();
            } catch (SQLException e) {
                c.rollback();
                throw e;
            }
        }
        out.println("evolution " + id + " of " + name + " started: the new query is built beside the live table in the background");
        out.println("watch it with pgtrickle:evolution " + name + ", cancel it with pgtrickle:cancelevolution " + name);
    }

    /** {@code pgtrickle:evolution}: every shadow evolution, newest first (pgtrickle.view_evolution_status()). */
    public void evolution() throws SQLException {
        table(EVOLUTION_STATUS + "()");
    }

    /** {@code pgtrickle:evolution NAME}: the latest shadow evolution of one stream table. */
    public void evolution(String name) throws SQLException {
        table(EVOLUTION_STATUS + "(?)", name);
    }

    private static final String EVOLUTION_STATUS = "SELECT evolution_id AS id, stream_table, status, phase, live_rows, shadow_rows,"
            + " round(build_progress * 100) || '%' AS progress, date_trunc('second', started_at) AS started,"
            + " date_trunc('second', ended_at) AS ended, error FROM pgtrickle.view_evolution_status";

    /**
     * {@code pgtrickle:cancelevolution NAME}: cancels NAME's evolution in progress; the shadow is
     * dropped, the live table was never touched.
     */
    public void cancelEvolution(String name) throws SQLException {
        call("SELECT pgtrickle.cancel_evolution(?)", name);
        out.println("cancelled the evolution of " + name);
    }

    private void call(String sql, String... arguments) throws SQLException {
        try (Connection c = dataSource.getConnection(); PreparedStatement p = prepare(c, sql, arguments)) {
            p.execute();
        }
    }

    /** Prints a result set as an aligned text table, like psql. */
    private void table(String sql, String... arguments) throws SQLException {
        List<String[]> rows = new ArrayList<>();
        String[] header;
        try (Connection c = dataSource.getConnection(); PreparedStatement p = prepare(c, sql, arguments); ResultSet rs = p.executeQuery()) {
            ResultSetMetaData meta = rs.getMetaData();
            header = new String[meta.getColumnCount()];
            for (int i = 0; i < header.length; i++) {
                header[i] = meta.getColumnLabel(i + 1);
            }
            while (rs.next()) {
                String[] row = new String[header.length];
                for (int i = 0; i < row.length; i++) {
                    String v = rs.getString(i + 1);
                    row[i] = v == null ? "" : v;
                }
                rows.add(row);
            }
        }
        int[] width = new int[header.length];
        for (int i = 0; i < header.length; i++) {
            width[i] = header[i].length();
            for (String[] row : rows) {
                width[i] = Math.max(width[i], row[i].length());
            }
        }
        print(header, width);
        StringBuilder rule = new StringBuilder();
        for (int i = 0; i < width.length; i++) {
            rule.append(i == 0 ? "" : "-+-").append("-".repeat(width[i]));
        }
        out.println(rule);
        rows.forEach(r -> print(r, width));
        out.println("(" + rows.size() + (rows.size() == 1 ? " row)" : " rows)"));
    }

    private void print(String[] cells, int[] width) {
        StringBuilder line = new StringBuilder();
        for (int i = 0; i < cells.length; i++) {
            line.append(i == 0 ? "" : " | ").append(String.format("%-" + width[i] + "s", cells[i]));
        }
        out.println(line.toString().stripTrailing());
    }

    private static PreparedStatement prepare(Connection c, String sql, String... arguments) throws SQLException {
        PreparedStatement p = c.prepareStatement(sql);
        for (int i = 0; i < arguments.length; i++) {
            p.setString(i + 1, arguments[i]);
        }
        return p;
    }
}
