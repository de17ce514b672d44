package io.pgtrickle.refresh;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.schema.SchemaUnit;
import io.pgtrickle.api.refresh.RefreshListener;
import io.pgtrickle.api.refresh.RefreshService;
import java.sql.SQLException;
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

/**
 * The refresh scheduler as a DS component: runs a {@link RefreshEngine} while a migrated
 * {@link Catalog} is available, publishes it as the {@link RefreshService}, and is the one owner of
 * the {@link RefreshListener} whiteboard. Everything else lives in the engine.
 *
 * <p>A configuration change re-creates the component (no {@code @Modified}): the engine stops
 * cleanly and starts with the new values. The database's {@code pg_trickle.*} settings, which win
 * over these, are followed while the engine runs (it reads them every tick).
 */
@Component(service = RefreshService.class, configurationPid = RefreshScheduler.PID, immediate = true)
@Designate(ocd = RefreshScheduler.Config.class)
public class RefreshScheduler implements RefreshService {

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

    private RefreshEngine engine;

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
}
