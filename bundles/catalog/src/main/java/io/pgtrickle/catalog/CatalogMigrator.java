package io.pgtrickle.catalog;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Brings schema {@code pgtrickle} on one database to the newest migration this bundle ships.
 *
 * <ul>
 *   <li>A session advisory lock serialises migrators: two containers starting against one database
 *       migrate once, the second finds nothing to do.</li>
 *   <li>Each migration runs in its own transaction together with its {@code pgt_schema_version} row:
 *       a failing migration leaves the catalog at the previous version, with nothing half-applied.</li>
 *   <li>Refused, with a message saying what was found: a catalog newer than the bundle (no silent
 *       downgrade), an applied migration whose text has changed, and a {@code pgtrickle} schema that
 *       these migrations did not create.</li>
 * </ul>
 */
public final class CatalogMigrator {

    /** Advisory lock key shared by every pgtrickle version: an arbitrary constant that must never change. */
    static final long LOCK_KEY = 0x5f1e_0c4a_7d33_0001L;

    private static final String VERSION_TABLE = "pgtrickle.pgt_schema_version";

    private final List<Migration> migrations;
    private final List<UnitScripts> units;

    /** The core and every unit on this class path (tests, benchmarks): OSGi uses {@link #migrateUnit}. */
    public CatalogMigrator() {
        this(ClasspathUnits.find(CatalogMigrator.class.getClassLoader()));
    }

    /**
     * The core and only the named units of this class path, in their order: how a test installs a
     * bundle's database part after others, as installing the bundle later would.
     */
    public static CatalogMigrator withUnits(String... names) {
        List<String> wanted = List.of(names);
        return new CatalogMigrator(ClasspathUnits.find(CatalogMigrator.class.getClassLoader()).stream()
                .filter(u -> u.isCore() || wanted.contains(u.unit())).toList());
    }

    /** The core unit, first in {@code units}, then the others in their order. */
    CatalogMigrator(List<UnitScripts> units) {
        if (units.isEmpty() || !units.get(0).isCore() || units.get(0).migrations().isEmpty()) {
            throw new IllegalArgumentException("the core unit, with its migrations, comes first");
        }
        this.migrations = units.get(0).migrations();
        this.units = List.copyOf(units);
    }

    /** The core unit alone, with these migrations (its tests). */
    static CatalogMigrator coreOnly(List<Migration> migrations) {
        return new CatalogMigrator(List.of(new UnitScripts(UnitScripts.CORE, "0.0.0", List.of(), migrations, List.of())));
    }

    /**
     * The outcome of one run: the core catalog's version and the migrations it applied, and what
     * each unit's run did.
     */
    public record Result(String migrationVersion, String releaseVersion, List<String> applied, List<UnitMigrator.Result> units) {
    }

    public Result migrate(Connection connection) throws SQLException {
        return migrate(connection, null);
    }

    /**
     * Migrates the core catalog up to and including {@code target}, units not at all (null: all, then
     * every unit); the upgrade tests stop at older versions.
     */
    Result migrate(Connection connection, MigrationVersion target) throws SQLException {
        return locked(connection, () -> {
            Result core = migrateLocked(connection, target);
            if (target != null) {
                return core;
            }
            List<UnitMigrator.Result> done = new ArrayList<>();
            for (UnitScripts unit : units) {
                done.add(UnitMigrator.migrate(connection, unit, core.migrationVersion()));
            }
            return new Result(core.migrationVersion(), core.releaseVersion(), core.applied(), List.copyOf(done));
        });
    }

    /**
     * Applies one unit's database part (the extender's call, per bundle), after checking that the
     * core catalog is this bundle's; migrates the core first when {@code unit} is the core.
     */
    UnitMigrator.Result migrateUnit(Connection connection, UnitScripts unit) throws SQLException {
        return locked(connection, () -> {
            Result core = unit.isCore() ? migrateLocked(connection, null) : checkLocked(connection);
            UnitMigrator.Result done = UnitMigrator.migrate(connection, unit, core.migrationVersion());
            List<String> applied = new ArrayList<>(core.applied());
            applied.addAll(done.applied());
            return new UnitMigrator.Result(done.unit(), done.schemaVersion(), done.bundleVersion(), List.copyOf(applied), done.skipped());
        });
    }

    @FunctionalInterface
    private interface Locked<T> {
        T run() throws SQLException;
    }

    private <T> T locked(Connection connection, Locked<T> work) throws SQLException {
        boolean autoCommit = connection.getAutoCommit();
        connection.setAutoCommit(true);
        try (Statement s = connection.createStatement()) {
            s.execute("SELECT pg_advisory_lock(" + LOCK_KEY + ")");
            try {
                return work.run();
            } finally {
                if (!connection.getAutoCommit()) {
                    connection.rollback();
                    connection.setAutoCommit(true);
                }
                s.execute("SELECT pg_advisory_unlock(" + LOCK_KEY + ")");
            }
        } finally {
            connection.setAutoCommit(autoCommit);
        }
    }

    private Result migrateLocked(Connection c, MigrationVersion target) throws SQLException {
        prepareVersionTable(c);
        Map<MigrationVersion, String> applied = appliedChecksums(c);
        verify(applied);

        List<String> newlyApplied = new ArrayList<>();
        for (Migration m : migrations) {
            if (applied.containsKey(m.version()) || (target != null && m.version().compareTo(target) > 0)) {
                continue;
            }
            apply(c, m);
            applied.put(m.version(), m.checksum());
            newlyApplied.add(m.version().toString());
        }
        MigrationVersion current = applied.keySet().stream().max(MigrationVersion::compareTo).orElseThrow();
        return new Result(current.toString(), current.release(), List.copyOf(newlyApplied), List.of());
    }

    private Result checkLocked(Connection c) throws SQLException {
        c.setAutoCommit(false);
        Map<MigrationVersion, String> applied = appliedChecksums(c);
        verify(applied);
        Migration latest = migrations.get(migrations.size() - 1);
        if (!applied.containsKey(latest.version())) {
            throw new SQLException("the pgtrickle catalog is not migrated to " + latest.version() + " yet");
        }
        return new Result(latest.version().toString(), latest.version().release(), List.of(), List.of());
    }

    private void prepareVersionTable(Connection c) throws SQLException {
        c.setAutoCommit(false);
        try (Statement s = c.createStatement()) {
            boolean schemaExists = exists(c, "SELECT 1 FROM pg_namespace WHERE nspname = 'pgtrickle'");
            boolean tableExists = exists(c, "SELECT 1 FROM pg_class WHERE oid = to_regclass('" + VERSION_TABLE + "')");
            if (schemaExists && !tableExists
                    && exists(c, "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pgtrickle'")) {
                throw new CatalogRefusedException("schema pgtrickle already holds objects but no " + VERSION_TABLE
                        + " table: it was not created by these migrations (perhaps the pg_trickle extension); refusing to touch it");
            }
            s.execute("CREATE SCHEMA IF NOT EXISTS pgtrickle");
            s.execute("CREATE TABLE IF NOT EXISTS " + VERSION_TABLE + " ("
                    + "version text PRIMARY KEY, "
                    + "applied_at timestamptz NOT NULL DEFAULT now(), "
                    + "description text, "
                    + "checksum text NOT NULL, "
                    + "execution_ms bigint NOT NULL)");
            c.commit();
        } catch (SQLException | RuntimeException e) {
            c.rollback();
            throw e;
        }
    }

    private static boolean exists(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            return rs.next();
        }
    }

    private static Map<MigrationVersion, String> appliedChecksums(Connection c) throws SQLException {
        Map<MigrationVersion, String> applied = new LinkedHashMap<>();
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT version, checksum FROM " + VERSION_TABLE)) {
            while (rs.next()) {
                applied.put(MigrationVersion.parse(rs.getString(1)), rs.getString(2));
            }
        } finally {
            c.commit();
        }
        return applied;
    }

    private void verify(Map<MigrationVersion, String> applied) {
        Migration latest = migrations.get(migrations.size() - 1);
        Optional<MigrationVersion> newest = applied.keySet().stream().max(MigrationVersion::compareTo);
        if (newest.isPresent() && newest.get().compareTo(latest.version()) > 0) {
            throw new CatalogRefusedException("the pgtrickle catalog in this database is at version " + newest.get()
                    + ", newer than this catalog bundle (" + latest.version() + "); refusing to downgrade. "
                    + "Install the pgtrickle bundles of version " + newest.get().release() + " or newer.");
        }
        for (Map.Entry<MigrationVersion, String> e : applied.entrySet()) {
            Migration shipped = migrations.stream().filter(m -> m.version().equals(e.getKey())).findFirst().orElse(null);
            if (shipped == null) {
                throw new CatalogRefusedException("the pgtrickle catalog records migration " + e.getKey()
                        + ", which this catalog bundle (" + latest.version() + ") does not know; refusing to continue");
            }
            if (!shipped.checksum().equals(e.getValue())) {
                throw new CatalogRefusedException("catalog migration " + e.getKey() + " (" + shipped.description()
                        + ") has changed since it was applied to this database (checksum " + abbreviate(e.getValue())
                        + " applied, " + abbreviate(shipped.checksum()) + " shipped); an applied migration must never be edited");
            }
        }
    }

    private static String abbreviate(String checksum) {
        return checksum == null ? "none" : checksum.substring(0, Math.min(12, checksum.length()));
    }

    private static void apply(Connection c, Migration m) throws SQLException {
        c.setAutoCommit(false);
        long start = System.nanoTime();
        try (Statement s = c.createStatement()) {
            s.execute(m.sql());
            try (PreparedStatement insert = c.prepareStatement(
                    "INSERT INTO " + VERSION_TABLE + " (version, description, checksum, execution_ms) VALUES (?, ?, ?, ?)")) {
                insert.setString(1, m.version().toString());
                insert.setString(2, m.description());
                insert.setString(3, m.checksum());
                insert.setLong(4, (System.nanoTime() - start) / 1_000_000);
                insert.executeUpdate();
            }
            c.commit();
        } catch (SQLException e) {
            c.rollback();
            SQLException named = new SQLException("catalog migration " + m.version() + " (" + m.description()
                    + ") failed and was rolled back: " + e.getMessage(), e.getSQLState(), e);
            throw named;
        } finally {
            c.setAutoCommit(true);
        }
    }
}
