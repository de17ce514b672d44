package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.testing.MigratedDatabaseTest;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * What a role without privileges on the catalog can do to it: nothing. It cannot call the catalog's
 * SECURITY DEFINER tools, store a refresh plan, record a failure, write a catalog table or read a
 * change buffer; and a stream table is computed with its owner's privileges, whoever refreshes it.
 */
class PrivilegesTest extends MigratedDatabaseTest {

    private static final String PASSWORD = "pgtrickle-test";
    private String mallory;
    private String alice;

    PrivilegesTest() {
        super("privileges");
    }

    @BeforeEach
    void roles() throws SQLException {
        mallory = "mallory_" + db.name();
        alice = "alice_" + db.name();
        for (String role : List.of(mallory, alice)) {
            exec("CREATE ROLE " + role + " LOGIN PASSWORD '" + PASSWORD + "'");
            exec("GRANT USAGE ON SCHEMA public, pgtrickle TO " + role);
        }
        exec("CREATE TABLE src (id int PRIMARY KEY, owner text, v int)");
        exec("INSERT INTO src VALUES (1, 'alice', 10), (2, 'bob', 20)");
        exec("SELECT pgtrickle.create_stream_table('copied', 'SELECT id, owner, v FROM src')");
    }

    @AfterEach
    void dropRoles() throws SQLException {
        // roles belong to the server, not to the test's database
        for (String role : List.of(mallory, alice)) {
            exec("DROP OWNED BY " + role);
            exec("DROP ROLE " + role);
        }
    }

    private void asMallory(String sql, String sqlState) throws SQLException {
        try (Connection m = java.sql.DriverManager.getConnection(db.url(), mallory, PASSWORD); Statement s = m.createStatement()) {
            SQLException e = assertThrows(SQLException.class, () -> s.execute(sql), sql);
            assertEquals(sqlState, e.getSQLState(), sql + " -> " + e.getMessage());
        }
    }

    @Test
    void anUnprivilegedRoleCanNeitherCallTheCatalogsToolsNorWriteItsTables() throws SQLException {
        List<String> definers = strings("SELECT p.oid::regprocedure::text FROM pg_proc p"
                + " WHERE p.pronamespace IN ('pgtrickle'::regnamespace, 'pgtrickle_changes'::regnamespace) AND p.prosecdef ORDER BY 1");
        assertTrue(definers.contains("pgtrickle.rebuild_change_capture(regclass,text)"), definers.toString());
        assertTrue(definers.stream().anyMatch(f -> f.startsWith("pgtrickle_changes.")), "the capture functions: " + definers);
        for (String f : definers) {
            assertEquals("f", string("SELECT has_function_privilege('" + mallory + "', '" + f + "', 'EXECUTE')"), f);
        }
        asMallory("SELECT pgtrickle.rebuild_change_capture('public.src')", "42501");
        asMallory("SELECT pgtrickle.set_refresh_plan((SELECT 1::bigint), 'q', 'SELECT 1', NULL)", "42501");
        asMallory("SELECT pgtrickle.record_refresh_failure(1, 'x', 3)", "42501");
        for (String table : strings("SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = 'pgtrickle'::regnamespace"
                + " AND c.relkind = 'r' ORDER BY 1")) {
            for (String privilege : List.of("INSERT", "UPDATE", "DELETE", "TRUNCATE")) {
                assertEquals("f", string("SELECT has_table_privilege('" + mallory + "', '" + table + "', '" + privilege + "')"),
                        privilege + " on " + table);
            }
        }
        asMallory("UPDATE pgtrickle.pgt_stream_tables SET defining_query = 'SELECT 1'", "42501");
        asMallory("SELECT * FROM " + string("SELECT pgtrickle.change_buffer('src')::text"), "42501");
        // the API stays open: a user may ask for what they are allowed to have
        assertTrue(string("SELECT has_function_privilege('" + mallory + "', 'pgtrickle.create_stream_table(text,text,text,text,boolean)',"
                + " 'EXECUTE')").equals("t"));
    }

    @Test
    void aStreamTableIsComputedWithItsOwnersPrivilegesWhoeverRefreshesIt() throws SQLException {
        exec("ALTER TABLE copied OWNER TO " + alice);
        exec("INSERT INTO src VALUES (3, 'alice', 30)");
        // the superuser refreshes it, but the query runs as alice, who may not read src
        assertFails("SELECT pgtrickle.refresh_stream_table('copied')", "permission denied for table src", "42501");
        exec("GRANT SELECT ON src TO " + alice);
        exec("SELECT pgtrickle.refresh_stream_table('copied')");
        assertEquals("3", string("SELECT count(*) FROM copied"));

        // row-level security on the source filters what alice's stream table holds
        exec("ALTER TABLE src ENABLE ROW LEVEL SECURITY");
        exec("CREATE POLICY own_rows ON src FOR SELECT TO " + alice + " USING (owner = 'alice')");
        exec("UPDATE src SET v = v + 1");
        exec("SELECT pgtrickle.refresh_stream_table('copied')");
        assertEquals(List.of("1", "3"), strings("SELECT id::text FROM copied ORDER BY id"));

        // the query's own code cannot leave the owner's privileges
        exec("CREATE FUNCTION escape_role() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RESET ROLE; RETURN 1; END $$");
        assertEquals("1", string("SELECT count(*) FROM pg_proc WHERE proname LIKE 'pgt\\_%\\_refresh'"), "alice's refresh function");
        exec("SELECT pgtrickle.drop_stream_table('copied')");
        assertEquals("0", string("SELECT count(*) FROM pg_proc WHERE proname LIKE 'pgt\\_%\\_refresh'"), "dropped with its stream table");
        exec("SELECT pgtrickle.create_stream_table('copied', 'SELECT id, escape_role() AS r FROM src', initialize => false)");
        exec("ALTER TABLE copied OWNER TO " + alice);
        SQLException e = assertThrows(SQLException.class, () -> exec("SELECT pgtrickle.refresh_stream_table('copied')"));
        assertTrue(e.getMessage().contains("security-definer"), e.getMessage());
        assertFalse(e.getMessage().isEmpty());
    }

    @Test
    void aRefreshFunctionMadeByAnotherVersionIsMadeAgain() throws SQLException {
        exec("ALTER TABLE copied OWNER TO " + alice);
        exec("GRANT SELECT ON src TO " + alice);
        exec("INSERT INTO src VALUES (3, 'alice', 30)");
        exec("SELECT pgtrickle.refresh_stream_table('copied')");
        String runner = "(SELECT p.oid FROM pg_proc p WHERE p.proname LIKE 'pgt\\_%\\_refresh')";
        String same = "SELECT r.prosrc = e.prosrc AND r.proconfig IS NOT DISTINCT FROM e.proconfig AND r.prosecdef"
                + " FROM pg_proc r, pg_proc e WHERE r.oid = " + runner
                + " AND e.oid = 'pgtrickle.execute_statement(text, pg_snapshot)'::regprocedure";
        assertEquals("t", string(same), "pgtrickle.execute_statement's body and settings, as alice");
        // as an engine before statements were prepared made it: every statement planned each time
        exec("DO $$ BEGIN EXECUTE format('CREATE OR REPLACE FUNCTION %s(statement text, frontier pg_snapshot) RETURNS text[]"
                + " LANGUAGE plpgsql SECURITY DEFINER AS %L', " + runner + "::regproc,"
                + " 'DECLARE result record; BEGIN EXECUTE statement INTO result USING frontier,"
                + " nullif(current_setting(''pgtrickle.live_buffers'', true), '''')::text[];"
                + " RETURN ARRAY(SELECT value FROM json_each_text(row_to_json(result))); END'); END $$");
        assertEquals("f", string(same));
        exec("UPDATE src SET v = v + 1");
        exec("SELECT pgtrickle.refresh_stream_table('copied')");
        assertEquals("t", string(same), "made again by the refresh");
        assertEquals(List.of("1|11", "2|21", "3|31"), strings("SELECT id || '|' || v FROM copied ORDER BY id"));
    }
}
