package io.pgtrickle.launcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.config.Settings;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.file.StandardOpenOption;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class EmbeddedDatabaseSpecTest {

    @TempDir
    Path root;

    private Home home;

    @BeforeEach
    void home() throws Exception {
        Files.createDirectories(root.resolve("bundle"));
        home = Home.of(root.toString());
    }

    private static Settings settings(Map<String, String> environment) {
        return Settings.load(null, environment, Map.of());
    }

    @Test
    void defaultsLiveBelowTheHome() throws Exception {
        EmbeddedDatabase.Spec spec = EmbeddedDatabase.Spec.from(settings(Map.of()), home);
        assertEquals(15432, spec.port());
        assertEquals(root.resolve("data/postgres"), spec.dataDirectory());
        assertEquals(root.resolve("data/postgres-binaries"), spec.binariesDirectory());
        assertEquals(root.resolve("data/log/postgresql.log"), spec.logFile());
    }

    @Test
    void portAndDataDirectoryFromSettings() throws Exception {
        EmbeddedDatabase.Spec spec = EmbeddedDatabase.Spec.from(
                settings(Map.of("PGTRICKLE_EMBEDDED_PORT", "25432", "PGTRICKLE_EMBEDDED_DATA_DIR", "/srv/pg")), home);
        assertEquals(25432, spec.port());
        assertEquals(Path.of("/srv/pg"), spec.dataDirectory());
    }

    @Test
    void relativeDataDirectoryIsRelativeToTheHome() throws Exception {
        EmbeddedDatabase.Spec spec = EmbeddedDatabase.Spec.from(settings(Map.of("PGTRICKLE_EMBEDDED_DATA_DIR", "data/../pgdata")), home);
        assertEquals(root.resolve("pgdata"), spec.dataDirectory());
    }

    @Test
    void badPortIsRefused() {
        for (String bad : new String[] {"abc", "0", "65536", "-1"}) {
            LauncherException e = assertThrows(LauncherException.class,
                    () -> EmbeddedDatabase.Spec.from(settings(Map.of("PGTRICKLE_EMBEDDED_PORT", bad)), home));
            assertEquals("pgtrickle.embedded.port must be a port number from 1 to 65535, not '" + bad + "'", e.getMessage());
        }
    }

    @Test
    void busyPortIsReportedBeforeAnythingStarts() throws Exception {
        try (ServerSocket busy = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            int port = busy.getLocalPort();
            LauncherException e = assertThrows(LauncherException.class,
                    () -> EmbeddedDatabase.requirePortFree(port, root.resolve("data/postgres")));
            assertEquals("port " + port + " is already in use, so the embedded PostgreSQL cannot listen on it: set "
                    + "pgtrickle.embedded.port (PGTRICKLE_EMBEDDED_PORT) to a free port, or pgtrickle.jdbc.url to use a running server",
                    e.getMessage());
        }
    }

    @Test
    void busyPortMentionsALeftoverServerOfThisDataDirectory() throws Exception {
        Path data = root.resolve("data/postgres");
        Files.createDirectories(data);
        Files.writeString(data.resolve("postmaster.pid"), "12345\n");
        try (ServerSocket busy = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            LauncherException e = assertThrows(LauncherException.class,
                    () -> EmbeddedDatabase.requirePortFree(busy.getLocalPort(), data));
            assertTrue(e.getMessage().contains("postmaster.pid exists"), e.getMessage());
        }
    }

    @Test
    void freePortPasses() throws Exception {
        int port;
        try (ServerSocket probe = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            port = probe.getLocalPort();
        }
        EmbeddedDatabase.requirePortFree(port, root.resolve("data/postgres"));
    }

    @Test
    void lockedDataDirectoryIsReportedAsInUse() throws Exception {
        Path data = root.resolve("data/postgres");
        Files.createDirectories(data);
        try (FileChannel channel = FileChannel.open(data.resolve(EmbeddedDatabase.LOCK_FILE),
                StandardOpenOption.CREATE, StandardOpenOption.WRITE);
             FileLock held = channel.lock()) {
            LauncherException e = assertThrows(LauncherException.class, () -> EmbeddedDatabase.requireDataDirectoryFree(data));
            assertEquals("the embedded PostgreSQL data directory " + data + " is in use by another running pgtrickle", e.getMessage());
        }
        // released (the server stopped): free again, and the probe left the file in place
        EmbeddedDatabase.requireDataDirectoryFree(data);
        assertTrue(Files.exists(data.resolve(EmbeddedDatabase.LOCK_FILE)));
    }

    @Test
    void dataDirectoryWithoutLockFileIsFree() throws Exception {
        EmbeddedDatabase.requireDataDirectoryFree(root.resolve("data/postgres"));
    }

    @Test
    void dataDirectoryInsideZonkysScratchAreaIsRefused() {
        Path scratch = Path.of(System.getProperty("java.io.tmpdir"), "embedded-pg", "mine").toAbsolutePath();
        LauncherException e = assertThrows(LauncherException.class, () -> EmbeddedDatabase.requireOutsideZonkyWorkingDirectory(scratch));
        assertTrue(e.getMessage().startsWith("pgtrickle.embedded.data_dir must not be inside "), e.getMessage());
    }
}
