package io.pgtrickle.itests.karaf;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;
import static org.ops4j.pax.exam.CoreOptions.composite;
import static org.ops4j.pax.exam.CoreOptions.maven;
import static org.ops4j.pax.exam.CoreOptions.options;
import static org.ops4j.pax.exam.CoreOptions.systemProperty;
import static org.ops4j.pax.exam.CoreOptions.vmOption;
import static org.ops4j.pax.exam.karaf.options.KarafDistributionOption.configureConsole;
import static org.ops4j.pax.exam.karaf.options.KarafDistributionOption.editConfigurationFilePut;
import static org.ops4j.pax.exam.karaf.options.KarafDistributionOption.features;
import static org.ops4j.pax.exam.karaf.options.KarafDistributionOption.karafDistributionConfiguration;
import static org.ops4j.pax.exam.karaf.options.KarafDistributionOption.logLevel;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.jdbc.PgTrickleDataSource;
import io.pgtrickle.testing.TestDatabase;
import java.io.File;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import javax.inject.Inject;
import javax.sql.DataSource;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.ops4j.pax.exam.Configuration;
import org.ops4j.pax.exam.MavenUtils;
import org.ops4j.pax.exam.Option;
import org.ops4j.pax.exam.junit.PaxExam;
import org.ops4j.pax.exam.karaf.options.LogLevelOption.LogLevel;
import org.ops4j.pax.exam.options.MavenArtifactUrlReference;
import org.ops4j.pax.exam.spi.reactors.ExamReactorStrategy;
import org.ops4j.pax.exam.spi.reactors.PerClass;
import org.osgi.framework.Bundle;
import org.osgi.framework.BundleContext;
import org.osgi.framework.Constants;
import org.osgi.framework.ServiceReference;
import org.osgi.util.tracker.ServiceTracker;

/**
 * What an operator does on a stock Apache Karaf, as the README says: add our features repository,
 * install {@code pgtrickle}, drop {@code etc/io.pgtrickle.datasource.cfg} in. The catalog must then be
 * migrated and published, every bundle of the engine active, and a stream table kept current by the
 * scheduler. This checks the features XML against a real Karaf, beyond what {@code karaf:verify}
 * resolves at build time: that the bundles start and find each other's services.
 */
@RunWith(PaxExam.class)
@ExamReactorStrategy(PerClass.class)
public class FeaturesIT {

    private static final String DATASOURCE_CFG = "etc/io.pgtrickle.datasource.cfg";
    private static final String EXPECTED_VERSION = "pgtrickle.it.expected.version";
    private static final String DB_URL = "pgtrickle.it.db.url";
    private static final String HTTP_PORT = "pgtrickle.it.http.port";
    /** Database start, Karaf's feature install and the migration all happen after the container is up. */
    private static final long SERVICE_TIMEOUT_MILLIS = TimeUnit.SECONDS.toMillis(90);

    @Inject
    private BundleContext context;

    @Configuration
    public Option[] configuration() {
        TestDatabase.Database db = TestDatabase.get().createDatabase("karaf");
        int httpPort;
        try (java.net.ServerSocket socket = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            httpPort = socket.getLocalPort();
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
        MavenArtifactUrlReference karaf = maven("org.apache.karaf", "apache-karaf").type("tar.gz").versionAsInProject();
        MavenArtifactUrlReference pgtrickleFeatures = maven("io.pgtrickle", "pgtrickle-features")
                .classifier("features").type("xml").versionAsInProject();
        List<Option> options = new ArrayList<>(List.of(
                karafDistributionConfiguration()
                        .frameworkUrl(karaf)
                        .unpackDirectory(new File(required("project.build.directory"), "exam"))
                        .useDeployFolder(false),
                configureConsole().ignoreLocalConsole().ignoreRemoteShell(),
                logLevel(LogLevel.WARN),
                // Karaf's default repository list also names snapshot repositories this machine cannot
                // reach; waiting on them (Pax Exam adds a boot feature repository) would time the
                // container out. Replace the whole list: the local repository, then Central.
                editConfigurationFilePut("etc/org.ops4j.pax.url.mvn.cfg", "org.ops4j.pax.url.mvn.localRepository",
                        required("maven.local.repository")),
                editConfigurationFilePut("etc/org.ops4j.pax.url.mvn.cfg", "org.ops4j.pax.url.mvn.repositories",
                        "https://repo.maven.apache.org/maven2@id=central"),
                // the operator's datasource configuration, picked up by Karaf's etc/ watcher
                editConfigurationFilePut(DATASOURCE_CFG, "url", db.url()),
                editConfigurationFilePut(DATASOURCE_CFG, "user", db.user()),
                systemProperty(EXPECTED_VERSION).value(required("pgtrickle.version")),
                systemProperty(DB_URL).value(db.url()),
                // HTTP on a port of its own; the feature writes its default only where no configuration exists
                editConfigurationFilePut("etc/org.apache.felix.http.cfg", "org.osgi.service.http.port", Integer.toString(httpPort)),
                editConfigurationFilePut("etc/org.apache.felix.http.cfg", "org.apache.felix.http.host", "127.0.0.1"),
                systemProperty(HTTP_PORT).value(Integer.toString(httpPort)),
                features(pgtrickleFeatures, "pgtrickle", "pgtrickle-health", "pgtrickle-http-events", "pgtrickle-live-page", "pgtrickle-metrics"),
                javaModuleOptions()));
        if (db.password() != null) {
            options.add(editConfigurationFilePut(DATASOURCE_CFG, "password", db.password()));
        }
        return options(options.toArray(new Option[0]));
    }

    /**
     * The module options bin/karaf passes on Java 9+, which Pax Exam's Karaf launcher leaves out. Without
     * the patched-in spec locator, Karaf's specs activator throws NoClassDefFoundError for every bundle
     * with META-INF/services (pgjdbc is one), and the log fills with framework ERRORs an operator's
     * Karaf would not show. Paths are relative to the Karaf home, the launched JVM's working directory.
     */
    private static Option javaModuleOptions() {
        String karafVersion = MavenUtils.getArtifactVersion("org.apache.karaf", "apache-karaf");
        return composite(
                vmOption("--add-reads=java.xml=java.logging"),
                vmOption("--add-exports=java.base/org.apache.karaf.specs.locator=java.xml,ALL-UNNAMED"),
                vmOption("--patch-module"),
                vmOption("java.base=lib/endorsed/org.apache.karaf.specs.locator-" + karafVersion + ".jar"),
                vmOption("--patch-module"),
                vmOption("java.xml=lib/endorsed/org.apache.karaf.specs.java.xml-" + karafVersion + ".jar"),
                vmOption("--add-opens=java.base/java.security=ALL-UNNAMED"),
                vmOption("--add-opens=java.base/java.net=ALL-UNNAMED"),
                vmOption("--add-opens=java.base/java.lang=ALL-UNNAMED"),
                vmOption("--add-opens=java.base/java.util=ALL-UNNAMED"),
                vmOption("--add-opens=java.naming/javax.naming.spi=ALL-UNNAMED"),
                vmOption("--add-opens=java.rmi/sun.rmi.transport.tcp=ALL-UNNAMED"),
                vmOption("--add-exports=java.base/sun.net.www.protocol.file=ALL-UNNAMED"),
                vmOption("--add-exports=java.base/sun.net.www.protocol.ftp=ALL-UNNAMED"),
                vmOption("--add-exports=java.base/sun.net.www.protocol.http=ALL-UNNAMED"),
                vmOption("--add-exports=java.base/sun.net.www.protocol.https=ALL-UNNAMED"),
                vmOption("--add-exports=java.base/sun.net.www.protocol.jar=ALL-UNNAMED"),
                vmOption("--add-exports=java.base/sun.net.www.content.text=ALL-UNNAMED"),
                vmOption("--add-exports=jdk.xml.dom/org.w3c.dom.html=ALL-UNNAMED"),
                vmOption("--add-exports=jdk.naming.rmi/com.sun.jndi.url.rmi=ALL-UNNAMED"));
    }

    @Test
    public void catalogIsMigratedAndPublished() throws Exception {
        String expectedVersion = System.getProperty(EXPECTED_VERSION);
        assertNotNull("system property " + EXPECTED_VERSION + " did not reach the Karaf JVM", expectedVersion);

        ServiceReference<Catalog> catalogRef = await(Catalog.class, null);
        Catalog catalog = context.getService(catalogRef);
        assertEquals(expectedVersion, catalog.version());
        assertEquals(expectedVersion, String.valueOf(catalogRef.getProperty(Catalog.VERSION_PROPERTY)));
        assertEquals(System.getProperty(DB_URL), catalogRef.getProperty(Catalog.URL_PROPERTY));

        ServiceReference<DataSource> dataSourceRef = await(DataSource.class, PgTrickleDataSource.DEFAULT_TARGET);
        DataSource dataSource = context.getService(dataSourceRef);
        try (Connection c = dataSource.getConnection(); Statement s = c.createStatement();
             ResultSet rs = s.executeQuery("SELECT version FROM pgtrickle.pgt_schema_version"
                     + " ORDER BY string_to_array(version, '.')::int[] DESC LIMIT 1")) {
            assertTrue("pgtrickle.pgt_schema_version is empty", rs.next());
            String newest = rs.getString(1);
            assertEquals("newest migration in pgtrickle.pgt_schema_version", catalog.migrationVersion(), newest);
            assertEquals("release of the newest migration", expectedVersion,
                    String.join(".", List.of(newest.split("\\.")).subList(0, 3)));
        }
    }

    @Test
    public void pgtrickleBundlesAreActive() throws Exception {
        await(Catalog.class, null);
        // Karaf starts a feature's bundles on its own threads: the catalog's service can be up
        // while a bundle installed after it (the shell's commands) is still starting. Looked at
        // until all are ACTIVE or a minute has passed; one that never gets there still fails.
        long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.SECONDS.toNanos(60);
        List<String> problems = bundleProblems();
        while (!problems.isEmpty() && System.nanoTime() < deadline) {
            Thread.sleep(200);
            problems = bundleProblems();
        }
        assertTrue(String.join("\n", problems), problems.isEmpty());
    }

    /** The pgtrickle bundles and their libraries that are not installed or not ACTIVE, each with why. */
    private List<String> bundleProblems() {
        List<String> problems = new ArrayList<>();
        for (String bsn : List.of("io.pgtrickle.api", "io.pgtrickle.config", "io.pgtrickle.datasource", "io.pgtrickle.catalog",
                "io.pgtrickle.refresh", "io.pgtrickle.shell", "io.pgtrickle.notify", "io.pgtrickle.evolution",
                "io.pgtrickle.sink-log", "io.pgtrickle.health", "io.pgtrickle.http-events", "io.pgtrickle.live-page", "io.pgtrickle.metrics",
                "org.apache.felix.http.jetty12",
                "org.postgresql.jdbc", "com.zaxxer.HikariCP", "com.github.jsqlparser",
                "org.apache.commons.commons-configuration2")) {
            Bundle bundle = null;
            for (Bundle b : context.getBundles()) {
                if (bsn.equals(b.getSymbolicName())) {
                    bundle = b;
                }
            }
            if (bundle == null) {
                problems.add(bsn + " is not installed");
            } else if (bundle.getState() != Bundle.ACTIVE) {
                problems.add(bsn + " is in state " + bundle.getState());
            }
        }
        return problems;
    }

    /**
     * The engine at work: the shell's pgtrickle commands and the scheduler are registered, the log sink is
     * registered in the database on the channel the feature configures, and a stream table created over
     * JDBC is refreshed by the scheduler after a write, with nobody calling refresh.
     */
    @Test
    public void theEngineRefreshesAndTheLogSinkIsRegistered() throws Exception {
        await(Object.class, "(osgi.command.scope=pgtrickle)");
        DataSource dataSource = context.getService(await(DataSource.class, PgTrickleDataSource.DEFAULT_TARGET));
        try (Connection c = dataSource.getConnection(); Statement s = c.createStatement()) {
            awaitQuery(s, "SELECT array_to_string(channels, ',') FROM pgtrickle.pgt_sinks WHERE sink_id = 'log:log'", "pgtrickle_log");
            s.execute("CREATE TABLE karaf_orders (id int PRIMARY KEY, customer text, amount numeric)");
            s.execute("SELECT pgtrickle.create_stream_table('karaf_order_totals',"
                    + " 'SELECT customer, sum(amount) AS total FROM karaf_orders GROUP BY customer')");
            s.execute("INSERT INTO karaf_orders VALUES (1, 'ann', 10), (2, 'bob', 7)");
            awaitQuery(s, "SELECT string_agg(customer || '=' || total, ',' ORDER BY customer) FROM karaf_order_totals", "ann=10,bob=7");
            awaitQuery(s, "SELECT count(*) > 0 FROM pgtrickle.pgt_refresh_history WHERE initiated_by = 'SCHEDULER' AND rows_inserted > 0", "t");
        }
    }

    /**
     * pgtrickle-health, pgtrickle-http-events and pgtrickle-live-page on Karaf: Felix HTTP Jetty 12 (not
     * Karaf's Pax Web, which is javax) serves /health, healthy once the engine runs, /pgtrickle/events and
     * /pgtrickle/stream-tables, closed to callers without a token, and the live page at /pgtrickle/.
     */
    @Test
    public void healthAndEventsAnswerOverHttp() throws Exception {
        await(Catalog.class, null);
        String base = "http://127.0.0.1:" + System.getProperty(HTTP_PORT);
        java.net.http.HttpClient http = java.net.http.HttpClient.newHttpClient();
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(SERVICE_TIMEOUT_MILLIS);
        String last = "no answer";
        while (System.nanoTime() < deadline) {
            try {
                java.net.http.HttpResponse<String> r = http.send(java.net.http.HttpRequest.newBuilder(java.net.URI.create(base + "/health"))
                        .build(), java.net.http.HttpResponse.BodyHandlers.ofString());
                last = r.statusCode() + " " + r.body();
                if (r.statusCode() == 200 && r.body().contains("\"overallResult\" : \"OK\"")) {
                    break;
                }
            } catch (java.io.IOException e) {
                last = e.toString();
            }
            Thread.sleep(250);
        }
        assertTrue("/health: " + last, last.startsWith("200 "));
        for (String check : List.of("database", "catalog", "scheduler", "suspended", "outbox")) {
            assertTrue(check + " in " + last, last.contains("\"name\" : \"" + check + "\""));
        }
        java.net.http.HttpResponse<String> events = http.send(java.net.http.HttpRequest.newBuilder(
                java.net.URI.create(base + "/pgtrickle/events?stream_table=x")).build(), java.net.http.HttpResponse.BodyHandlers.ofString());
        assertEquals(401, events.statusCode());
        // pgtrickle-live-page: the page, and the list it reads, closed without a token as the events are
        java.net.http.HttpResponse<String> page = http.send(java.net.http.HttpRequest.newBuilder(
                java.net.URI.create(base + "/pgtrickle/")).build(), java.net.http.HttpResponse.BodyHandlers.ofString());
        assertEquals(page.body(), 200, page.statusCode());
        assertTrue(page.body(), page.body().contains("<script src=\"live.js\"></script>"));
        java.net.http.HttpResponse<String> list = http.send(java.net.http.HttpRequest.newBuilder(
                java.net.URI.create(base + "/pgtrickle/stream-tables")).build(), java.net.http.HttpResponse.BodyHandlers.ofString());
        assertEquals(401, list.statusCode());
        java.net.http.HttpResponse<String> metrics = http.send(java.net.http.HttpRequest.newBuilder(
                java.net.URI.create(base + "/metrics")).build(), java.net.http.HttpResponse.BodyHandlers.ofString());
        assertEquals(metrics.body(), 200, metrics.statusCode());
        assertTrue(metrics.body(), metrics.body().contains("# TYPE pgtrickle_refreshes_total counter"));
    }

    /** Polls a one-value query (bounded) until it returns {@code expected}. */
    private static void awaitQuery(Statement s, String sql, String expected) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(SERVICE_TIMEOUT_MILLIS);
        String last = null;
        while (System.nanoTime() < deadline) {
            try (ResultSet rs = s.executeQuery(sql)) {
                last = rs.next() ? rs.getString(1) : null;
            }
            if (expected.equals(last)) {
                return;
            }
            Thread.sleep(200);
        }
        fail(sql + ": expected " + expected + " within " + SERVICE_TIMEOUT_MILLIS + " ms, got " + last);
    }

    /** Waits (bounded) for a service; the failure names what is missing and what our bundles are doing. */
    private <T> ServiceReference<T> await(Class<T> type, String filter) throws Exception {
        String objectClass = type == Object.class ? null : "(" + Constants.OBJECTCLASS + "=" + type.getName() + ")";
        String combined = objectClass == null ? filter : filter == null ? objectClass : "(&" + objectClass + filter + ")";
        ServiceTracker<T, T> tracker = new ServiceTracker<>(context, context.createFilter(combined), null);
        tracker.open();
        try {
            if (tracker.waitForService(SERVICE_TIMEOUT_MILLIS) == null) {
                StringBuilder bundles = new StringBuilder();
                for (Bundle b : context.getBundles()) {
                    if (b.getSymbolicName().startsWith("io.pgtrickle.")) {
                        bundles.append("\n  ").append(b.getSymbolicName()).append(" state ").append(b.getState());
                    }
                }
                fail("no " + type.getName() + (filter == null ? "" : " matching " + filter) + " within "
                        + SERVICE_TIMEOUT_MILLIS + " ms; pgtrickle bundles:" + bundles);
            }
            return tracker.getServiceReference();
        } finally {
            tracker.close();
        }
    }

    private static String required(String systemProperty) {
        String v = System.getProperty(systemProperty);
        if (v == null || v.isBlank()) {
            throw new IllegalStateException("system property " + systemProperty + " is not set: run the tests through Maven (mvn verify)");
        }
        return v;
    }
}
