package io.pgtrickle.itests.felix;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.fail;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Dictionary;
import java.util.Hashtable;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import javax.sql.DataSource;
import org.osgi.framework.Bundle;
import org.osgi.framework.BundleContext;
import org.osgi.framework.Constants;
import org.osgi.framework.Filter;
import org.osgi.framework.FrameworkUtil;
import org.osgi.framework.InvalidSyntaxException;
import org.osgi.framework.ServiceReference;
import org.osgi.service.component.runtime.ServiceComponentRuntime;
import org.osgi.service.component.runtime.dto.ComponentConfigurationDTO;
import org.osgi.service.component.runtime.dto.ComponentDescriptionDTO;
import org.osgi.service.component.runtime.dto.UnsatisfiedReferenceDTO;
import org.osgi.util.tracker.ServiceTracker;

/**
 * Helpers for code that runs inside the framework (the test methods). Every wait is bounded, and a
 * wait that runs out says what the registry and SCR looked like, so a red test explains itself.
 */
final class InFramework {

    /** How long a freshly configured database may take to answer and be migrated. */
    static final long SERVICE_TIMEOUT_MILLIS = TimeUnit.SECONDS.toMillis(60);

    static final String PGTRICKLE_BUNDLE_PREFIX = "io.pgtrickle.";

    private InFramework() {
    }

    static BundleContext context() {
        return FrameworkUtil.getBundle(InFramework.class).getBundleContext();
    }

    /** A framework property the driver set (see {@link ContainerSettings}); null when absent or empty. */
    static String setting(String name) {
        String v = context().getProperty(name);
        return v == null || v.isEmpty() ? null : v;
    }

    static String requiredSetting(String name) {
        String v = setting(name);
        if (v == null) {
            throw new IllegalStateException("framework property " + name + " was not set by the test's @Configuration");
        }
        return v;
    }

    static String expectedVersion() {
        return requiredSetting(ContainerSettings.EXPECTED_VERSION);
    }

    /**
     * Every bundle is ACTIVE (fragments: RESOLVED), and each named pgtrickle bundle is installed.
     * A bundle that failed to resolve or start is listed with its state.
     */
    static void assertAllBundlesActive(String... requiredSymbolicNames) {
        List<String> problems = new ArrayList<>();
        for (String bsn : requiredSymbolicNames) {
            if (Arrays.stream(context().getBundles()).noneMatch(b -> bsn.equals(b.getSymbolicName()))) {
                problems.add(bsn + " is not installed");
            }
        }
        for (Bundle b : context().getBundles()) {
            boolean fragment = b.getHeaders().get(Constants.FRAGMENT_HOST) != null;
            int wanted = fragment ? Bundle.RESOLVED : Bundle.ACTIVE;
            if (b.getState() != wanted) {
                problems.add(b.getSymbolicName() + " " + b.getVersion() + " is " + state(b.getState())
                        + ", expected " + state(wanted));
            }
        }
        if (!problems.isEmpty()) {
            fail("bundles not running:\n  " + String.join("\n  ", problems) + "\n" + componentReport());
        }
    }

    /**
     * Waits up to {@code timeoutMillis} for a service; fails with the SCR report when none comes. The
     * returned object stays usable for the rest of the test: it is got once more outside the tracker,
     * because closing the tracker ungets its copy, and a service factory such as ConfigAdmin disposes
     * the instance it gave out when its last use ends. The framework releases it with the probe.
     */
    /** The installed bundle with that symbolic name. */
    static Bundle bundle(String bsn) {
        return Arrays.stream(context().getBundles()).filter(b -> bsn.equals(b.getSymbolicName())).findFirst()
                .orElseThrow(() -> new AssertionError(bsn + " is not installed"));
    }

    static <T> T awaitService(Class<T> type, String filter, long timeoutMillis) {
        ServiceTracker<T, T> tracker = tracker(type, filter);
        try {
            ServiceReference<T> ref = tracker.waitForService(timeoutMillis) == null ? null : tracker.getServiceReference();
            T service = ref == null ? null : context().getService(ref);
            if (service == null) {
                fail("no " + type.getName() + (filter == null ? "" : " matching " + filter) + " within "
                        + timeoutMillis + " ms\n" + componentReport());
            }
            return service;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted while waiting for " + type.getName(), e);
        } finally {
            tracker.close();
        }
    }

    /** Asserts that no such service shows up during the whole of {@code millis}; 0: none right now. */
    static void assertNoServiceFor(Class<?> type, String filter, long millis) {
        ServiceTracker<?, ?> tracker = tracker(type, filter);
        try {
            // waitForService(0) would wait forever
            Object service = millis > 0 ? tracker.waitForService(millis) : tracker.getService();
            assertNull(type.getName() + " was registered although it must not be: " + service + "\n" + componentReport(), service);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted while watching for " + type.getName(), e);
        } finally {
            tracker.close();
        }
    }

    private static <T> ServiceTracker<T, T> tracker(Class<T> type, String filter) {
        try {
            String objectClass = "(" + Constants.OBJECTCLASS + "=" + type.getName() + ")";
            Filter f = context().createFilter(filter == null ? objectClass : "(&" + objectClass + filter + ")");
            ServiceTracker<T, T> tracker = new ServiceTracker<>(context(), f, null);
            tracker.open();
            return tracker;
        } catch (InvalidSyntaxException e) {
            throw new IllegalArgumentException("bad filter " + filter, e);
        }
    }

    /**
     * The newest migration recorded in {@code pgtrickle.pgt_schema_version}, ordered as versions
     * (0.33.0.1 after 0.33.0), not as text.
     */
    static void exec(DataSource ds, String sql) throws SQLException {
        try (Connection c = ds.getConnection(); Statement s = c.createStatement()) {
            s.execute(sql);
        }
    }

    /** The first column of the first row; null when there is no row. */
    static String query(DataSource ds, String sql) throws SQLException {
        try (Connection c = ds.getConnection(); Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            return rs.next() ? rs.getString(1) : null;
        }
    }

    static String newestMigration(DataSource dataSource) throws SQLException {
        try (Connection c = dataSource.getConnection(); Statement s = c.createStatement();
             ResultSet rs = s.executeQuery("SELECT version FROM pgtrickle.pgt_schema_version"
                     + " ORDER BY string_to_array(version, '.')::int[] DESC LIMIT 1")) {
            if (!rs.next()) {
                fail("pgtrickle.pgt_schema_version is empty");
            }
            return rs.getString(1);
        }
    }

    /** The release a migration belongs to: 0.33.0.1 → 0.33.0. */
    static String release(String migrationVersion) {
        return Arrays.stream(migrationVersion.split("\\.")).limit(3).collect(Collectors.joining("."));
    }

    /** Checks the catalog the DataSource reaches against what the Catalog service says. */
    static void assertCatalogMigrated(DataSource dataSource, String migrationVersion) throws SQLException {
        String newest = newestMigration(dataSource);
        assertEquals("newest migration in pgtrickle.pgt_schema_version", migrationVersion, newest);
        assertEquals("release of the newest migration", expectedVersion(), release(newest));
    }

    static Dictionary<String, Object> properties(Object... keyValues) {
        Hashtable<String, Object> d = new Hashtable<>();
        for (int i = 0; i < keyValues.length; i += 2) {
            if (keyValues[i + 1] != null) {
                d.put((String) keyValues[i], keyValues[i + 1]);
            }
        }
        return d;
    }

    /** The component configurations SCR holds for the given configuration PID, e.g. the datasource's. */
    static List<ComponentConfigurationDTO> componentConfigurations(String pid) {
        ServiceComponentRuntime scr = awaitService(ServiceComponentRuntime.class, null, SERVICE_TIMEOUT_MILLIS);
        List<ComponentConfigurationDTO> result = new ArrayList<>();
        for (ComponentDescriptionDTO d : scr.getComponentDescriptionDTOs()) {
            if (Arrays.asList(d.configurationPid).contains(pid)) {
                result.addAll(scr.getComponentConfigurationDTOs(d));
            }
        }
        return result;
    }

    /** Our components with their states, unsatisfied references and activation failures. */
    static String componentReport() {
        var ref = context().getServiceReference(ServiceComponentRuntime.class);
        if (ref == null) {
            return "(no ServiceComponentRuntime: SCR is not running)";
        }
        ServiceComponentRuntime scr = context().getService(ref);
        try {
            StringBuilder sb = new StringBuilder("pgtrickle components:");
            for (ComponentDescriptionDTO d : scr.getComponentDescriptionDTOs()) {
                if (!d.bundle.symbolicName.startsWith(PGTRICKLE_BUNDLE_PREFIX)) {
                    continue;
                }
                sb.append("\n  ").append(d.name).append(" (").append(d.bundle.symbolicName).append(")");
                if (!scr.isComponentEnabled(d)) {
                    sb.append(" DISABLED");
                }
                var configurations = scr.getComponentConfigurationDTOs(d);
                if (configurations.isEmpty()) {
                    sb.append(" no configuration (configuration policy ").append(d.configurationPolicy)
                            .append(", PIDs ").append(Arrays.toString(d.configurationPid)).append(")");
                }
                for (ComponentConfigurationDTO c : configurations) {
                    sb.append("\n    ").append(componentState(c.state));
                    for (UnsatisfiedReferenceDTO u : c.unsatisfiedReferences) {
                        sb.append("\n    unsatisfied reference ").append(u.name).append(" ").append(u.target);
                    }
                    if (c.failure != null) {
                        sb.append("\n    failure: ").append(c.failure.lines().limit(3).collect(Collectors.joining(" | ")));
                    }
                }
            }
            return sb.toString();
        } finally {
            context().ungetService(ref);
        }
    }

    static String componentState(int state) {
        switch (state) {
            case ComponentConfigurationDTO.UNSATISFIED_CONFIGURATION: return "UNSATISFIED_CONFIGURATION";
            case ComponentConfigurationDTO.UNSATISFIED_REFERENCE: return "UNSATISFIED_REFERENCE";
            case ComponentConfigurationDTO.SATISFIED: return "SATISFIED";
            case ComponentConfigurationDTO.ACTIVE: return "ACTIVE";
            case ComponentConfigurationDTO.FAILED_ACTIVATION: return "FAILED_ACTIVATION";
            default: return "state " + state;
        }
    }

    private static String state(int state) {
        switch (state) {
            case Bundle.UNINSTALLED: return "UNINSTALLED";
            case Bundle.INSTALLED: return "INSTALLED";
            case Bundle.RESOLVED: return "RESOLVED";
            case Bundle.STARTING: return "STARTING";
            case Bundle.STOPPING: return "STOPPING";
            case Bundle.ACTIVE: return "ACTIVE";
            default: return "state " + state;
        }
    }
}
