package io.pgtrickle.health;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.health.HealthCheck;
import io.pgtrickle.api.health.HealthCheckService;
import io.pgtrickle.api.refresh.RefreshService;
import java.sql.ResultSet;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Modified;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.component.annotations.ReferenceCardinality;
import org.osgi.service.component.annotations.ReferencePolicy;

/**
 * The scheduler runs here and keeps up: no stream table has been due for longer than
 * {@code schedulerMaxOverdueSeconds}. Judged by what it achieves (pgtrickle.due_stream_tables(), the
 * scheduler's own question) rather than by a heartbeat, so a scheduler that ticks but cannot refresh
 * (lock waits, a pool too small) counts as failing, and any container's scheduler counts.
 */
@Component(configurationPid = HealthConfig.PID)
@HealthCheckService(name = "scheduler")
public class SchedulerCheck implements HealthCheck {

    @Reference(cardinality = ReferenceCardinality.OPTIONAL, policy = ReferencePolicy.DYNAMIC)
    volatile Catalog catalog;

    /** Registered by the refresh bundle while its scheduler runs. */
    @Reference(cardinality = ReferenceCardinality.OPTIONAL, policy = ReferencePolicy.DYNAMIC)
    volatile RefreshService scheduler;

    private volatile long maxOverdueSeconds;

    @Activate
    @Modified
    void configure(HealthConfig config) {
        maxOverdueSeconds = Math.max(1, config.schedulerMaxOverdueSeconds());
    }

    @Override
    public Result execute() {
        Catalog c = catalog;
        if (c == null) {
            return Result.critical("the catalog is not migrated: nothing is scheduled");
        }
        if (scheduler == null) {
            return Result.critical("the refresh scheduler is not running in this container");
        }
        long limit = maxOverdueSeconds;
        try {
            String late = Sql.run(c.dataSource(), s -> {
                try (ResultSet rs = s.executeQuery("SELECT name, extract(epoch FROM overdue)::bigint FROM pgtrickle.due_stream_tables()"
                        + " WHERE overdue > " + limit + " * interval '1 second' ORDER BY overdue DESC")) {
                    StringBuilder names = new StringBuilder();
                    int n = 0;
                    while (rs.next()) {
                        if (n++ < 5) {
                            names.append(n > 1 ? ", " : "").append(rs.getString(1)).append(" (").append(rs.getLong(2)).append(" s)");
                        }
                    }
                    return n == 0 ? null : n + " stream table(s) due for more than " + limit + " s: " + names + (n > 5 ? ", ..." : "");
                }
            });
            return late == null ? Result.ok("no stream table due for more than " + limit + " s") : Result.critical(late);
        } catch (Exception e) {
            return Result.critical("cannot ask which stream tables are due: " + e.getMessage());
        }
    }
}
