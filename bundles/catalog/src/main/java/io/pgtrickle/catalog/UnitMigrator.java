package io.pgtrickle.catalog;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.osgi.framework.Version;

/**
 * Applies one unit's database part, with the migrator's advisory lock already held: its versioned
 * migrations (the core unit's are {@link CatalogMigrator}'s), then its repeatable scripts whose text
 * changed, all of them in one transaction together with the unit's READY row, so a unit's functions
 * and triggers never mix two versions. A failure rolls that back and leaves the unit FAILED, with the
 * error, in {@code pgt_schema_unit}; other units are not touched.
 */
final class UnitMigrator {

    static final String UNIT_TABLE = "pgtrickle.pgt_schema_unit";
    static final String SCRIPT_TABLE = "pgtrickle.pgt_schema_script";

    /** What one run did to one unit. */
    record Result(String unit, String schemaVersion, String bundleVersion, List<String> applied, List<String> skipped) {
    }

    private UnitMigrator() {
    }

    static Result migrate(Connection c, UnitScripts unit, String coreSchemaVersion) throws SQLException {
        try {
            if (!registryExists(c)) {
                throw new CatalogRefusedException("unit " + unit.unit() + " needs catalog migration 0.33.0.2 (schema units), "
                        + "which this database does not have yet");
            }
            List<String> applied = new ArrayList<>();
            String schemaVersion = unit.isCore() ? coreSchemaVersion : migrateVersioned(c, unit, applied);
            List<String> skipped = new ArrayList<>();
            applyRepeatables(c, unit, schemaVersion, applied, skipped);
            return new Result(unit.unit(), schemaVersion, unit.bundleVersion(), List.copyOf(applied), List.copyOf(skipped));
        } catch (SQLException | RuntimeException e) {
            recordFailure(c, unit, e);
            throw e;
        }
    }

    private static boolean registryExists(Connection c) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT to_regclass('" + UNIT_TABLE + "') IS NOT NULL")) {
            rs.next();
            return rs.getBoolean(1);
        }
    }

    private static String migrateVersioned(Connection c, UnitScripts unit, List<String> applied) throws SQLException {
        Map<MigrationVersion, String> done = new HashMap<>();
        try (PreparedStatement ps = c.prepareStatement("SELECT version, checksum FROM " + SCRIPT_TABLE + " WHERE unit = ? AND kind = 'V'")) {
            ps.setString(1, unit.unit());
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    done.put(MigrationVersion.parse(rs.getString(1)), rs.getString(2));
                }
            }
        }
        Optional<MigrationVersion> newest = done.keySet().stream().max(MigrationVersion::compareTo);
        Optional<MigrationVersion> shippedNewest = unit.migrations().stream().map(Migration::version).max(MigrationVersion::compareTo);
        if (newest.isPresent() && (shippedNewest.isEmpty() || newest.get().compareTo(shippedNewest.get()) > 0)) {
            throw new CatalogRefusedException("the database part of " + unit.unit() + " is at version " + newest.get()
                    + ", newer than this bundle (" + unit.bundleVersion() + "); refusing to downgrade");
        }
        for (Map.Entry<MigrationVersion, String> e : done.entrySet()) {
            Migration shipped = unit.migrations().stream().filter(m -> m.version().equals(e.getKey())).findFirst()
                    .orElseThrow(() -> new CatalogRefusedException(unit.unit() + " records migration " + e.getKey()
                            + ", which this bundle (" + unit.bundleVersion() + ") does not ship; refusing to continue"));
            if (!shipped.checksum().equals(e.getValue())) {
                throw new CatalogRefusedException("migration " + e.getKey() + " of " + unit.unit() + " (" + shipped.description()
                        + ") has changed since it was applied to this database; an applied migration must never be edited");
            }
        }
        for (Migration m : unit.migrations()) {
            if (done.containsKey(m.version())) {
                continue;
            }
            inTransaction(c, "migration " + m.version() + " (" + m.description() + ") of " + unit.unit(), () -> {
                long start = System.nanoTime();
                try (Statement s = c.createStatement()) {
                    s.execute(m.sql());
                }
                record(c, unit, "V" + m.version(), 'V', m.version().toString(), m.description(), m.checksum(), start);
            });
            done.put(m.version(), m.checksum());
            applied.add("V" + m.version());
        }
        return done.keySet().stream().max(MigrationVersion::compareTo).map(MigrationVersion::toString).orElse(null);
    }

    private static void applyRepeatables(Connection c, UnitScripts unit, String schemaVersion, List<String> applied,
                                         List<String> skipped) throws SQLException {
        Map<String, String[]> recorded = new HashMap<>();
        try (PreparedStatement ps = c.prepareStatement("SELECT script, checksum, applied_by FROM " + SCRIPT_TABLE + " WHERE unit = ? AND kind = 'R'")) {
            ps.setString(1, unit.unit());
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    recorded.put(rs.getString(1), new String[] {rs.getString(2), rs.getString(3)});
                }
            }
        }
        Version running = version(unit.bundleVersion());
        List<UnitScripts.Repeatable> due = new ArrayList<>();
        for (UnitScripts.Repeatable r : unit.repeatables()) {
            String[] before = recorded.get(r.name());
            if (before != null && before[0].equals(r.checksum())) {
                continue;
            }
            if (before != null && version(before[1]).compareTo(running) > 0) {
                // a newer container's code is in place: an older one must not put its own back
                skipped.add(r.name() + " (applied by " + before[1] + ")");
                continue;
            }
            due.add(r);
        }
        String label = due.isEmpty() ? "the state of " + unit.unit()
                : "code " + String.join(", ", due.stream().map(UnitScripts.Repeatable::name).toList()) + " of " + unit.unit();
        inTransaction(c, label, () -> {
            for (UnitScripts.Repeatable r : due) {
                long start = System.nanoTime();
                try (Statement s = c.createStatement()) {
                    s.execute(r.sql());
                } catch (SQLException e) {
                    throw new SQLException(r.name() + ": " + e.getMessage(), e.getSQLState(), e);
                }
                record(c, unit, r.name(), 'R', null, r.name().replaceFirst("^R__\\d*_?", "").replaceFirst("\\.sql$", "").replace('_', ' '),
                        r.checksum(), start);
                applied.add(r.name());
            }
            state(c, unit, schemaVersion, "READY", skipped.isEmpty() ? null : "kept newer code: " + String.join(", ", skipped));
        });
    }

    private static void record(Connection c, UnitScripts unit, String script, char kind, String version, String description,
                               String checksum, long start) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + SCRIPT_TABLE
                + " (unit, script, kind, version, description, checksum, applied_by, execution_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                + " ON CONFLICT (unit, script) DO UPDATE SET checksum = excluded.checksum, applied_by = excluded.applied_by,"
                + " applied_at = clock_timestamp(), execution_ms = excluded.execution_ms, description = excluded.description")) {
            ps.setString(1, unit.unit());
            ps.setString(2, script);
            ps.setString(3, String.valueOf(kind));
            ps.setString(4, version);
            ps.setString(5, description);
            ps.setString(6, checksum);
            ps.setString(7, unit.bundleVersion());
            ps.setLong(8, (System.nanoTime() - start) / 1_000_000);
            ps.executeUpdate();
        }
    }

    /** Records a unit's state in its own statement; the caller decides the transaction. */
    static void state(Connection c, UnitScripts unit, String schemaVersion, String state, String message) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + UNIT_TABLE
                + " (unit, schema_version, bundle_version, state, message) VALUES (?, ?, ?, ?, ?)"
                + " ON CONFLICT (unit) DO UPDATE SET schema_version = coalesce(excluded.schema_version, " + UNIT_TABLE + ".schema_version),"
                + " bundle_version = excluded.bundle_version, state = excluded.state, message = excluded.message, updated_at = clock_timestamp()")) {
            ps.setString(1, unit.unit());
            ps.setString(2, schemaVersion);
            ps.setString(3, unit.bundleVersion());
            ps.setString(4, state);
            ps.setString(5, message);
            ps.executeUpdate();
        }
    }

    private static void recordFailure(Connection c, UnitScripts unit, Exception e) {
        try {
            if (!c.getAutoCommit()) {
                c.rollback();
                c.setAutoCommit(true);
            }
            if (registryExists(c)) {
                state(c, unit, null, "FAILED", e.getMessage());
            }
        } catch (SQLException ignored) {
            // the connection itself is gone: the caller reports the original error and retries
        }
    }

    @FunctionalInterface
    private interface Work {
        void run() throws SQLException;
    }

    private static void inTransaction(Connection c, String what, Work work) throws SQLException {
        c.setAutoCommit(false);
        try {
            work.run();
            c.commit();
        } catch (SQLException e) {
            c.rollback();
            throw new SQLException(what + " failed and was rolled back: " + e.getMessage(), e.getSQLState(), e);
        } catch (RuntimeException e) {
            c.rollback();
            throw e;
        } finally {
            c.setAutoCommit(true);
        }
    }

    static Version version(String text) {
        try {
            return Version.parseVersion(text);
        } catch (IllegalArgumentException e) {
            return Version.emptyVersion;
        }
    }
}
