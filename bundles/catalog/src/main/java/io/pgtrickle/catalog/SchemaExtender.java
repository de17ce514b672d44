package io.pgtrickle.catalog;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.jdbc.PgTrickleDataSource;
import io.pgtrickle.api.schema.SchemaUnit;
import java.sql.Connection;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.Hashtable;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
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
import org.osgi.framework.wiring.BundleRevision;
import org.osgi.framework.wiring.BundleWiring;
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
    private volatile BundleTracker<Bundle> tracker;
    private volatile ServiceRegistration<Catalog> catalog;
    /** Units in place, by name; read on the executor thread, changed under this object's lock. */
    private final Map<String, ServiceRegistration<SchemaUnit>> ready = new ConcurrentHashMap<>();
    /** Bundles waiting for the units they require; only touched on the executor thread. */
    private final List<Bundle> waiting = new ArrayList<>();
    /** Units that failed, by name; only touched on the executor thread. */
    private final Set<String> failed = new TreeSet<>();
    /** The core unit as read when it was applied first: every other unit is checked against it. */
    private UnitScripts core;
    private String coreVersion;
    private String coreApplied;
    private volatile boolean closed;

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
        // every state of a resolved bundle, STOPPING included: stopping a bundle leaves its part in place
        tracker = new BundleTracker<>(context, Bundle.RESOLVED | Bundle.STARTING | Bundle.ACTIVE | Bundle.STOPPING, null) {
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
                // at once, in the framework's event: the components of an update's new revision must not
                // find the old revision's SchemaUnit while their code is not applied yet
                withdraw(bundle);
                submit(() -> waiting.remove(bundle));
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
        // One revision throughout: during an update the bundle's current revision changes under us, and
        // scripts of one revision recorded with the version of another would mislead every later run.
        BundleRevision revision = bundle.adapt(BundleRevision.class);
        BundleWiring wiring = revision == null ? null : revision.getWiring();
        if (wiring == null) {
            return false; // uninstalled, or not resolved: it is tracked again once resolved
        }
        UnitScripts unit;
        try {
            String header = bundle.getHeaders("").get(UnitScripts.HEADER);
            unit = UnitScripts.load(revision.getSymbolicName(), revision.getVersion().toString(), header,
                    ScriptFolder.of(wiring, UnitScripts.root(header)));
        } catch (RuntimeException e) {
            if (bundle.adapt(BundleRevision.class) != revision) {
                return false; // replaced while read: the new revision is applied on its own
            }
            LOG.error("pgtrickle: the database part of {} {} cannot be read, so its services stay off: {}",
                    revision.getSymbolicName(), revision.getVersion(), e.getMessage());
            return false;
        }
        if (bundle.adapt(BundleRevision.class) != revision) {
            return false;
        }
        List<String> missing = unit.requires().stream().filter(r -> !ready.containsKey(r)).toList();
        if (!missing.isEmpty()) {
            String message = "waits for the database part of " + String.join(", ", missing);
            LOG.info("pgtrickle: {} {}", unit.unit(), message);
            waiting.remove(bundle);
            waiting.add(bundle);
            try (Connection c = dataSource.getConnection()) {
                UnitMigrator.state(c, unit, null, "PENDING", message);
            } catch (SQLException e) {
                // only what an operator reads; the unit is tried again when what it waits for is in place
                LOG.debug("pgtrickle: could not record that {} waits: {}", unit.unit(), e.getMessage());
            }
            return false;
        }
        long delay = 500;
        while (!Thread.currentThread().isInterrupted()) {
            try (Connection c = dataSource.getConnection()) {
                if (unit.isCore()) {
                    core = unit;
                }
                UnitMigrator.Result result = new CatalogMigrator(unit.isCore() ? List.of(unit) : List.of(core, unit)).migrateUnit(c, unit);
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
                publish(bundle, revision, unit, result);
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

    /**
     * Registers the unit's {@link SchemaUnit} (and the {@link Catalog}, for the core). No lock is held
     * while services are registered or unregistered (their listeners activate components, which may
     * wait on the framework); instead the bundle is checked again once registered: if it was updated
     * or uninstalled meanwhile, whichever of this and {@link #withdraw} runs second unregisters.
     */
    private void publish(Bundle bundle, BundleRevision revision, UnitScripts unit, UnitMigrator.Result result) {
        if (stale(bundle, revision)) {
            return;
        }
        String schemaVersion = result.schemaVersion() == null ? "" : result.schemaVersion();
        if (unit.isCore() && catalog == null) {
            Hashtable<String, Object> catalogProperties = new Hashtable<>();
            MigrationVersion v = MigrationVersion.parse(schemaVersion);
            catalogProperties.put(Catalog.VERSION_PROPERTY, Version.parseVersion(v.release()));
            catalogProperties.put(Catalog.URL_PROPERTY, url);
            catalog = context.registerService(Catalog.class, new MigratedCatalog(v.release(), v.toString(), dataSource), catalogProperties);
            if (closed) {
                unregister(catalog);
                return;
            }
        }
        Hashtable<String, Object> properties = new Hashtable<>();
        properties.put(SchemaUnit.UNIT_PROPERTY, unit.unit());
        properties.put(SchemaUnit.VERSION_PROPERTY, schemaVersion.isEmpty() ? Version.emptyVersion : osgiVersion(schemaVersion));
        properties.put(SchemaUnit.BUNDLE_VERSION_PROPERTY, unit.bundleVersion());
        properties.put(Catalog.URL_PROPERTY, url);
        ServiceRegistration<SchemaUnit> registration = context.registerService(SchemaUnit.class,
                new AppliedUnit(unit.unit(), schemaVersion, unit.bundleVersion()), properties);
        ServiceRegistration<SchemaUnit> previous = ready.put(unit.unit(), registration);
        if (previous != null) {
            unregister(previous);
        }
        if (stale(bundle, revision) && ready.remove(unit.unit(), registration)) {
            unregister(registration);
        }
    }

    /** Updated, unresolved or uninstalled since {@code revision} was read, or the extender is closing. */
    private boolean stale(Bundle bundle, BundleRevision revision) {
        return closed || bundle.adapt(BundleRevision.class) != revision
                || (bundle.getState() & (Bundle.RESOLVED | Bundle.STARTING | Bundle.ACTIVE | Bundle.STOPPING)) == 0;
    }

    private static void unregister(ServiceRegistration<?> registration) {
        try {
            registration.unregister();
        } catch (IllegalStateException alreadyGone) {
            // unregistered by the framework with the extender's bundle
        }
    }

    /** 0.33.0.2 as an OSGi version: the step becomes the qualifier's number, so it still orders. */
    private static Version osgiVersion(String schemaVersion) {
        String[] p = schemaVersion.split("\\.");
        return new Version(Integer.parseInt(p[0]), Integer.parseInt(p[1]), Integer.parseInt(p[2]),
                p.length > 3 ? String.format("%09d", Integer.parseInt(p[3])) : "");
    }

    private void withdraw(Bundle bundle) {
        ServiceRegistration<SchemaUnit> r = ready.remove(bundle.getSymbolicName());
        if (r != null) {
            unregister(r);
            LOG.info("pgtrickle: {} is being updated, unresolved or uninstalled; its database part stays in place", bundle.getSymbolicName());
        }
    }

    @Deactivate
    void deactivate() throws InterruptedException {
        closed = true;
        executor.shutdownNow();
        executor.awaitTermination(10, TimeUnit.SECONDS);
        if (tracker != null) {
            tracker.close();
        }
        ready.values().forEach(SchemaExtender::unregister);
        ready.clear();
        if (catalog != null) {
            unregister(catalog);
            catalog = null;
        }
    }

    private record MigratedCatalog(String version, String migrationVersion, DataSource dataSource) implements Catalog {
    }

    private record AppliedUnit(String unit, String schemaVersion, String bundleVersion) implements SchemaUnit {
    }
}
