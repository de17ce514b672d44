package io.pgtrickle.launcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Mistakes an operator makes get exit status 1 and exactly one line on stderr, through the real script. */
class StartupErrorsIT {

    private static final Duration BOUND = Duration.ofSeconds(60);

    @TempDir
    Path tmp;

    @Test
    void busyEmbeddedPort() throws Exception {
        Path home = Distribution.copyTo(tmp.resolve("pgtrickle"));
        try (ServerSocket busy = new ServerSocket(0, 1, InetAddress.getLoopbackAddress());
             PgTrickleProcess pgtrickle = PgTrickleProcess.start(home,
                     Map.of("PGTRICKLE_EMBEDDED_PORT", Integer.toString(busy.getLocalPort())), "--headless")) {
            assertEquals(1, pgtrickle.awaitExit(BOUND), pgtrickle.dump());
            assertOneErrorLine(pgtrickle, "pgtrickle: error: port " + busy.getLocalPort() + " is already in use, so the embedded PostgreSQL cannot listen on it");
        }
        assertFalse(Files.exists(home.resolve("data/postgres")), "nothing is initialised on a busy port");
    }

    @Test
    void unreadablePropertiesFile() throws Exception {
        Path home = Distribution.copyTo(tmp.resolve("pgtrickle"));
        // root can read any file, so "unreadable" is made by putting a directory where the file belongs
        Files.delete(home.resolve("etc/pgtrickle.properties"));
        Files.createDirectory(home.resolve("etc/pgtrickle.properties"));
        try (PgTrickleProcess pgtrickle = PgTrickleProcess.start(home, Map.of(), "--headless")) {
            assertEquals(1, pgtrickle.awaitExit(BOUND), pgtrickle.dump());
            assertOneErrorLine(pgtrickle, "pgtrickle: error: cannot read " + home.resolve("etc/pgtrickle.properties") + ": not a regular file");
        }
    }

    @Test
    void missingHome() throws Exception {
        Path home = Distribution.copyTo(tmp.resolve("pgtrickle"));
        List<String> command = List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-Dpgtrickle.home=" + tmp.resolve("gone"), "-cp", home.resolve("lib") + "/*", "io.pgtrickle.launcher.Main");
        try (PgTrickleProcess pgtrickle = PgTrickleProcess.start(home, command, Map.of())) {
            assertEquals(1, pgtrickle.awaitExit(BOUND), pgtrickle.dump());
            assertOneErrorLine(pgtrickle, "pgtrickle: error: pgtrickle home " + tmp.resolve("gone") + " does not exist or is not a directory");
        }
    }

    @Test
    void unknownArgument() throws Exception {
        Path home = Distribution.copyTo(tmp.resolve("pgtrickle"));
        try (PgTrickleProcess pgtrickle = PgTrickleProcess.start(home, Map.of(), "--port", "1")) {
            assertEquals(2, pgtrickle.awaitExit(BOUND), pgtrickle.dump());
            assertEquals("pgtrickle: error: unknown argument '--port'", pgtrickle.stderr().get(0));
        }
    }

    @Test
    void bundleThatCannotResolveIsNamedWithTheReason() throws Exception {
        Path home = Distribution.copyTo(tmp.resolve("pgtrickle"));
        // without the DS API bundle, SCR cannot resolve (osgi_stack.md trap 1)
        try (Stream<Path> jars = Files.list(home.resolve("bundle"))) {
            for (Path jar : jars.filter(j -> j.getFileName().toString().startsWith("org.osgi.service.component-")).toList()) {
                Files.delete(jar);
            }
        }
        Map<String, String> env = Map.of("PGTRICKLE_JDBC_URL", "jdbc:postgresql://localhost:" + Distribution.freePort() + "/unreachable");
        try (PgTrickleProcess pgtrickle = PgTrickleProcess.start(home, env, "--headless")) {
            int expected = Distribution.BUNDLES.size() - 1;
            String summary = pgtrickle.awaitLine("pgtrickle: OSGi framework started, \\d+ of " + expected + " bundles active", BOUND);
            assertTrue(pgtrickle.stderr().stream().anyMatch(l -> l.startsWith("pgtrickle: warning: bundle org.apache.felix.scr ")
                    && l.contains("is INSTALLED (not resolved): ") && l.contains("org.osgi.service.component")), pgtrickle.dump());
            assertFalse(summary.contains(expected + " of " + expected), summary);
            assertEquals(143, pgtrickle.terminate(BOUND), pgtrickle.dump());
        }
    }

    private static void assertOneErrorLine(PgTrickleProcess pgtrickle, String prefix) {
        List<String> stderr = pgtrickle.stderr();
        assertEquals(1, stderr.size(), pgtrickle.dump());
        assertTrue(stderr.get(0).startsWith(prefix), pgtrickle.dump());
    }
}
