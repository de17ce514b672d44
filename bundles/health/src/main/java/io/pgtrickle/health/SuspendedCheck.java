package io.pgtrickle.health;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.health.HealthCheck;
import io.pgtrickle.api.health.HealthCheckService;
import java.sql.ResultSet;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.component.annotations.ReferenceCardinality;
import org.osgi.service.component.annotations.ReferencePolicy;

/** No stream table is SUSPENDED (refreshes failed pg_trickle.max_consecutive_errors times in a row). */
@Component
@HealthCheckService(name = "suspended")
public class SuspendedCheck implements HealthCheck {

    @Reference(cardinality = ReferenceCardinality.OPTIONAL, policy = ReferencePolicy.DYNAMIC)
    volatile Catalog catalog;

    @Override
    public Result execute() {
        Catalog c = catalog;
        if (c == null) {
            return Result.critical("the catalog is not migrated");
        }
        try {
            String suspended = Sql.run(c.dataSource(), s -> {
                try (ResultSet rs = s.executeQuery("SELECT format('%I.%I', pgt_schema, pgt_name) FROM pgtrickle.pgt_stream_tables"
                        + " WHERE status = 'SUSPENDED' ORDER BY 1")) {
                    StringBuilder names = new StringBuilder();
                    int n = 0;
                    while (rs.next()) {
                        if (n++ < 5) {
                            names.append(n > 1 ? ", " : "").append(rs.getString(1));
                        }
                    }
                    return n == 0 ? null : n + " stream table(s) suspended: " + names + (n > 5 ? ", ..." : "")
                            + " (pgtrickle.resume_stream_table after fixing the cause)";
                }
            });
            return suspended == null ? Result.ok("no stream table suspended") : Result.critical(suspended);
        } catch (Exception e) {
            return Result.critical("cannot read the stream tables: " + e.getMessage());
        }
    }
}
