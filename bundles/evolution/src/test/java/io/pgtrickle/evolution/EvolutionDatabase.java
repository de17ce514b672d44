package io.pgtrickle.evolution;

import io.pgtrickle.catalog.CatalogMigrator;
import io.pgtrickle.testing.MigratedDatabase;
import java.sql.SQLException;

/** A fresh database with the pgtrickle catalog, shadow builds enabled for every session. */
final class EvolutionDatabase extends MigratedDatabase {

    EvolutionDatabase(String prefix, int throttleMs) throws SQLException {
        super(prefix, c -> new CatalogMigrator().migrate(c));
        exec("ALTER DATABASE " + name() + " SET pg_trickle.shadow_build_enabled = on",
                "ALTER DATABASE " + name() + " SET pg_trickle.shadow_refresh_throttle_ms = " + throttleMs,
                // no engine runs here to plan shadows: catch-ups need not leave it room to
                "ALTER DATABASE " + name() + " SET pg_trickle.scheduler_interval_ms = 0");
    }

    String status(String columns, String streamTable) throws SQLException {
        return queryString("SELECT " + columns + " FROM pgtrickle.view_evolution_status(?)", streamTable);
    }

    /** Rows of the query and of the table as multisets: "0|0" when they are equal. */
    String difference(String query, String table) throws SQLException {
        return queryString("WITH a AS (SELECT ROW(q.*)::text AS k FROM (" + query + ") q),"
                + " b AS (SELECT ROW(t.*)::text AS k FROM " + table + " t)"
                + " SELECT (SELECT count(*) FROM (SELECT k FROM a EXCEPT ALL SELECT k FROM b) x) || '|' ||"
                + " (SELECT count(*) FROM (SELECT k FROM b EXCEPT ALL SELECT k FROM a) y)");
    }
}
