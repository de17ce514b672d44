package io.pgtrickle.launcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.testing.TestDatabase;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * bin/pgtrickle --headless against a database given through PGTRICKLE_JDBC_* environment variables, as a
 * service manager would run it: the catalog is installed in that database, no embedded server is started,
 * the password never appears in the output, and SIGTERM stops everything cleanly.
 */
class ExistingDatabaseIT {

    static final Duration STARTUP = Duration.ofSeconds(90);
    static final Duration SHUTDOWN = Duration.ofSeconds(60);

    /**
     * Status of a JVM that ran its shutdown hooks on SIGTERM: 128 + 15. The launcher keeps the JVM's
     * convention rather than exiting 0, so a service manager can tell "stopped by signal" from "stopped
     * by itself" (Gogo's exit / stop 0 give 0).
     */
    static final int SIGTERM_STATUS = 143;

    static String catalogLine() {
        return Pattern.quote("pgtrickle catalog at version " + Distribution.version());
    }

    /**
     * The catalog version the catalog bundle logged, from its line: the newest migration, e.g. 0.33.0.1 (a
     * step within the release) for release 0.33.0. The pgt_schema_version table must say the same.
     */
    static String loggedCatalogVersion(String catalogLine) {
        java.util.regex.Matcher m = Pattern.compile("pgtrickle catalog at version (\\S+) on ").matcher(catalogLine);
        assertTrue(m.find(), catalogLine);
        String version = m.group(1);
        assertTrue(version.equals(Distribution.version()) || version.startsWith(Distribution.version() + "."),
                version + " is not release " + Distribution.version() + " or a step within it");
        return version;
    }

    static String allActive() {
        int n = Distribution.BUNDLES.size();
        return Pattern.quote("pgtrickle: OSGi framework started, " + n + " of " + n + " bundles active");
    }

    @Test
    void runsHeadlessAgainstAnExistingDatabaseAndStopsOnSigterm(@TempDir Path tmp) throws Exception {
        TestDatabase.Database db = TestDatabase.get().createDatabase("dist");
        try {
            Path home = Distribution.copyTo(tmp.resolve("pgtrickle"));
            // With trust authentication (the embedded test server) the driver is never asked for the password,
            // so any value can stand in for one; either way it must not show up in the output.
            String password = db.password() != null ? db.password() : "pw-" + Long.toHexString(System.nanoTime()) + "-never-printed";
            Map<String, String> env = new HashMap<>();
            env.put("PGTRICKLE_JDBC_URL", db.url());
            env.put("PGTRICKLE_JDBC_USER", db.user());
            env.put("PGTRICKLE_JDBC_PASSWORD", password);

            try (PgTrickleProcess pgtrickle = PgTrickleProcess.start(home, env, "--headless")) {
                pgtrickle.awaitLine(Pattern.quote("pgtrickle: database " + db.url() + " (environment PGTRICKLE_JDBC_URL), user "
                        + db.user() + " (environment)"), STARTUP);
                pgtrickle.awaitLine(allActive(), STARTUP);
                String catalogVersion = loggedCatalogVersion(pgtrickle.awaitLine(catalogLine(), STARTUP));

                try (Connection c = db.connect(); Statement s = c.createStatement();
                     ResultSet rs = s.executeQuery("SELECT max(version) FROM pgtrickle.pgt_schema_version")) {
                    assertTrue(rs.next());
                    assertEquals(catalogVersion, rs.getString(1));
                }

                assertEquals(SIGTERM_STATUS, pgtrickle.terminate(SHUTDOWN), pgtrickle.dump());
                assertTrue(pgtrickle.stdout().contains("pgtrickle: stopping the OSGi framework"), pgtrickle.dump());
                assertTrue(pgtrickle.stdout().contains("pgtrickle: stopped"), pgtrickle.dump());
                assertFalse(pgtrickle.allLines().stream().anyMatch(l -> l.contains("embedded PostgreSQL")), pgtrickle.dump());
                assertFalse(pgtrickle.allLines().stream().anyMatch(l -> l.contains("warning: bundle")), pgtrickle.dump());
                assertFalse(pgtrickle.allLines().stream().anyMatch(l -> l.contains(password)), "the password was printed" + pgtrickle.dump());
            }
            assertFalse(Files.exists(home.resolve("data/postgres")), "an embedded database was created although a URL was given");
        } finally {
            db.drop();
        }
    }
}
