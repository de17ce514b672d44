package io.pgtrickle.testing;

import io.zonky.test.db.postgres.embedded.EmbeddedPostgres;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.zip.ZipFile;
import javax.sql.DataSource;
import org.postgresql.ds.PGSimpleDataSource;
import org.testcontainers.DockerClientFactory;
import org.testcontainers.postgresql.PostgreSQLContainer;

/**
 * The PostgreSQL server every database test runs against, chosen once per JVM:
 *
 * <ol>
 *   <li>{@code PGTRICKLE_TEST_JDBC_URL} (environment or system property {@code pgtrickle.test.jdbc.url}),
 *       with {@code PGTRICKLE_TEST_JDBC_USER} / {@code PGTRICKLE_TEST_JDBC_PASSWORD};</li>
 *   <li>else a Testcontainers {@code postgres} container when a Docker engine answers;</li>
 *   <li>else zonky embedded PostgreSQL. Its binaries come from the classpath (the newest major we
 *       support), or from the binaries jar named by {@code pgtrickle.test.pg.binaries}, which is how the
 *       build runs the PostgreSQL 15 smoke set.</li>
 * </ol>
 *
 * <p>{@code pgtrickle.test.backend=embedded} skips the first two, for runs that must pick the version.
 *
 * <p>When {@code pgtrickle.test.pg.major} is set, the server must be that major version or every test
 * fails: a smoke run on 15 that silently ran on 18 would prove nothing. Nothing here skips.
 */
public final class TestDatabase {

    private static final AtomicInteger DATABASE_COUNTER = new AtomicInteger();
    private static TestDatabase instance;

    private final String backend;
    private final String host;
    private final int port;
    private final String adminDatabase;
    private final String user;
    private final String password;
    private final int majorVersion;
    private final String serverVersion;

    private TestDatabase(String backend, String host, int port, String adminDatabase, String user, String password) {
        this.backend = backend;
        this.host = host;
        this.port = port;
        this.adminDatabase = adminDatabase;
        this.user = user;
        this.password = password;
        try (Connection c = connect(adminDatabase); Statement s = c.createStatement();
             ResultSet rs = s.executeQuery("SELECT current_setting('server_version_num')::int, current_setting('server_version')")) {
            rs.next();
            this.majorVersion = rs.getInt(1) / 10000;
            this.serverVersion = rs.getString(2);
        } catch (SQLException e) {
            throw new IllegalStateException("test database " + adminUrl() + " (" + backend + ") does not answer: " + e.getMessage(), e);
        }
    }

    /** The shared server, started on first use. */
    public static synchronized TestDatabase get() {
        if (instance == null) {
            instance = start();
            String wanted = setting("pgtrickle.test.pg.major", "PGTRICKLE_TEST_PG_MAJOR");
            if (wanted != null && Integer.parseInt(wanted.trim()) != instance.majorVersion) {
                throw new IllegalStateException("tests asked for PostgreSQL " + wanted + " but " + instance.describe()
                        + " runs " + instance.serverVersion);
            }
            System.out.println("[pgtrickle tests] database: " + instance.describe());
        }
        return instance;
    }

    private static TestDatabase start() {
        String forced = setting("pgtrickle.test.backend", "PGTRICKLE_TEST_BACKEND");
        if ("embedded".equals(forced)) {
            return embedded();
        }
        String url = setting("pgtrickle.test.jdbc.url", "PGTRICKLE_TEST_JDBC_URL");
        if (url != null) {
            return fromUrl(url, setting("pgtrickle.test.jdbc.user", "PGTRICKLE_TEST_JDBC_USER"),
                    setting("pgtrickle.test.jdbc.password", "PGTRICKLE_TEST_JDBC_PASSWORD"));
        }
        if (dockerAvailable()) {
            PostgreSQLContainer container = new PostgreSQLContainer("postgres:18");
            container.start();
            Runtime.getRuntime().addShutdownHook(new Thread(container::stop, "pgtrickle-test-container-stop"));
            return new TestDatabase("testcontainers", container.getHost(), container.getMappedPort(5432),
                    container.getDatabaseName(), container.getUsername(), container.getPassword());
        }
        return embedded();
    }

    private static boolean dockerAvailable() {
        // Without a socket or DOCKER_HOST there is nothing to ask, and Testcontainers' own probe would
        // log an ERROR block on every run on machines that have no Docker engine (CI here).
        if (System.getenv("DOCKER_HOST") == null && !Files.exists(Path.of("/var/run/docker.sock"))) {
            return false;
        }
        try {
            return DockerClientFactory.instance().isDockerAvailable();
        } catch (RuntimeException | LinkageError e) {
            return false;
        }
    }

    private static TestDatabase fromUrl(String url, String user, String password) {
        // jdbc:postgresql://host:port/db?...; parsed by the driver itself so every URL form it accepts works
        java.util.Properties p = org.postgresql.Driver.parseURL(url, null);
        if (p == null) {
            throw new IllegalArgumentException("PGTRICKLE_TEST_JDBC_URL is not a PostgreSQL JDBC URL: " + url);
        }
        String host = p.getProperty("PGHOST", "localhost").split(",")[0];
        int port = Integer.parseInt(p.getProperty("PGPORT", "5432").split(",")[0]);
        return new TestDatabase("url", host, port, p.getProperty("PGDBNAME", "postgres"),
                user != null ? user : p.getProperty("user", "postgres"), password != null ? password : p.getProperty("password"));
    }

    private static TestDatabase embedded() {
        try {
            EmbeddedPostgres.Builder builder = EmbeddedPostgres.builder()
                    .setServerConfig("max_connections", "200")
                    .setServerConfig("fsync", "off");
            String binaries = setting("pgtrickle.test.pg.binaries", "PGTRICKLE_TEST_PG_BINARIES");
            if (binaries != null && !binaries.isBlank()) {
                Path jar = Path.of(binaries);
                if (!Files.isRegularFile(jar)) {
                    throw new IllegalStateException("pgtrickle.test.pg.binaries names no file: " + jar);
                }
                builder.setPgBinaryResolver((system, architecture) -> binariesFromJar(jar, system, architecture));
            }
            EmbeddedPostgres pg = builder.start();
            Runtime.getRuntime().addShutdownHook(new Thread(() -> {
                try {
                    pg.close();
                } catch (IOException ignored) {
                    // the JVM is going away; the temporary cluster is deleted with it
                }
            }, "pgtrickle-test-postgres-stop"));
            return new TestDatabase("embedded", "localhost", pg.getPort(), "postgres", "postgres", null);
        } catch (IOException e) {
            throw new UncheckedIOException("could not start embedded PostgreSQL", e);
        }
    }

    private static InputStream binariesFromJar(Path jar, String system, String architecture) throws IOException {
        // zonky passes e.g. "Linux"; the binaries jars name their archive in lower case
        String entry = String.format(Locale.ROOT, "postgres-%s-%s.txz", system, architecture).toLowerCase(Locale.ROOT);
        ZipFile zip = new ZipFile(jar.toFile());
        var e = zip.getEntry(entry);
        if (e == null) {
            zip.close();
            throw new IOException(jar + " holds no " + entry);
        }
        return new java.io.FilterInputStream(zip.getInputStream(e)) {
            @Override
            public void close() throws IOException {
                super.close();
                zip.close();
            }
        };
    }

    private static String setting(String property, String env) {
        String v = System.getProperty(property);
        if (v == null || v.isBlank()) {
            v = System.getenv(env);
        }
        return v == null || v.isBlank() ? null : v;
    }

    /** e.g. {@code embedded PostgreSQL 18.6 at localhost:54123}. */
    public String describe() {
        return backend + " PostgreSQL " + serverVersion + " at " + host + ":" + port;
    }

    public String backend() {
        return backend;
    }

    public int majorVersion() {
        return majorVersion;
    }

    public String host() {
        return host;
    }

    public int port() {
        return port;
    }

    public String user() {
        return user;
    }

    /** May be null (trust authentication). */
    public String password() {
        return password;
    }

    public String adminUrl() {
        return url(adminDatabase);
    }

    public String url(String database) {
        return "jdbc:postgresql://" + host + ":" + port + "/" + database;
    }

    public Connection connect(String database) throws SQLException {
        return DriverManager.getConnection(url(database), user, password);
    }

    /** A new, empty database on the shared server, so tests never see each other's catalogs. */
    public Database createDatabase(String prefix) {
        String name = (prefix + "_" + ProcessHandle.current().pid() + "_" + DATABASE_COUNTER.incrementAndGet())
                .toLowerCase(Locale.ROOT).replaceAll("[^a-z0-9_]", "_");
        try (Connection c = connect(adminDatabase); Statement s = c.createStatement()) {
            s.execute("CREATE DATABASE \"" + name + "\"");
        } catch (SQLException e) {
            throw new IllegalStateException("could not create test database " + name + ": " + e.getMessage(), e);
        }
        return new Database(name);
    }

    /** One database on the test server. */
    public final class Database {
        private final String name;

        private Database(String name) {
            this.name = name;
        }

        public String name() {
            return name;
        }

        public String url() {
            return TestDatabase.this.url(name);
        }

        public String user() {
            return user;
        }

        public String password() {
            return password;
        }

        public Connection connect() throws SQLException {
            return TestDatabase.this.connect(name);
        }

        /** An unpooled data source: each call opens a new connection, as the concurrency tests need. */
        public DataSource dataSource() {
            PGSimpleDataSource ds = new PGSimpleDataSource();
            ds.setURL(url());
            ds.setUser(user);
            if (password != null) {
                ds.setPassword(password);
            }
            return ds;
        }

        /** An unpooled data source connecting as another role of the server (created by the test). */
        public DataSource dataSource(String role, String rolePassword) {
            PGSimpleDataSource ds = new PGSimpleDataSource();
            ds.setURL(url());
            ds.setUser(role);
            ds.setPassword(rolePassword);
            return ds;
        }

        /** Drops the database, ending any session still connected to it. */
        public void drop() {
            try (Connection c = TestDatabase.this.connect(adminDatabase); Statement s = c.createStatement()) {
                s.execute("DROP DATABASE IF EXISTS \"" + name + "\" WITH (FORCE)");
            } catch (SQLException e) {
                throw new IllegalStateException("could not drop test database " + name + ": " + e.getMessage(), e);
            }
        }
    }
}
