package io.pgtrickle.catalog;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.jdbc.PgTrickleDataSource;
import java.sql.Connection;
import java.sql.SQLException;
import java.util.Hashtable;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import javax.sql.DataSource;
import org.osgi.annotation.bundle.Capability;
import org.osgi.framework.BundleContext;
import org.osgi.framework.ServiceRegistration;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Deactivate;
import org.osgi.service.component.annotations.Reference;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Migrates the catalog of the platform's database when that database becomes reachable, then
 * registers {@link Catalog}. Migration runs off the SCR thread (it may wait for another container's
 * advisory lock). Connection failures are retried with backoff; a {@link CatalogRefusedException}
 * is logged once and not retried, because only an operator can fix it.
 */
// Registered by hand once migrated; declared so that resolvers enforcing service requirements see it.
@Capability(namespace = "osgi.service", attribute = "objectClass:List<String>=io.pgtrickle.api.catalog.Catalog", uses = Catalog.class)
@Component(immediate = true)
public class CatalogService {

    private static final Logger LOG = LoggerFactory.getLogger(CatalogService.class);
    private static final long MAX_RETRY_DELAY_MILLIS = TimeUnit.SECONDS.toMillis(30);

    private DataSource dataSource;
    private String url;

    private ExecutorService executor;
    private volatile ServiceRegistration<Catalog> registration;

    @Reference(target = PgTrickleDataSource.DEFAULT_TARGET)
    void bindDataSource(DataSource dataSource, Map<String, Object> properties) {
        this.dataSource = dataSource;
        // the data source bundle publishes its URL with any password already masked
        this.url = String.valueOf(properties.getOrDefault(PgTrickleDataSource.URL_PROPERTY, "the configured database"));
    }

    @Activate
    void activate(BundleContext context) {
        executor = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "pgtrickle-catalog-migration");
            t.setDaemon(true);
            return t;
        });
        executor.execute(() -> migrateAndPublish(context));
    }

    private void migrateAndPublish(BundleContext context) {
        long delay = 500;
        while (!Thread.currentThread().isInterrupted()) {
            try (Connection c = dataSource.getConnection()) {
                CatalogMigrator.Result result = new CatalogMigrator().migrate(c);
                LOG.info("pgtrickle catalog at version {} on {}{}", result.migrationVersion(), url,
                        result.applied().isEmpty() ? " (up to date)" : " (applied " + String.join(", ", result.applied()) + ")");
                publish(context, result, url);
                return;
            } catch (CatalogRefusedException e) {
                LOG.error("pgtrickle catalog on {} refused: {}", url, e.getMessage());
                return;
            } catch (SQLException | RuntimeException e) {
                LOG.error("pgtrickle catalog migration on {} failed, retrying in {} ms: {}", url, delay, e.getMessage());
            }
            try {
                Thread.sleep(delay);
            } catch (InterruptedException e) {
                return;
            }
            delay = Math.min(delay * 2, MAX_RETRY_DELAY_MILLIS);
        }
    }

    private synchronized void publish(BundleContext context, CatalogMigrator.Result result, String url) {
        if (executor.isShutdown()) {
            return;
        }
        Hashtable<String, Object> properties = new Hashtable<>();
        properties.put(Catalog.VERSION_PROPERTY, org.osgi.framework.Version.parseVersion(result.releaseVersion()));
        properties.put(Catalog.URL_PROPERTY, url);
        registration = context.registerService(Catalog.class, new MigratedCatalog(result, dataSource), properties);
    }

    @Deactivate
    synchronized void deactivate() throws InterruptedException {
        executor.shutdownNow();
        if (registration != null) {
            registration.unregister();
            registration = null;
        }
        executor.awaitTermination(10, TimeUnit.SECONDS);
    }

    private record MigratedCatalog(CatalogMigrator.Result result, DataSource dataSource) implements Catalog {
        @Override
        public String version() {
            return result.releaseVersion();
        }

        @Override
        public String migrationVersion() {
            return result.migrationVersion();
        }
    }
}
