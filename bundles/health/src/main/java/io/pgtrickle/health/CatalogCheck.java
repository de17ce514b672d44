package io.pgtrickle.health;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.health.HealthCheck;
import io.pgtrickle.api.health.HealthCheckService;
import java.sql.ResultSet;
import org.osgi.framework.BundleContext;
import org.osgi.framework.Version;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.component.annotations.ReferenceCardinality;
import org.osgi.service.component.annotations.ReferencePolicy;

/**
 * The catalog is migrated, to this release, and no other container has migrated it further since
 * (a newer catalog under older bundles is an upgrade half done).
 */
@Component
@HealthCheckService(name = "catalog")
public class CatalogCheck implements HealthCheck {

    @Reference(cardinality = ReferenceCardinality.OPTIONAL, policy = ReferencePolicy.DYNAMIC)
    volatile Catalog catalog;

    private String release;

    @Activate
    void activate(BundleContext context) {
        Version v = context.getBundle().getVersion();
        release = v.getMajor() + "." + v.getMinor() + "." + v.getMicro();
    }

    @Override
    public Result execute() {
        Catalog c = catalog;
        if (c == null) {
            return Result.critical("the catalog is not migrated (yet): no database, or a migration failed (see the log)");
        }
        if (!c.version().equals(release)) {
            return Result.critical("catalog release " + c.version() + ", bundles release " + release);
        }
        try {
            String newest = Sql.run(c.dataSource(), s -> {
                try (ResultSet rs = s.executeQuery("SELECT version FROM pgtrickle.pgt_schema_version"
                        + " ORDER BY string_to_array(version, '.')::int[] DESC LIMIT 1")) {
                    return rs.next() ? rs.getString(1) : null;
                }
            });
            if (!c.migrationVersion().equals(newest)) {
                return Result.critical("the database's catalog is at " + newest + ", this container's at " + c.migrationVersion());
            }
            return Result.ok("catalog at version " + newest);
        } catch (Exception e) {
            return Result.critical("cannot read the catalog version: " + e.getMessage());
        }
    }
}
