package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * {@code pg_trickle.differential_max_change_ratio}: under AUTO, a refresh whose pending changes
 * (buffered rows) exceed this fraction of the sources' estimated rows runs FULL for that cycle and
 * says so in the history ({@code was_full_fallback}); a DIFFERENTIAL stream table never switches.
 */
class ChangeVolumeFallbackTest {

    private RefreshDatabase db;
    private Connection c;

    @BeforeEach
    void setUp() throws SQLException {
        db = new RefreshDatabase("refresh_volume");
        c = db.connect();
        exec("CREATE TABLE src (id int PRIMARY KEY, grp int, v int)",
                "INSERT INTO src SELECT i, i % 10, i FROM generate_series(1, 1000) i",
                "ANALYZE src",
                "SELECT pgtrickle.create_stream_table('auto_st', 'SELECT id, v FROM src WHERE grp < 5', 'calculated')",
                "SELECT pgtrickle.create_stream_table('diff_st', 'SELECT id, v FROM src WHERE grp < 5', 'calculated', 'DIFFERENTIAL')");
        db.plan("auto_st");
        db.plan("diff_st");
    }

    @AfterEach
    void tearDown() throws Exception {
        c.close();
        db.close();
    }

    @Test
    void autoRecomputesWhenTheChangeIsLargeAndSaysSo() throws SQLException {
        exec("SET pg_trickle.differential_max_change_ratio = 0.15");
        // 10 updates = 20 buffered rows: 2% of 1000
        exec("UPDATE src SET v = v + 1 WHERE id <= 10");
        assertEquals("DIFFERENTIAL|false", refresh("auto_st"));
        assertEquals("DIFFERENTIAL|false", refresh("diff_st"));

        // 100 updates = 200 buffered rows: 20%
        exec("UPDATE src SET v = v + 1 WHERE id <= 100");
        assertEquals("FULL|true", refresh("auto_st"));
        assertEquals("DIFFERENTIAL|false", refresh("diff_st"), "a DIFFERENTIAL stream table never switches");

        // the same change under a higher ratio stays differential; 0 turns the rule off
        exec("SET pg_trickle.differential_max_change_ratio = 0.5");
        exec("UPDATE src SET v = v + 1 WHERE id <= 100");
        assertEquals("DIFFERENTIAL|false", refresh("auto_st"));
        exec("SET pg_trickle.differential_max_change_ratio = 0");
        exec("UPDATE src SET v = v + 1 WHERE id <= 900");
        assertEquals("DIFFERENTIAL|false", refresh("auto_st"));
        // the default, 0.5, applies when the setting is absent: 200 buffered rows stay differential, 600 do not
        exec("RESET pg_trickle.differential_max_change_ratio", "ALTER DATABASE \"" + db.name() + "\" RESET pg_trickle.differential_max_change_ratio");
        exec("UPDATE src SET v = v + 1 WHERE id <= 100");
        try (Connection fresh = db.connect(); Statement s = fresh.createStatement()) {
            s.execute("SELECT pgtrickle.refresh_stream_table('auto_st')");
        }
        assertEquals("DIFFERENTIAL|false", last("auto_st"));
        exec("UPDATE src SET v = v + 1 WHERE id <= 300");
        try (Connection fresh = db.connect(); Statement s = fresh.createStatement()) {
            s.execute("SELECT pgtrickle.refresh_stream_table('auto_st')");
        }
        assertEquals("FULL|true", last("auto_st"));

        for (String st : new String[] {"auto_st", "diff_st"}) {
            exec("SELECT pgtrickle.refresh_stream_table('" + st + "')");
            assertEquals(0, db.queryLong("SELECT count(*) FROM ((TABLE " + st + " EXCEPT ALL SELECT id, v FROM src WHERE grp < 5)"
                    + " UNION ALL (SELECT id, v FROM src WHERE grp < 5 EXCEPT ALL TABLE " + st + ")) d"), st);
        }
    }

    private String refresh(String st) throws SQLException {
        exec("SELECT pgtrickle.refresh_stream_table('" + st + "')");
        return last(st);
    }

    private String last(String st) throws SQLException {
        return db.queryString("SELECT action || '|' || was_full_fallback FROM pgtrickle.pgt_refresh_history"
                + " WHERE pgt_id = ? ORDER BY refresh_id DESC LIMIT 1", db.pgtId(st));
    }

    private void exec(String... sql) throws SQLException {
        try (Statement s = c.createStatement()) {
            for (String q : sql) {
                s.execute(q);
            }
        }
    }
}
