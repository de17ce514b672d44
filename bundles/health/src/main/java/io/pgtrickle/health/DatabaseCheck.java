package io.pgtrickle.health;

import io.pgtrickle.api.health.HealthCheck;
import io.pgtrickle.api.health.HealthCheckService;
import java.sql.ResultSet;
import javax.sql.DataSource;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.component.annotations.ReferenceCardinality;
import org.osgi.service.component.annotations.ReferencePolicy;

/** The configured database answers a query. */
@Component
@HealthCheckService(name = "database")
public class DatabaseCheck implements HealthCheck {

    // optional: without a data source the check is still there, and says so
    @Reference(cardinality = ReferenceCardinality.OPTIONAL, policy = ReferencePolicy.DYNAMIC)
    volatile DataSource dataSource;

    @Override
    public Result execute() {
        DataSource ds = dataSource;
        if (ds == null) {
            return Result.critical("no data source: configure the database (io.pgtrickle.datasource)");
        }
        try {
            String version = Sql.run(ds, s -> {
                try (ResultSet rs = s.executeQuery("SELECT current_setting('server_version')")) {
                    rs.next();
                    return rs.getString(1);
                }
            });
            return Result.ok("PostgreSQL " + version + " answers");
        } catch (Exception e) {
            return Result.critical("the database does not answer: " + e.getMessage());
        }
    }
}
