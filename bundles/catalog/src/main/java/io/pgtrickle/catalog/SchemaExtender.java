package io.pgtrickle.catalog;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.jdbc.PgTrickleDataSource;
import io.pgtrickle.api.schema.SchemaUnit;
import java.sql.Connection;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Hashtable;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import javax.sql.DataSource;
import org.osgi.annotation.bundle.Capability;
import org.osgi.framework.Bundle;
import org.osgi.framework.BundleContext;
import org.osgi.framework.BundleEvent;
import org.osgi.framework.ServiceRegistration;
import org.osgi.framework.Version;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Deactivate;
import org.osgi.service.component.annotations.Reference;
import org.osgi.util.tracker.BundleTracker;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The schema extender: applies the database part of every bundle that carries a
 * {@value UnitScripts#HEADER} header (a unit), the catalog's own core unit first, and registers a
 * {@link SchemaUnit} for each unit in place (and {@link Catalog} for the core).
 *
 * <ul>
 *   <li>All work runs on one thread of its own, never in a bundle event (migrations may wait for
 *       another container's advisory lock).</li>
 *   <li>A unit whose required units are not in place yet waits, and is tried again whenever another
 *       becomes ready (Sling's content loader does the same).</li>
 *   <li>A unit that fails is recorded FAILED with the error in {@code pgt_schema_unit}, logged, and
 *       gets no {@link SchemaUnit}, so its components stay inactive; the others carry on. Updating or
 *       refreshing its bundle tries again. Connection failures are retried with backoff.</li>
 *   <li>A bundle is a unit from the moment it is resolved (Sling's content loader does the same): so
 *       the units of every bundle installed when the container starts are in place before the
 *       catalog's ready line is logged, whatever order the bundles start in. One that is updated,
 *       unresolved or uninstalled loses its {@link SchemaUnit} until it is resolved again; its
 *       database part stays.</li>
 * </ul>
 */
@Capability(namespace = "osgi.extender", name = SchemaExtender.EXTENDER, version = "1.0.0")
// Registered by hand once migrated; declared so that resolvers enforcing service requirements see them.
@Capability(namespace = "osgi.service", attribute = "objectClass:List<String>=io.pgtrickle.api.catalog.Catalog", uses = Catalog.class)
@Capability(namespace = "osgi.service", attribute = "objectClass:List<String>=io.pgtrickle.api.schema.SchemaUnit", uses = SchemaUnit.class)
@Component(immediate = true)
public class SchemaExtender {

    /** The extender's name, which unit bundles require ({@code osgi.extender=pgtrickle.schema}). */
    static final String EXTENDER = "pgtrickle.schema";

    private static final Logger LOG = LoggerFactory.getLogger(SchemaExtender.class);
    private static final long MAX_RETRY_DELAY_MILLIS = TimeUnit.SECONDS.toMillis(30);

    private DataSource dataSource;
    private String url;

    private BundleContext context;
    private ExecutorService executor;
    private BundleTracker<Bundle> tracker;
    private ServiceRegistration<Catalog> catalog;
    /** Units in place, by name; only touched on the executor thread. */
    private final Map<String, ServiceRegistration<SchemaUnit>> ready = new HashMap<>();
    /** Bundles waiting for the units they require; only touched on the executor thread. */
    private final List<Bundle> waiting = new ArrayList<>();
    /** Units that failed, by name; only touched on the executor thread. */
    private final Set<String> failed = new TreeSet<>();
    private String coreVersion;
    private String coreApplied;

    @Reference(target = PgTrickleDataSource.DEFAULT_TARGET)
    void bindDataSource(DataSource dataSource, Map<String, Object> properties) {
        this.dataSource = dataSource;
        // the data source bundle publishes its URL with any password already masked
        this.url = String.valueOf(properties.getOrDefault(PgTrickleDataSource.URL_PROPERTY, "the configured database"));
    }

    @Activate
    void activate(BundleContext context) {
        this.context = context;
        executor = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "pgtrickle-schema-extender");
            t.setDaemon(true);
            return t;
        });
        executor.execute(this::start);
    }

    private void start() {
        Bundle own = context.getBundle();
        if (!apply(own)) {
            return;
        }
        tracker = new BundleTracker<>(context, Bundle.RESOLVED | Bundle.STARTING | Bundle.ACTIVE, null) {
            @Override
            public Bundle addingBundle(Bundle bundle, BundleEvent event) {
                if (bundle.getBundleId() == own.getBundleId() || bundle.getHeaders("").get(UnitScripts.HEADER) == null) {
                    return null;
                }
                submit(() -> {
                    if (apply(bundle)) {
                        retryWaiting();
                    }
                });
                return bundle;
            }

            @Override
            public void removedBundle(Bundle bundle, BundleEvent event, Bundle object) {
                submit(() -> withdraw(bundle));
            }
        };
        tracker.open();
        // after the units of the bundles already resolved: their work was queued by open()
        submit(() -> LOG.info("pgtrickle catalog at version {} on {}{}; units: {}", coreVersion, url, coreApplied, unitStates()));
    }

    private String unitStates() {
        List<String> states = new ArrayList<>();
        ready.keySet().stream().sorted().forEach(u -> states.add(u + " READY"));
        waiting.forEach(b -> states.add(b.getSymbolicName() + " waiting"));
        failed.stream().sorted().forEach(u -> states.add(u + " FAILED"));
        return String.join(", ", states);
    }

    private void submit(Runnable work) {
        if (!executor.isShutdown()) {
            executor.execute(work);
        }
    }

    /** Applies a bundle's unit, retrying connection failures; true when it is in place. */
    private boolean apply(Bundle bundle) {
        UnitScripts unit;
        try {
            String header = bundle.getHeaders("").get(UnitScripts.HEADER);
            unit = UnitScripts.load(bundle.getSymbolicName(), bundle.getVersion().toString(), header,
                    ScriptFolder.of(bundle, UnitScripts.root(header)));
        } catch (RuntimeException e) {
            LOG.error("pgtrickle: the database part of {} {} cannot be read, so its services stay off: {}",
                    bundle.getSymbolicName(), bundle.getVersion(), e.getMessage());
            return false;
        }
        List<String> missing = unit.requires().stream().filter(r -> !ready.containsKey(r)).toList();
        if (!missing.isEmpty()) {
            LOG.info("pgtrickle: {} waits for the database part of {}", unit.unit(), String.join(", ", missing));
            waiting.remove(bundle);
            waiting.add(bundle);
            return false;
        }
        long delay = 500;
        while (!Thread.currentThread().isInterrupted()) {
            try (Connection c = dataSource.getConnection()) {
                UnitMigrator.Result result = new CatalogMigrator(unit.isCore() ? List.of(unit) : List.of(core(), unit))
                        .migrateUnit(c, unit);
                if (!result.skipped().isEmpty()) {
                    LOG.warn("pgtrickle: {} {} kept code a newer version of it applied: {}", unit.unit(), unit.bundleVersion(),
                            String.join(", ", result.skipped()));
                }
                String applied = result.applied().isEmpty() ? " (up to date)" : " (applied " + String.join(", ", result.applied()) + ")";
                if (unit.isCore()) {
                    coreVersion = result.schemaVersion();
                    coreApplied = applied;
                } else {
                    LOG.info("pgtrickle: database part of {} {} in place on {}{}", unit.unit(), unit.bundleVersion(), url, applied);
                }
                failed.remove(unit.unit());
                publish(unit, result);
                return true;
            } catch (CatalogRefusedException e) {
                LOG.error("pgtrickle: the database part of {} on {} was refused, so its services stay off: {}", unit.unit(), url, e.getMessage());
                failed.add(unit.unit());
                return false;
            } catch (SQLException e) {
                if (e.getSQLState() == null || !e.getSQLState().startsWith("08")) {
                    LOG.error("pgtrickle: the database part of {} {} failed on {}, so its services stay off until the bundle is updated"
                            + " or refreshed: {}", unit.unit(), unit.bundleVersion(), url, e.getMessage());
                    failed.add(unit.unit());
                    return false;
                }
                LOG.error("pgtrickle: applying the database part of {} on {} failed, retrying in {} ms: {}", unit.unit(), url, delay, e.getMessage());
            } catch (RuntimeException e) {
                LOG.error("pgtrickle: applying the database part of {} on {} failed, retrying in {} ms: {}", unit.unit(), url, delay, e.getMessage());
            }
            try {
                Thread.sleep(delay);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return false;
            }
            delay = Math.min(delay * 2, MAX_RETRY_DELAY_MILLIS);
        }
        return false;
    }

    private UnitScripts core() {
        Bundle own = context.getBundle();
        return UnitScripts.load(own.getSymbolicName(), own.getVersion().toString(), own.getHeaders("").get(UnitScripts.HEADER),
                ScriptFolder.of(own, UnitScripts.root(own.getHeaders("").get(UnitScripts.HEADER))));
    }

    private void retryWaiting() {
        for (Bundle b : List.copyOf(waiting)) {
            List<String> requires = UnitScripts.requires(String.valueOf(b.getHeaders("").get(UnitScripts.HEADER)));
            if (ready.keySet().containsAll(requires.stream().filter(r -> !UnitScripts.CORE.equals(r)).toList())) {
                waiting.remove(b);
                if (apply(b)) {
                    retryWaiting();
                    return;
                }
            }
        }
    }

    private synchronized void publish(UnitScripts unit, UnitMigrator.Result result) {
        if (executor.isShutdown()) {
            return;
        }
        ServiceRegistration<SchemaUnit> previous = ready.remove(unit.unit());
        if (previous != null) {
            previous.unregister();
        }
        String schemaVersion = result.schemaVersion() == null ? "" : result.schemaVersion();
        Hashtable<String, Object> properties = new Hashtable<>();
        properties.put(SchemaUnit.UNIT_PROPERTY, unit.unit());
        properties.put(SchemaUnit.VERSION_PROPERTY, schemaVersion.isEmpty() ? Version.emptyVersion : osgiVersion(schemaVersion));
        properties.put(SchemaUnit.BUNDLE_VERSION_PROPERTY, unit.bundleVersion());
        properties.put(Catalog.URL_PROPERTY, url);
        if (unit.isCore() && catalog == null) {
            Hashtable<String, Object> catalogProperties = new Hashtable<>();
            MigrationVersion v = MigrationVersion.parse(schemaVersion);
            catalogProperties.put(Catalog.VERSION_PROPERTY, Version.parseVersion(v.release()));
            catalogProperties.put(Catalog.URL_PROPERTY, url);
            catalog = context.registerService(Catalog.class, new MigratedCatalog(v.release(), v.toString(), dataSource), catalogProperties);
        }
        ready.put(unit.unit(), context.registerService(SchemaUnit.class,
                new AppliedUnit(unit.unit(), schemaVersion, unit.bundleVersion()), properties));
    }

    /** 0.33.0.2 as an OSGi version: the step becomes the qualifier's number, so it still orders. */
    private static Version osgiVersion(String schemaVersion) {
        String[] p = schemaVersion.split("\\.");
        return new Version(Integer.parseInt(p[0]), Integer.parseInt(p[1]), Integer.parseInt(p[2]),
                p.length > 3 ? String.format("%09d", Integer.parseInt(p[3])) : "");
    }

    private synchronized void withdraw(Bundle bundle) {
        waiting.remove(bundle);
        ServiceRegistration<SchemaUnit> r = ready.remove(bundle.getSymbolicName());
        if (r != null) {
            r.unregister();
            LOG.info("pgtrickle: {} is being updated, unresolved or uninstalled; its database part stays in place", bundle.getSymbolicName());
        }
    }

    @Deactivate
    synchronized void deactivate() throws InterruptedException {
        executor.shutdownNow();
        if (tracker != null) {
            tracker.close();
        }
        ready.values().forEach(ServiceRegistration::unregister);
        ready.clear();
        if (catalog != null) {
            catalog.unregister();
            catalog = null;
        }
        executor.awaitTermination(10, TimeUnit.SECONDS);
    }

    private record MigratedCatalog(String version, String migrationVersion, DataSource dataSource) implements Catalog {
    }

    private record AppliedUnit(String unit, String schemaVersion, String bundleVersion) implements SchemaUnit {
    }
}
