package io.pgtrickle.itests.felix;

import static org.ops4j.pax.exam.CoreOptions.bundle;
import static org.ops4j.pax.exam.CoreOptions.cleanCaches;
import static org.ops4j.pax.exam.CoreOptions.composite;
import static org.ops4j.pax.exam.CoreOptions.frameworkProperty;
import static org.ops4j.pax.exam.CoreOptions.junitBundles;
import static org.ops4j.pax.exam.CoreOptions.mavenBundle;

import io.pgtrickle.testing.TestDatabase;
import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Properties;
import org.ops4j.pax.exam.Option;
import org.ops4j.pax.exam.cm.ConfigurationAdminOptions;
import org.ops4j.pax.exam.cm.ConfigurationOption;

/**
 * Container setup shared by the test classes. Runs in the driver only (in {@code @Configuration}
 * methods), never inside the framework: it is the one class that touches {@link TestDatabase}, whose
 * dependencies (zonky, Testcontainers) are not bundles.
 */
final class FelixOptions {

    /** The datasource component's ConfigAdmin PID. */
    static final String DATASOURCE_PID = "io.pgtrickle.datasource";

    private FelixOptions() {
    }

    /**
     * The runtime the platform needs on Felix, our bundles except pgtrickle-config, and the JUnit
     * bundles. Mirrors the Felix distribution: DS with its separate API bundles, ConfigAdmin, Metatype
     * (which needs a log service), slf4j 1.7 with the simple binding, pgjdbc with the JDBC service API
     * installed first so the driver registers its DataSourceFactory, and HikariCP.
     */
    static Option platform() {
        return composite(
                cleanCaches(),
                junitBundles(),
                frameworkProperty(ContainerSettings.EXPECTED_VERSION).value(required("pgtrickle.version")),
                mavenBundle("org.slf4j", "slf4j-api").versionAsInProject(),
                mavenBundle("org.slf4j", "slf4j-simple").versionAsInProject(),
                mavenBundle("org.osgi", "org.osgi.util.function").versionAsInProject(),
                mavenBundle("org.osgi", "org.osgi.util.promise").versionAsInProject(),
                mavenBundle("org.osgi", "org.osgi.service.component").versionAsInProject(),
                mavenBundle("org.apache.felix", "org.apache.felix.scr").versionAsInProject(),
                mavenBundle("org.apache.felix", "org.apache.felix.configadmin").versionAsInProject(),
                mavenBundle("org.apache.felix", "org.apache.felix.log").versionAsInProject(),
                mavenBundle("org.apache.felix", "org.apache.felix.metatype").versionAsInProject(),
                mavenBundle("org.osgi", "org.osgi.service.jdbc").versionAsInProject(),
                mavenBundle("org.postgresql", "postgresql").versionAsInProject(),
                mavenBundle("com.zaxxer", "HikariCP").versionAsInProject(),
                ourBundle("pgtrickle-api"),
                ourBundle("pgtrickle-datasource"),
                ourBundle("pgtrickle-catalog"));
    }

    /** pgtrickle-config and the Commons Configuration libraries it runs on. */
    static Option configBundle() {
        return composite(
                mavenBundle("org.apache.commons", "commons-lang3").versionAsInProject(),
                mavenBundle("org.apache.commons", "commons-text").versionAsInProject(),
                mavenBundle("commons-io", "commons-io").versionAsInProject(),
                mavenBundle("commons-logging", "commons-logging").versionAsInProject(),
                mavenBundle("org.apache.commons", "commons-configuration2").versionAsInProject(),
                ourBundle("pgtrickle-config"));
    }

    /** ConfigAdmin configuration of the datasource PID for a test database. */
    static ConfigurationOption datasourceConfiguration(TestDatabase.Database db) {
        ConfigurationOption datasource = ConfigurationAdminOptions.newConfiguration(DATASOURCE_PID)
                .put("url", db.url())
                .put("user", db.user());
        if (db.password() != null) {
            datasource.put("password", db.password());
        }
        return datasource;
    }

    /** The refresh scheduler bundle, which publishes the RefreshService and runs due refreshes, and its SQL parser. */
    static Option refreshBundle() {
        return composite(
                mavenBundle("com.github.jsqlparser", "jsqlparser").versionAsInProject(),
                ourBundle("pgtrickle-refresh"));
    }

    /** The notify bundle (the NotificationSink whiteboard and the outbox dispatcher) and the webhook sink bundle. */
    static Option notifyBundles() {
        return composite(
                ourBundle("pgtrickle-notify"),
                ourBundle("pgtrickle-sink-webhook"));
    }

    /** The shadow evolution bundle (zero-downtime ALTER QUERY). */
    static Option evolutionBundle() {
        return ourBundle("pgtrickle-evolution");
    }

    /**
     * {@code ALTER DATABASE db SET name = value}, run from the driver before the container starts, so
     * that every connection the container's pool opens has it.
     */
    static void databaseSetting(TestDatabase.Database db, String name, String value) {
        try (Connection c = db.connect(); Statement s = c.createStatement()) {
            s.execute("ALTER DATABASE \"" + db.name() + "\" SET " + name + " = '" + value.replace("'", "''") + "'");
        } catch (SQLException e) {
            throw new IllegalStateException("could not set " + name + " on database " + db.name() + ": " + e.getMessage(), e);
        }
    }

    /** One of our bundles, from the copy the build made of the reactor's (or local repository's) jar. */
    private static Option ourBundle(String artifactId) {
        File jar = new File(required("bundles.dir"), artifactId + ".jar");
        if (!jar.isFile()) {
            throw new IllegalStateException(jar + " is missing: run the tests through Maven (mvn verify), which copies our bundles there");
        }
        return bundle(jar.toURI().toString());
    }

    /** A fresh, empty database on the shared test server, so no test class sees another's catalog. */
    static TestDatabase.Database database(String prefix) {
        return TestDatabase.get().createDatabase(prefix);
    }

    /** The connection settings of {@code db} as framework properties the in-container code reads. */
    static Option databaseProperties(TestDatabase.Database db) {
        return composite(
                frameworkProperty(ContainerSettings.DB_URL).value(db.url()),
                frameworkProperty(ContainerSettings.DB_USER).value(db.user()),
                // framework properties are strings: "" stands for "no password" (InFramework.setting reads it as null)
                frameworkProperty(ContainerSettings.DB_PASSWORD).value(db.password() == null ? "" : db.password()));
    }

    /** Writes {@code pgtrickle.properties} into a new directory under target/ and returns the directory. */
    static Path etcDirectory(String name, Properties settings) {
        try {
            Path dir = Files.createDirectories(Path.of(required("project.build.directory"), "itest-etc", name));
            try (var out = Files.newBufferedWriter(dir.resolve("pgtrickle.properties"), StandardCharsets.UTF_8)) {
                settings.store(out, "written by " + FelixOptions.class.getName());
            }
            return dir;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * A new login role that owns {@code db} and authenticates with {@code password}, on a server that
     * really checks it. zonky's embedded server trusts every local connection, where a wrong password
     * would go unnoticed; for that backend only, the role gets a {@code scram-sha-256} line at the top
     * of the server's own pg_hba.conf (the server is this JVM's, and dies with it). Any backend that
     * still accepts a wrong password after that fails the test here, before the container starts.
     */
    static String passwordRole(TestDatabase.Database db, String password) {
        TestDatabase server = TestDatabase.get();
        String role = "pgt_it_" + db.name();
        try (Connection c = db.connect(); Statement s = c.createStatement()) {
            s.execute("CREATE ROLE \"" + role + "\" LOGIN PASSWORD '" + password.replace("'", "''") + "'");
            s.execute("ALTER DATABASE \"" + db.name() + "\" OWNER TO \"" + role + "\"");
            if (!rejectsWrongPassword(db, role, password) && "embedded".equals(server.backend())) {
                requirePasswordFor(s, role);
                // pg_reload_conf() only signals the postmaster; give it a bounded moment to reread pg_hba.conf.
                long deadline = System.nanoTime() + 10_000_000_000L;
                while (!rejectsWrongPassword(db, role, password) && System.nanoTime() < deadline) {
                    Thread.sleep(100);
                }
            }
        } catch (SQLException e) {
            throw new IllegalStateException("could not create role " + role + ": " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while waiting for the server to reload pg_hba.conf", e);
        }
        if (!rejectsWrongPassword(db, role, password)) {
            throw new IllegalStateException(server.describe() + " lets role " + role + " in with a wrong password"
                    + " (trust authentication): a wrong-password test would prove nothing there");
        }
        return role;
    }

    private static void requirePasswordFor(Statement s, String role) throws SQLException {
        try (var rs = s.executeQuery("SELECT current_setting('hba_file')")) {
            rs.next();
            Path hba = Path.of(rs.getString(1));
            String rules = "host all " + role + " 127.0.0.1/32 scram-sha-256\n"
                    + "host all " + role + " ::1/128 scram-sha-256\n";
            Files.writeString(hba, rules + Files.readString(hba));
        } catch (IOException e) {
            throw new UncheckedIOException("could not edit the embedded server's pg_hba.conf", e);
        }
        s.execute("SELECT pg_reload_conf()");
    }

    /** Whether the server turns {@code role} away when it brings a password other than its own. */
    private static boolean rejectsWrongPassword(TestDatabase.Database db, String role, String password) {
        try (Connection ignored = DriverManager.getConnection(db.url(), role, "not-" + password)) {
            return false;
        } catch (SQLException e) {
            if ("28P01".equals(e.getSQLState())) {
                return true;
            }
            throw new IllegalStateException("probing authentication for " + role + " failed unexpectedly: " + e.getMessage(), e);
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
