package io.pgtrickle.launcher;

import static io.pgtrickle.launcher.ExistingDatabaseIT.SHUTDOWN;
import static io.pgtrickle.launcher.ExistingDatabaseIT.SIGTERM_STATUS;
import static io.pgtrickle.launcher.ExistingDatabaseIT.STARTUP;
import static io.pgtrickle.launcher.ExistingDatabaseIT.allActive;
import static io.pgtrickle.launcher.ExistingDatabaseIT.catalogLine;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.ConnectException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * bin/pgtrickle with no database configured: it starts its own PostgreSQL, installs the catalog there,
 * says how to reach it with psql, stops it on SIGTERM, and finds the same data on the next start.
 */
class EmbeddedDatabaseIT {

    @Test
    void startsItsOwnPostgresAndKeepsTheDataAcrossRestarts(@TempDir Path tmp) throws Exception {
        Path home = Distribution.copyTo(tmp.resolve("pgtrickle"));
        int port = Distribution.freePort();
        String url = "jdbc:postgresql://localhost:" + port + "/pgtrickle";

        // first start: default data directory, initialised now
        try (PgTrickleProcess pgtrickle = PgTrickleProcess.start(home, Map.of("PGTRICKLE_EMBEDDED_PORT", Integer.toString(port)), "--headless")) {
            pgtrickle.awaitLine(Pattern.quote("starting the embedded PostgreSQL on port " + port
                    + " (initialising new data directory data/postgres)"), STARTUP);
            pgtrickle.awaitLine(Pattern.quote("pgtrickle: connect with: psql -h localhost -p " + port + " -U postgres -d pgtrickle"), STARTUP);
            pgtrickle.awaitLine(allActive(), STARTUP);
            String catalogVersion = ExistingDatabaseIT.loggedCatalogVersion(pgtrickle.awaitLine(catalogLine(), STARTUP));

            try (Connection c = DriverManager.getConnection(url, "postgres", null); Statement s = c.createStatement()) {
                assertEquals(catalogVersion, version(s));
                s.execute("CREATE TABLE public.kept_across_restarts (note text)");
                s.execute("INSERT INTO public.kept_across_restarts VALUES ('written by the first run')");
            }

            // a second pgtrickle on the same home is refused, and leaves the running one alone
            try (PgTrickleProcess second = PgTrickleProcess.start(home, Map.of("PGTRICKLE_EMBEDDED_PORT", Integer.toString(port)), "--headless")) {
                assertEquals(1, second.awaitExit(SHUTDOWN), second.dump());
                assertEquals(List.of("pgtrickle: error: the embedded PostgreSQL data directory " + home.resolve("data/postgres")
                        + " is in use by another running pgtrickle"), second.stderr());
            }
            try (Connection c = DriverManager.getConnection(url, "postgres", null); Statement s = c.createStatement()) {
                assertEquals(catalogVersion, version(s));
            }

            assertEquals(SIGTERM_STATUS, pgtrickle.terminate(SHUTDOWN), pgtrickle.dump());
            assertTrue(pgtrickle.stdout().contains("pgtrickle: embedded PostgreSQL stopped"), pgtrickle.dump());
        }
        assertNothingListensOn(port);
        assertTrue(Files.isRegularFile(home.resolve("data/postgres/PG_VERSION")));
        assertTrue(Files.size(home.resolve("data/log/postgresql.log")) > 0, "the server log is written to data/log");

        // second start: the same directory, this time named through the setting; and no --headless, since
        // stdin is not a terminal here, which alone must keep Gogo's console from starting
        Map<String, String> env = Map.of(
                "PGTRICKLE_EMBEDDED_PORT", Integer.toString(port),
                "PGTRICKLE_EMBEDDED_DATA_DIR", home.resolve("data/postgres").toString());
        try (PgTrickleProcess pgtrickle = PgTrickleProcess.start(home, env)) {
            pgtrickle.awaitLine(Pattern.quote("pgtrickle: running headless (no console)"), STARTUP);
            pgtrickle.awaitLine(Pattern.quote("(reusing existing data directory data/postgres)"), STARTUP);
            String catalogVersion = ExistingDatabaseIT.loggedCatalogVersion(pgtrickle.awaitLine(catalogLine(), STARTUP));

            try (Connection c = DriverManager.getConnection(url, "postgres", null); Statement s = c.createStatement()) {
                assertEquals(catalogVersion, version(s));
                try (ResultSet rs = s.executeQuery("SELECT note FROM public.kept_across_restarts")) {
                    assertTrue(rs.next(), "the first run's table is empty");
                    assertEquals("written by the first run", rs.getString(1));
                }
            }

            assertEquals(SIGTERM_STATUS, pgtrickle.terminate(SHUTDOWN), pgtrickle.dump());
            assertTrue(pgtrickle.stdout().contains("pgtrickle: stopped"), pgtrickle.dump());
        }
        assertNothingListensOn(port);
    }

    private static String version(Statement s) throws Exception {
        try (ResultSet rs = s.executeQuery("SELECT max(version) FROM pgtrickle.pgt_schema_version")) {
            assertTrue(rs.next());
            return rs.getString(1);
        }
    }

    /** The embedded server really stopped (the launcher did not just exit and leave it running). */
    private static void assertNothingListensOn(int port) {
        assertThrows(ConnectException.class, () -> {
            try (Socket socket = new Socket()) {
                socket.connect(new InetSocketAddress(InetAddress.getLoopbackAddress(), port), 2000);
            } catch (ConnectException refused) {
                throw refused;
            } catch (IOException other) {
                throw new AssertionError("unexpected " + other, other);
            }
        }, "something still listens on port " + port);
    }
}
