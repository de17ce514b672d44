package io.pgtrickle.health;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.health.HealthCheck;
import io.pgtrickle.api.health.HealthCheckService;
import java.sql.ResultSet;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Modified;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.component.annotations.ReferenceCardinality;
import org.osgi.service.component.annotations.ReferencePolicy;

/**
 * No notification has waited in the outbox longer than {@code outboxMaxAgeSeconds}: a sink that
 * fails, or one that no container delivers any more. Sink {@code sse} is left out: the server-sent
 * events keep their rows on purpose, for clients that reconnect (docs/live.md).
 */
@Component(configurationPid = HealthConfig.PID)
@HealthCheckService(name = "outbox")
public class OutboxCheck implements HealthCheck {

    @Reference(cardinality = ReferenceCardinality.OPTIONAL, policy = ReferencePolicy.DYNAMIC)
    volatile Catalog catalog;

    private volatile long maxAgeSeconds;

    @Activate
    @Modified
    void configure(HealthConfig config) {
        maxAgeSeconds = Math.max(1, config.outboxMaxAgeSeconds());
    }

    @Override
    public Result execute() {
        Catalog c = catalog;
        if (c == null) {
            return Result.critical("the catalog is not migrated");
        }
        long limit = maxAgeSeconds;
        try {
            String stuck = Sql.run(c.dataSource(), s -> {
                try (ResultSet rs = s.executeQuery("SELECT sink_id, count(*), extract(epoch FROM now() - min(created_at))::bigint"
                        + " FROM pgtrickle.pgt_outbox WHERE sink_id <> 'sse' GROUP BY sink_id"
                        + " HAVING min(created_at) < now() - " + limit + " * interval '1 second' ORDER BY 3 DESC")) {
                    StringBuilder sinks = new StringBuilder();
                    while (rs.next()) {
                        sinks.append(sinks.length() > 0 ? ", " : "").append(rs.getString(1)).append(" (").append(rs.getLong(2))
                                .append(" queued, oldest ").append(rs.getLong(3)).append(" s)");
                    }
                    return sinks.length() == 0 ? null : "notifications waiting longer than " + limit + " s: " + sinks;
                }
            });
            return stuck == null ? Result.ok("no notification waiting longer than " + limit + " s") : Result.critical(stuck);
        } catch (Exception e) {
            return Result.critical("cannot read the outbox: " + e.getMessage());
        }
    }
}
