package io.pgtrickle.refresh;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.metrics.MetricSource;
import io.pgtrickle.api.metrics.MetricWriter;
import io.pgtrickle.api.metrics.MetricWriter.Type;
import io.pgtrickle.api.schema.SchemaUnit;
import io.pgtrickle.api.refresh.RefreshListener;
import io.pgtrickle.api.refresh.RefreshService;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Map;
import org.osgi.framework.Constants;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Deactivate;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.component.annotations.ReferenceCardinality;
import org.osgi.service.component.annotations.ReferencePolicy;
import org.osgi.service.component.annotations.ReferencePolicyOption;
import org.osgi.service.metatype.annotations.AttributeDefinition;
import org.osgi.service.metatype.annotations.Designate;
import org.osgi.service.metatype.annotations.ObjectClassDefinition;
import org.slf4j.LoggerFactory;

/**
 * The refresh scheduler as a DS component: runs a {@link RefreshEngine} while a migrated
 * {@link Catalog} is available, publishes it as the {@link RefreshService}, and is the one owner of
 * the {@link RefreshListener} whiteboard, and writes the scheduler's figures for {@code /metrics}
 * (a {@link MetricSource}). Everything else lives in the engine.
 *
 * <p>A configuration change re-creates the component (no {@code @Modified}): the engine stops
 * cleanly and starts with the new values. The database's {@code pg_trickle.*} settings, which win
 * over these, are followed while the engine runs (it reads them every tick).
 */
@Component(service = {RefreshService.class, MetricSource.class}, configurationPid = RefreshScheduler.PID, immediate = true)
@Designate(ocd = RefreshScheduler.Config.class)
public class RefreshScheduler implements RefreshService, MetricSource {

    static final String PID = "io.pgtrickle.refresh";

    @ObjectClassDefinition(name = "pgtrickle refresh scheduler",
            description = "Refreshes due stream tables, most overdue first. The PostgreSQL settings "
                    + "pg_trickle.scheduler_interval_ms, pg_trickle.wake_interval_ms, pg_trickle.max_concurrent_refreshes and "
                    + "pg_trickle.max_consecutive_errors, when set in the database, win over these defaults.")
    public @interface Config {
        @AttributeDefinition(min = "10", description = "Milliseconds between two looks for due stream tables, "
                + "unless the database sets pg_trickle.scheduler_interval_ms")
        long schedulerIntervalMs() default 1000;

        @AttributeDefinition(min = "1", description = "Refreshes this container runs at once; each holds a pooled "
                + "connection, so keep it below the data source's maxPoolSize. Unless the database sets "
                + "pg_trickle.max_concurrent_refreshes")
        int workers() default 4;

        @AttributeDefinition(min = "1", description = "Failed refreshes in a row after which a stream table is "
                + "SUSPENDED, unless the database sets pg_trickle.max_consecutive_errors")
        int maxConsecutiveErrors() default 3;

        @AttributeDefinition(min = "0", description = "Subscriptions: at most one NOTIFY per stream table and channel "
                + "per this many milliseconds (0: every refresh notifies), unless the stream table or the database "
                + "sets pg_trickle.notify_coalesce_ms")
        int notifyCoalesceMs() default 250;

        @AttributeDefinition(min = "0", description = "Between ticks, milliseconds between two looks at whether a "
                + "transaction has committed in the database; one has: tick at once, so a 'calculated' stream table "
                + "follows a commit within about this long (0: only tick every schedulerIntervalMs). Unless the "
                + "database sets pg_trickle.wake_interval_ms")
        long wakeIntervalMs() default EngineSettings.DEFAULT_WAKE_INTERVAL_MS;
    }

    // bound before activate and kept across engines: the whiteboard outlives a configuration change
    private final Listeners listeners = new Listeners();

    @Reference(target = "(" + Catalog.VERSION_PROPERTY + ">=0.33.0)")
    Catalog catalog;

    /** This bundle's SQL, in place at this bundle's version: without it there is nothing to run. */
    @Reference(target = "(" + SchemaUnit.UNIT_PROPERTY + "=io.pgtrickle.refresh)")
    SchemaUnit schemaUnit;

    private volatile RefreshEngine engine;

    @Reference(service = RefreshListener.class, cardinality = ReferenceCardinality.MULTIPLE,
            policy = ReferencePolicy.DYNAMIC, policyOption = ReferencePolicyOption.GREEDY, unbind = "removeListener",
            updated = "updatedListener")
    void addListener(RefreshListener listener, Map<String, Object> properties) {
        listeners.put(listener, ranking(properties), serviceId(properties));
    }

    void updatedListener(RefreshListener listener, Map<String, Object> properties) {
        // service.ranking may change while registered; the order follows
        listeners.put(listener, ranking(properties), serviceId(properties));
    }

    void removeListener(RefreshListener listener, Map<String, Object> properties) {
        listeners.remove(serviceId(properties));
    }

    private static int ranking(Map<String, Object> properties) {
        // OSGi: a service.ranking that is not an Integer counts as 0
        Object r = properties.get(Constants.SERVICE_RANKING);
        return r instanceof Integer ? (Integer) r : 0;
    }

    private static long serviceId(Map<String, Object> properties) {
        return (Long) properties.get(Constants.SERVICE_ID);
    }

    @Activate
    void activate(Config config) {
        engine = new RefreshEngine(catalog.dataSource(),
                new EngineSettings(config.schedulerIntervalMs(), config.workers(), config.maxConsecutiveErrors(),
                        config.notifyCoalesceMs(), config.wakeIntervalMs()), listeners);
        engine.start();
    }

    @Deactivate
    void deactivate() {
        engine.close();
    }

    @Override
    public long refresh(String streamTableName) throws SQLException {
        return engine.refresh(streamTableName).refreshId();
    }

    /**
     * Per captured source, the rows its furthest-behind reader (the one whose frontier's xmin is
     * lowest; readers that never refreshed are left out, their first refresh is a full one) has not
     * consumed: pending_change_count, which reads them by the xid index, so a scrape costs as much as
     * the backlog is long, plus a function call per source.
     */
    static final String PENDING_CHANGES = "SELECT format('%I.%I', n.nspname, r.relname),"
            + " pgtrickle.pending_change_count(t.source_relid::regclass, f.since)"
            + " FROM pgtrickle.pgt_change_tracking t"
            + " JOIN pg_catalog.pg_class r ON r.oid = t.source_relid JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace"
            + " LEFT JOIN LATERAL (SELECT pgtrickle.oldest_frontier(st.frontier) AS since FROM pgtrickle.pgt_stream_tables st"
            + "   WHERE st.pgt_id = ANY (t.tracked_by_pgt_ids) AND st.frontier ? 'snapshot'"
            + "   ORDER BY pg_snapshot_xmin(pgtrickle.oldest_frontier(st.frontier)) LIMIT 1) f ON true"
            + " WHERE pgtrickle.change_buffer(t.source_relid::regclass) IS NOT NULL ORDER BY 1";

    @Override
    public void collect(MetricWriter out) {
        RefreshEngine e = engine;
        RefreshEngine.Stats stats = e.stats();
        out.family("pgtrickle_scheduler_ticks_total", Type.COUNTER, "Scheduler ticks in this container (a look for due stream tables)")
                .sample(Map.of(), stats.ticks());
        out.family("pgtrickle_scheduler_probing_ticks_total", Type.COUNTER,
                "Ticks that probed the change buffers (a transaction had completed since the last tick)").sample(Map.of(), stats.probingTicks());
        out.family("pgtrickle_scheduler_tick_failures_total", Type.COUNTER, "Ticks that could not read what is due (the database unreachable, say)")
                .sample(Map.of(), stats.tickFailures());
        out.family("pgtrickle_scheduler_tick_duration_seconds", Type.HISTOGRAM,
                "Duration of a scheduler tick: settings, planning, the due stream tables, handing them to the workers")
                .histogram(Map.of(), e.tickDurations());
        out.family("pgtrickle_scheduler_refreshes_total", Type.COUNTER, "Scheduled refreshes in this container by outcome")
                .sample(Map.of("outcome", "refreshed"), stats.refreshed())
                .sample(Map.of("outcome", "failed"), stats.failed())
                .sample(Map.of("outcome", "locked_elsewhere"), stats.lockedElsewhere())
                .sample(Map.of("outcome", "abandoned"), stats.abandoned());
        out.family("pgtrickle_refresh_workers", Type.GAUGE, "Refreshes this container runs at once (pg_trickle.max_concurrent_refreshes)")
                .sample(Map.of(), e.workerCount());
        out.family("pgtrickle_refresh_workers_busy", Type.GAUGE, "Workers running a refresh now").sample(Map.of(), e.busyWorkers());
        out.family("pgtrickle_pending_changes", Type.GAUGE,
                "Captured changes of a source its furthest-behind stream table has not applied yet");
        try (Connection c = catalog.dataSource().getConnection(); Statement s = c.createStatement()) {
            s.setQueryTimeout(5);
            try (ResultSet rs = s.executeQuery(PENDING_CHANGES)) {
                while (rs.next()) {
                    out.sample(Map.of("source", rs.getString(1)), rs.getLong(2));
                }
            }
        } catch (SQLException ex) {
            // the scheduler's own figures above are worth having while the buffers cannot be read
            LoggerFactory.getLogger(RefreshScheduler.class).warn("metrics: cannot count the pending changes: {}", ex.getMessage());
        }
    }
}
