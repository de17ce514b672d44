package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.testing.MigratedDatabaseTest;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** Change capture (catalog 0.33.0, 0.33.0.1): buffers, capture triggers on every member, replication roles, collations, and the snapshot frontier. */
class ChangeCaptureTest extends MigratedDatabaseTest {

    ChangeCaptureTest() {
        super("capture");
    }

    @BeforeEach
    void migratedDatabase() throws SQLException {
        exec("CREATE TABLE public.orders (id int PRIMARY KEY, customer text, amount numeric, total numeric GENERATED ALWAYS AS (amount * 2) STORED)");
    }


    @Test
    void everyKindOfWriteIsCapturedWithTheWritersTransactionId() throws SQLException {
        long consumer = consumer("st_a");
        assertEquals("pgtrickle_changes.changes_" + stableName("public.orders"), string("SELECT pgtrickle.ensure_change_capture('public.orders', " + consumer + ")::text"));

        c.setAutoCommit(false);
        exec("INSERT INTO public.orders (id, customer, amount) VALUES (1, 'ann', 10), (2, 'bob', 20)");
        exec("UPDATE public.orders SET amount = 11 WHERE id = 1");
        exec("DELETE FROM public.orders WHERE id = 2");
        String writer = string("SELECT pg_current_xact_id()::text");
        c.commit();
        exec("TRUNCATE public.orders");
        c.commit();
        c.setAutoCommit(true);

        assertEquals(List.of(
                        "I|1|ann|10|" + writer, "I|2|bob|20|" + writer,
                        "D|1|ann|10|" + writer, "I|1|ann|11|" + writer,
                        "D|2|bob|20|" + writer,
                        "T"),
                strings("SELECT concat_ws('|', action, id, customer, amount, CASE WHEN action <> 'T' THEN xid::text END)"
                        + " FROM " + buffer() + " ORDER BY ctid"));
        // generated columns are recomputed by the query, not captured
        assertEquals(List.of(), strings("SELECT attname FROM pg_attribute WHERE attrelid = '" + buffer() + "'::regclass AND attname = 'total'"));
    }

    @Test
    void rolledBackWritesLeaveNothing() throws SQLException {
        call("ensure_change_capture", consumer("st_a"));
        c.setAutoCommit(false);
        exec("INSERT INTO public.orders (id, customer, amount) VALUES (1, 'ann', 10)");
        c.rollback();
        exec("SAVEPOINT s");
        exec("INSERT INTO public.orders (id, customer, amount) VALUES (2, 'bob', 20)");
        exec("ROLLBACK TO SAVEPOINT s");
        exec("INSERT INTO public.orders (id, customer, amount) VALUES (3, 'cy', 30)");
        c.commit();
        c.setAutoCommit(true);
        assertEquals(List.of("I|3"), strings("SELECT action::text || '|' || id FROM " + buffer()));
    }

    @Test
    void theBufferHoldsTheWritersXidTheActionAndTheSourceColumnsOnly() throws SQLException {
        call("ensure_change_capture", consumer("st_a"));
        assertEquals("xid xid8,action \"char\",id integer,customer text,amount numeric",
                string("SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ',' ORDER BY attnum) FROM pg_attribute"
                        + " WHERE attrelid = '" + buffer() + "'::regclass AND attnum > 0 AND NOT attisdropped"));
        // one access path, for the frontier's xmin: the xid index; and one to the TRUNCATE markers alone
        assertEquals(List.of("(xid)", "(xid) WHERE (action = 'T'::\"char\")"),
                strings("SELECT regexp_replace(pg_get_indexdef(indexrelid), '.*USING btree ', '') FROM pg_index"
                        + " WHERE indrelid = '" + buffer() + "'::regclass ORDER BY 1"));
    }

    @Test
    void writersNeedNoPrivilegeOnTheBuffers() throws SQLException {
        call("ensure_change_capture", consumer("st_a"));
        exec("CREATE ROLE capture_writer");
        exec("GRANT INSERT, UPDATE, DELETE ON public.orders TO capture_writer");
        exec("SET ROLE capture_writer");
        try {
            assertEquals("f", string("SELECT has_schema_privilege('pgtrickle_changes', 'USAGE')"));
            exec("INSERT INTO public.orders (id, customer, amount) VALUES (1, 'ann', 10), (2, 'bob', 20)");
            exec("UPDATE public.orders SET amount = 30");
            exec("DELETE FROM public.orders");
            SQLException denied = assertThrows(SQLException.class, () -> strings("SELECT count(*) FROM " + buffer()));
            assertEquals("42501", denied.getSQLState());
            SQLException forged = assertThrows(SQLException.class, () -> exec("INSERT INTO " + buffer() + " (action) VALUES ('T')"));
            assertEquals("42501", forged.getSQLState());
        } finally {
            exec("RESET ROLE");
        }
        assertEquals(List.of("I|1|10", "I|2|20", "D|1|10", "D|2|20", "I|1|30", "I|2|30", "D|1|30", "D|2|30"),
                strings("SELECT concat_ws('|', action, id, amount) FROM " + buffer() + " ORDER BY ctid"));
    }

    @Test
    void theWritersSearchPathCannotRedirectTheCapture() throws SQLException {
        call("ensure_change_capture", consumer("st_a"));
        String bufferName = string("SELECT relname FROM pg_class WHERE oid = '" + buffer() + "'::regclass");
        // a writer's own objects named like the buffer and the transition tables, first on its search_path
        exec("CREATE SCHEMA decoy");
        exec("CREATE TABLE decoy." + bufferName + " (LIKE " + buffer() + ")");
        exec("CREATE TABLE decoy.pgt_new (id int, customer text, amount numeric)");
        exec("INSERT INTO decoy.pgt_new VALUES (99, 'decoy', 0)");
        exec("CREATE TEMP TABLE pgt_old (id int, customer text, amount numeric)");
        exec("INSERT INTO pgt_old VALUES (98, 'decoy', 0)");
        exec("SET search_path = pg_temp, decoy, pg_catalog, public");
        try {
            exec("INSERT INTO public.orders (id, customer, amount) VALUES (1, 'ann', 10)");
            exec("UPDATE public.orders SET amount = 11 WHERE id = 1");
            exec("DELETE FROM public.orders WHERE id = 1");
        } finally {
            exec("RESET search_path");
        }
        assertEquals(List.of("I|1|ann|10", "D|1|ann|10", "I|1|ann|11", "D|1|ann|11"),
                strings("SELECT concat_ws('|', action, id, customer, amount) FROM " + buffer() + " ORDER BY ctid"));
        assertEquals(List.of("0"), strings("SELECT count(*) FROM decoy." + bufferName));
        // all seven capture functions (four statement, three row level) run as their owner
        assertEquals(List.of("7"), strings("SELECT count(*) FROM pg_proc WHERE pronamespace = 'pgtrickle_changes'::regnamespace AND prosecdef"));
    }

    @Test
    void everyWriteIsCapturedOnceInEveryReplicationRole() throws SQLException {
        call("ensure_change_capture", consumer("st_a"));
        // replica: what logical replication apply and restore tools run under; the apply worker
        // fires row triggers only, so the row triggers are the ones for that role
        for (String role : List.of("replica", "local", "origin")) {
            exec("SET session_replication_role = " + role);
            try {
                exec("INSERT INTO public.orders (id, customer, amount) VALUES (1, 'ann', 10)");
                exec("UPDATE public.orders SET amount = 11 WHERE id = 1");
                exec("DELETE FROM public.orders WHERE id = 1");
                exec("TRUNCATE public.orders");
            } finally {
                exec("RESET session_replication_role");
            }
            assertEquals(List.of("I|10", "D|10", "I|11", "D|11", "T|"),
                    strings("SELECT action::text || '|' || coalesce(amount::text, '') FROM " + buffer() + " ORDER BY ctid"), role);
            exec("DELETE FROM " + buffer());
        }
        assertEquals(List.of("pgt_capture_del|O", "pgt_capture_del_row|R", "pgt_capture_ins|O", "pgt_capture_ins_row|R",
                        "pgt_capture_trunc|A", "pgt_capture_upd|O", "pgt_capture_upd_row|R"),
                strings("SELECT tgname || '|' || tgenabled::text FROM pg_trigger WHERE tgrelid = 'public.orders'::regclass AND NOT tgisinternal ORDER BY tgname"));
    }

    @Test
    void bufferColumnsKeepTheSourceColumnsCollationAndTypeModifiers() throws SQLException {
        exec("CREATE TABLE public.named (id int, name text COLLATE \"C\", code varchar(5) COLLATE \"POSIX\", price numeric(10, 2), tags text[] COLLATE \"C\")");
        call("ensure_change_capture", "public.named", consumer("st_a"));
        String columns = "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || ' ' || coalesce(attcollation::regcollation::text, '-'), ', ' ORDER BY attnum)"
                + " FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped AND attname NOT IN ('xid', 'action')";
        assertEquals(string(String.format(columns, "'public.named'::regclass")),
                string(String.format(columns, "pgtrickle.change_buffer('public.named')")));
        assertEquals("id integer -, name text \"C\", code character varying(5) \"POSIX\", price numeric(10,2) -, tags text[] \"C\"",
                string(String.format(columns, "pgtrickle.change_buffer('public.named')")));
    }

    @Test
    void writesToAPartitionedSourceAndToEachPartitionLandInItsBufferOnce() throws SQLException {
        exec("CREATE TABLE public.parted (id int, customer text, amount numeric) PARTITION BY RANGE (id)");
        exec("CREATE TABLE public.parted_low PARTITION OF public.parted FOR VALUES FROM (0) TO (10) PARTITION BY RANGE (id)");
        exec("CREATE TABLE public.parted_low_a PARTITION OF public.parted_low FOR VALUES FROM (0) TO (5)");
        exec("CREATE TABLE public.parted_low_b PARTITION OF public.parted_low FOR VALUES FROM (5) TO (10)");
        exec("CREATE TABLE public.parted_high (amount numeric, id int, customer text)");
        exec("ALTER TABLE public.parted ATTACH PARTITION public.parted_high FOR VALUES FROM (10) TO (20)");
        call("ensure_change_capture", "public.parted", consumer("st_a"));
        String buffer = string("SELECT pgtrickle.change_buffer('public.parted')::text");

        exec("INSERT INTO public.parted VALUES (1, 'via parent', 1), (11, 'via parent', 2)");
        exec("INSERT INTO public.parted_high (id, customer, amount) VALUES (12, 'direct', 3)");
        exec("INSERT INTO public.parted_low VALUES (6, 'via sub-parent', 4)");
        exec("INSERT INTO public.parted_low_a VALUES (2, 'direct', 5)");
        exec("UPDATE public.parted_low_b SET amount = 40");
        exec("UPDATE public.parted SET id = 15 WHERE id = 1");
        exec("DELETE FROM public.parted_high WHERE id = 12");
        exec("CREATE TABLE public.parted_late PARTITION OF public.parted FOR VALUES FROM (20) TO (30)");
        exec("INSERT INTO public.parted_late VALUES (21, 'later', 6)");
        exec("TRUNCATE public.parted_low_a");
        assertEquals(List.of("I|1|via parent|1", "I|11|via parent|2", "I|12|direct|3", "I|6|via sub-parent|4", "I|2|direct|5",
                        "D|6|via sub-parent|4", "I|6|via sub-parent|40", "D|1|via parent|1", "I|15|via parent|1", "D|12|direct|3",
                        "I|21|later|6", "T|||"),
                strings("SELECT concat_ws('|', action, id, customer, amount) || CASE WHEN action = 'T' THEN '|||' ELSE '' END FROM " + buffer + " ORDER BY ctid"));
    }

    @Test
    void aCreatorWithOnlyTheTriggerPrivilegeGetsTheWholeCapture() throws SQLException {
        // the replica and always states are ALTER TABLE, an owner's right; enable_capture_trigger
        // sets them for capture triggers only, so capture still asks no more than TRIGGER of a creator
        exec("CREATE TABLE public.shared_orders (id int, v int)");
        exec("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'capture_creator') THEN CREATE ROLE capture_creator; END IF; END $$");
        exec("GRANT SELECT, TRIGGER ON public.shared_orders TO capture_creator");
        exec("GRANT USAGE, CREATE ON SCHEMA public TO capture_creator");
        exec("GRANT USAGE ON SCHEMA pgtrickle TO capture_creator");
        exec("GRANT USAGE, CREATE ON SCHEMA pgtrickle_changes TO capture_creator");
        exec("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA pgtrickle TO capture_creator");
        exec("GRANT USAGE ON ALL SEQUENCES IN SCHEMA pgtrickle TO capture_creator");
        // closed to PUBLIC like every SECURITY DEFINER function of the catalog: granted to creators
        exec("GRANT EXECUTE ON FUNCTION pgtrickle.enable_capture_trigger(regclass, text) TO capture_creator");
        exec("SET ROLE capture_creator");
        try {
            exec("SELECT pgtrickle.create_stream_table('shared_rows', 'SELECT id, v FROM public.shared_orders', 'calculated')");
        } finally {
            exec("RESET ROLE");
        }
        assertEquals(List.of("pgt_capture_del|O", "pgt_capture_del_row|R", "pgt_capture_ins|O", "pgt_capture_ins_row|R",
                        "pgt_capture_trunc|A", "pgt_capture_upd|O", "pgt_capture_upd_row|R"),
                strings("SELECT tgname || '|' || tgenabled::text FROM pg_trigger WHERE tgrelid = 'public.shared_orders'::regclass AND NOT tgisinternal ORDER BY tgname"));
        // and it sets the state the catalog wants, nothing else: not for other triggers, not on request
        exec("CREATE TRIGGER own_trigger AFTER INSERT ON public.shared_orders FOR EACH STATEMENT EXECUTE FUNCTION suppress_redundant_updates_trigger()");
        exec("SELECT pgtrickle.enable_capture_trigger('public.shared_orders', 'own_trigger')");
        exec("ALTER TABLE public.shared_orders DISABLE TRIGGER pgt_capture_ins_row");
        exec("SELECT pgtrickle.enable_capture_trigger('public.shared_orders', 'pgt_capture_ins_row')");
        assertEquals(List.of("own_trigger|O", "pgt_capture_ins_row|R"),
                strings("SELECT tgname || '|' || tgenabled::text FROM pg_trigger WHERE tgrelid = 'public.shared_orders'::regclass"
                        + " AND tgname IN ('own_trigger', 'pgt_capture_ins_row') ORDER BY tgname"));
    }

    @Test
    void aForeignTableCannotJoinACapturedSource() throws SQLException {
        // triggers do not see writes made to a foreign table's server: refused, never silently stale
        exec("CREATE FOREIGN DATA WRAPPER pgt_test_fdw");
        exec("CREATE SERVER pgt_test_server FOREIGN DATA WRAPPER pgt_test_fdw");
        exec("CREATE TABLE public.sharded (id int, v int) PARTITION BY RANGE (id)");
        exec("CREATE TABLE public.sharded_local PARTITION OF public.sharded FOR VALUES FROM (0) TO (10)");
        exec("SELECT pgtrickle.create_stream_table('sharded_rows', 'SELECT id, v FROM public.sharded', 'calculated')");
        assertFails("CREATE FOREIGN TABLE public.sharded_remote PARTITION OF public.sharded FOR VALUES FROM (10) TO (20) SERVER pgt_test_server",
                "cannot capture changes of public.sharded: its partitions or children public.sharded_remote are not tables", "42809");
        exec("CREATE FOREIGN TABLE public.other_remote (id int, v int) SERVER pgt_test_server");
        assertFails("ALTER TABLE public.sharded ATTACH PARTITION public.other_remote FOR VALUES FROM (10) TO (20)",
                "its partitions or children public.other_remote are not tables", "42809");
        exec("CREATE TABLE public.mixed (id int, v int) PARTITION BY RANGE (id)");
        exec("ALTER TABLE public.mixed ATTACH PARTITION public.other_remote FOR VALUES FROM (0) TO (10)");
        assertFails("SELECT pgtrickle.create_stream_table('mixed_rows', 'SELECT id, v FROM public.mixed', 'calculated')",
                "its partitions or children public.other_remote are not tables", "42809");
    }

    @Test
    void aQueryThatReadsATableWithOnlyIsRecomputed() throws SQLException {
        exec("CREATE TABLE public.invoices (id int, amount numeric)");
        exec("CREATE TABLE public.old_invoices () INHERITS (public.invoices)");
        exec("SELECT pgtrickle.create_stream_table('own_invoices', 'SELECT id, amount FROM ONLY public.invoices', 'calculated')");
        exec("SELECT pgtrickle.create_stream_table('all_invoices', 'SELECT id, amount FROM public.invoices', 'calculated')");
        assertEquals(List.of("own_invoices|ONLY TABLE|FULL", "all_invoices|TABLE|DIFFERENTIAL"),
                strings("SELECT s.pgt_name || '|' || d.source_type || '|' || s.refresh_mode FROM pgtrickle.pgt_stream_tables s"
                        + " JOIN pgtrickle.pgt_dependencies d USING (pgt_id) ORDER BY s.pgt_id"));
        assertEquals("the query reads relations whose changes are not captured (only table invoices)",
                string("SELECT downgrade_reason FROM pgtrickle.explain_refresh_mode('own_invoices')"));
        assertFails("SELECT pgtrickle.create_stream_table('own_invoices_d', 'SELECT id FROM ONLY public.invoices', 'calculated', 'DIFFERENTIAL')",
                "not captured (only table invoices)", "0A000");
    }

    @Test
    void aProbeOverManyOldRowsUsesTheXidIndex() throws SQLException {
        long consumer = consumer("st_a");
        call("ensure_change_capture", consumer);
        exec("INSERT INTO public.orders (id, customer, amount) SELECT g, 'old', g FROM generate_series(1, 20000) g");
        exec("ANALYZE " + buffer());
        String frontier = string("SELECT pg_current_snapshot()::text");
        exec("INSERT INTO public.orders (id, customer, amount) VALUES (20001, 'new', 1)");
        String plan = String.join("\n", strings("EXPLAIN SELECT count(*) FROM " + buffer()
                + " WHERE xid >= pg_snapshot_xmin('" + frontier + "') AND NOT pg_visible_in_snapshot(xid, '" + frontier + "')"));
        assertTrue(plan.contains("Index") && !plan.contains("Seq Scan"), plan);
        assertEquals("1", pending(frontier));
    }

    @Test
    void oneBufferIsSharedAndDroppedWithItsLastConsumer() throws SQLException {
        long a = consumer("st_a");
        long b = consumer("st_b");
        String bufferA = string("SELECT pgtrickle.ensure_change_capture('public.orders', " + a + ")::text");
        String bufferB = string("SELECT pgtrickle.ensure_change_capture('public.orders', " + b + ")::text");
        call("ensure_change_capture", a); // idempotent
        assertEquals(bufferA, bufferB);
        assertEquals(List.of("{" + a + "," + b + "}"), strings("SELECT tracked_by_pgt_ids::text FROM pgtrickle.pgt_change_tracking"));
        assertEquals(List.of("7"), strings("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.orders'::regclass"));

        call("release_change_capture", a);
        assertEquals(bufferA, string("SELECT pgtrickle.change_buffer('public.orders')::text"));
        call("release_change_capture", a); // not held any more: no-op
        call("release_change_capture", b);
        assertEquals(null, string("SELECT pgtrickle.change_buffer('public.orders')::text"));
        assertEquals(List.of("0"), strings("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.orders'::regclass"));
        assertEquals(List.of(), strings("SELECT proname FROM pg_proc WHERE pronamespace = 'pgtrickle_changes'::regnamespace"));
        assertEquals(List.of(), strings("SELECT * FROM pgtrickle.pgt_change_tracking"));
        // the source works without capture
        exec("INSERT INTO public.orders (id, customer, amount) VALUES (9, 'zed', 1)");
    }

    @Test
    void aWriterThatCommitsLateIsConsumedByTheFirstRefreshThatSeesIt() throws SQLException {
        long consumer = consumer("st_a");
        call("ensure_change_capture", consumer);
        String frontier0 = string("SELECT pg_current_snapshot()::text");
        String frontier2;

        try (Connection late = db.connect(); Connection quick = db.connect()) {
            late.setAutoCommit(false);
            try (Statement s = late.createStatement()) {
                s.execute("INSERT INTO public.orders (id, customer, amount) VALUES (1, 'late', 10)");
            }
            try (Statement s = quick.createStatement()) {
                s.execute("INSERT INTO public.orders (id, customer, amount) VALUES (2, 'quick', 20)");
            }
            // refresh 1 runs while the late writer is still open
            String frontier1 = string("SELECT pg_current_snapshot()::text");
            assertEquals(List.of("quick"), consumed(frontier0, frontier1));
            assertEquals("1", pending(frontier0));

            // more refreshes pass while it stays open: it is never consumed early
            frontier2 = string("SELECT pg_current_snapshot()::text");
            assertEquals(List.of(), consumed(frontier1, frontier2));
            assertEquals("0", pending(frontier2));

            late.commit();
        }
        // ...and never skipped: its xid was in progress in every earlier frontier
        assertEquals("1", pending(frontier2));
        String frontier3 = string("SELECT pg_current_snapshot()::text");
        assertEquals(List.of("late"), consumed(frontier2, frontier3));
        assertEquals("0", pending(frontier3));
    }

    @Test
    void pruningKeepsWhatAnyConsumerStillNeeds() throws SQLException {
        long a = consumer("st_a");
        long b = consumer("st_b");
        call("ensure_change_capture", a);
        call("ensure_change_capture", b);
        exec("INSERT INTO public.orders (id, customer, amount) VALUES (1, 'one', 1)");
        setFrontier(a);
        exec("INSERT INTO public.orders (id, customer, amount) VALUES (2, 'two', 2)");
        // a has passed row 1; b has never refreshed (its first refresh is a full one), so row 1 goes
        assertEquals("1", string("SELECT pgtrickle.prune_change_buffer('public.orders')"));
        assertEquals(List.of("2"), strings("SELECT id::text FROM " + buffer()));
        // b has passed row 2, but a still needs it
        setFrontier(b);
        assertEquals("0", string("SELECT pgtrickle.prune_change_buffer('public.orders')"));
        assertEquals(List.of("2"), strings("SELECT id::text FROM " + buffer()));
        setFrontier(a);
        assertEquals("1", string("SELECT pgtrickle.prune_change_buffer('public.orders')"));
        assertEquals(List.of(), strings("SELECT id FROM " + buffer()));
    }

    @Test
    void underTheEngineABufferPassedInFullIsTruncatedAfterTheCommitNotDeletedFrom() throws SQLException {
        long a = consumer("st_a");
        call("ensure_change_capture", a);
        exec("INSERT INTO public.orders (id, customer, amount) VALUES (1, 'one', 1)");
        setFrontier(a);
        exec("SET pgtrickle.truncate_after_commit = on");
        // however small the buffer (see theEngineLetsGoOfABufferOnlyOnceItReachesPruneKb)
        exec("SET pg_trickle.change_buffer_prune_kb = 0");
        assertEquals("0", string("SELECT pgtrickle.prune_change_buffer('public.orders')"));
        assertEquals(List.of("1"), strings("SELECT id::text FROM " + buffer()));
        assertEquals("{" + string("SELECT 'public.orders'::regclass::oid") + "}", string("SELECT current_setting('pgtrickle.consumed_buffers')"));
        assertEquals("1", string("SELECT pgtrickle.truncate_consumed_change_buffers()"));
        assertEquals("0", string("SELECT pg_relation_size('" + buffer() + "')"));
        assertEquals("", string("SELECT current_setting('pgtrickle.consumed_buffers')"));
        // noted once: nothing left to do
        assertEquals("0", string("SELECT pgtrickle.truncate_consumed_change_buffers()"));
        // an empty file is never noted: truncating it would only cost
        assertEquals("0", string("SELECT pgtrickle.prune_change_buffer('public.orders')"));
        assertEquals("", string("SELECT current_setting('pgtrickle.consumed_buffers')"));
    }

    /**
     * Under the engine, rows every reader has passed stay in a buffer smaller than
     * pg_trickle.change_buffer_prune_kb (default 1024): a TRUNCATE costs about a millisecond
     * whatever the buffer holds, readers find their window by the xid index, and the next writer
     * after a TRUNCATE pays for the new file. From that size on the buffer is let go of as before.
     */
    @Test
    void theEngineLetsGoOfABufferOnlyOnceItReachesPruneKb() throws SQLException {
        long a = consumer("st_a");
        call("ensure_change_capture", a);
        exec("SET pgtrickle.truncate_after_commit = on");
        exec("INSERT INTO public.orders (id, customer, amount) VALUES (1, 'one', 1)");
        setFrontier(a);
        // one page, under the default: kept, passed rows and all, and nothing noted
        assertEquals("0", string("SELECT pgtrickle.prune_change_buffer('public.orders')"));
        assertEquals(List.of("1"), strings("SELECT id::text FROM " + buffer()));
        assertEquals("", string("SELECT coalesce(current_setting('pgtrickle.consumed_buffers', true), '')"));
        assertEquals("0", string("SELECT pgtrickle.truncate_consumed_change_buffers()"));
        assertEquals(List.of("1"), strings("SELECT id::text FROM " + buffer()));
        // a passed row is not pending: the reader's window leaves it out
        assertEquals("0", string("SELECT pgtrickle.pending_change_count('public.orders', (SELECT frontier ->> 'snapshot' FROM pgtrickle.pgt_stream_tables WHERE pgt_id = " + a + ")::pg_snapshot)"));

        // 8 kB is one page: the buffer has reached it
        exec("SET pg_trickle.change_buffer_prune_kb = 8");
        assertEquals("0", string("SELECT pgtrickle.prune_change_buffer('public.orders')"));
        assertEquals("1", string("SELECT pgtrickle.truncate_consumed_change_buffers()"));
        assertEquals("0", string("SELECT pg_relation_size('" + buffer() + "')"));

        // a buffer at the size with rows a reader still needs: the passed ones are deleted, as before
        exec("SET pg_trickle.change_buffer_prune_kb = 8");
        exec("INSERT INTO public.orders (id, customer, amount) VALUES (2, 'two', 2)");
        setFrontier(a);
        exec("INSERT INTO public.orders (id, customer, amount) VALUES (3, 'three', 3)");
        assertEquals("1", string("SELECT pgtrickle.prune_change_buffer('public.orders')"));
        assertEquals(List.of("3"), strings("SELECT id::text FROM " + buffer()));

        // an invalid value is the default, with a warning
        exec("SET pg_trickle.change_buffer_prune_kb = 'lots'");
        exec("INSERT INTO public.orders (id, customer, amount) VALUES (4, 'four', 4)");
        setFrontier(a);
        assertEquals("0", string("SELECT pgtrickle.prune_change_buffer('public.orders')"));
        assertEquals(List.of("3", "4"), strings("SELECT id::text FROM " + buffer() + " ORDER BY id"));
    }

    @Test
    void aBufferPassedInFullIsTruncatedOnlyWhenNoWriterHoldsItAndNothingNewerCommitted() throws SQLException {
        long a = consumer("st_a");
        call("ensure_change_capture", a);
        exec("SET pgtrickle.truncate_after_commit = on");
        exec("SET pg_trickle.change_buffer_prune_kb = 0");
        exec("INSERT INTO public.orders (id, customer, amount) VALUES (1, 'one', 1)");
        exec("INSERT INTO public.orders (id, customer, amount) VALUES (2, 'two', 2)");
        setFrontier(a);
        assertEquals("0", string("SELECT pgtrickle.prune_change_buffer('public.orders')"));
        try (Connection writer = db.connect()) {
            writer.setAutoCommit(false);
            try (Statement s = writer.createStatement()) {
                s.execute("INSERT INTO public.orders (id, customer, amount) VALUES (3, 'three', 3)");
            }
            // a writer still open holds the buffer: it is not waited for, and what every consumer
            // has passed goes the way a pruning's DELETE takes it
            assertEquals("0", string("SELECT pgtrickle.truncate_consumed_change_buffers()"));
            assertEquals(List.of(), strings("SELECT id::text FROM " + buffer() + " ORDER BY id"));
            writer.commit();
        }
        assertEquals(List.of("3"), strings("SELECT id::text FROM " + buffer() + " ORDER BY id"));

        // row 3 is newer than the frontier: nothing noted
        assertEquals("0", string("SELECT pgtrickle.prune_change_buffer('public.orders')"));
        assertEquals("", string("SELECT current_setting('pgtrickle.consumed_buffers')"));
        // noted while row 4 was not yet committed: the look after the lock sees it, so no TRUNCATE,
        // only the DELETE of row 3, which every consumer has passed
        setFrontier(a);
        exec("SELECT pgtrickle.prune_change_buffer('public.orders')");
        assertTrue(string("SELECT current_setting('pgtrickle.consumed_buffers')").contains(string("SELECT 'public.orders'::regclass::oid::text")));
        exec("INSERT INTO public.orders (id, customer, amount) VALUES (4, 'four', 4)");
        assertEquals("0", string("SELECT pgtrickle.truncate_consumed_change_buffers()"));
        assertEquals(List.of("4"), strings("SELECT id::text FROM " + buffer() + " ORDER BY id"));

        // an older snapshot than the statement's could miss such a row
        setFrontier(a);
        exec("SELECT pgtrickle.prune_change_buffer('public.orders')");
        c.setAutoCommit(false);
        exec("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ");
        SQLException repeatable = assertThrows(SQLException.class, () -> string("SELECT pgtrickle.truncate_consumed_change_buffers()"));
        assertTrue(repeatable.getMessage().contains("READ COMMITTED"), repeatable.getMessage());
        c.rollback();
        c.setAutoCommit(true);
        assertEquals("1", string("SELECT pgtrickle.truncate_consumed_change_buffers()"));
        assertEquals(List.of(), strings("SELECT id FROM " + buffer()));
    }

    @Test
    void badInputIsRefusedWithAClearError() throws SQLException {
        long consumer = consumer("st_a");
        exec("CREATE VIEW public.order_view AS SELECT * FROM public.orders");
        SQLException notATable = assertThrows(SQLException.class, () -> call("ensure_change_capture", "public.order_view", consumer));
        assertTrue(notATable.getMessage().contains("order_view") && notATable.getMessage().contains("not a table"), notATable.getMessage());
        SQLException noConsumer = assertThrows(SQLException.class, () -> call("ensure_change_capture", "public.orders", 424242));
        assertTrue(noConsumer.getMessage().contains("424242"), noConsumer.getMessage());
        SQLException uncaptured = assertThrows(SQLException.class, () -> string("SELECT pgtrickle.pending_change_count('public.orders', NULL)"));
        assertTrue(uncaptured.getMessage().contains("not captured"), uncaptured.getMessage());
        SQLException uncapturedProbe = assertThrows(SQLException.class, () -> string("SELECT pgtrickle.has_pending_changes('public.orders', NULL)"));
        assertTrue(uncapturedProbe.getMessage().contains("not captured"), uncapturedProbe.getMessage());
        assertEquals(List.of(), strings("SELECT relname FROM pg_class WHERE relnamespace = 'pgtrickle_changes'::regnamespace"));
    }

    private List<String> consumed(String since, String upTo) throws SQLException {
        return strings("SELECT customer FROM " + buffer() + " WHERE pg_visible_in_snapshot(xid, '" + upTo + "')"
                + " AND NOT pg_visible_in_snapshot(xid, '" + since + "') ORDER BY ctid");
    }

    /** The count of pending rows; the scheduler's probe, has_pending_changes, must agree on whether there are any. */
    private String pending(String since) throws SQLException {
        String count = string("SELECT pgtrickle.pending_change_count('public.orders', '" + since + "')");
        assertEquals(Long.parseLong(count) > 0 ? "t" : "f", string("SELECT pgtrickle.has_pending_changes('public.orders', '" + since + "')"),
                "has_pending_changes agrees with the count " + count);
        return count;
    }

    private void setFrontier(long consumer) throws SQLException {
        exec("UPDATE pgtrickle.pgt_stream_tables SET frontier = jsonb_build_object('snapshot', pg_current_snapshot()::text) WHERE pgt_id = " + consumer);
    }

    private String buffer() throws SQLException {
        return string("SELECT pgtrickle.change_buffer('public.orders')::text");
    }

    private String stableName(String table) throws SQLException {
        return string("SELECT pgtrickle.source_stable_name('" + table + "')");
    }

    private long consumer(String name) throws SQLException {
        exec("CREATE TABLE public." + name + " (x int)");
        return Long.parseLong(string("INSERT INTO pgtrickle.pgt_stream_tables (pgt_relid, pgt_name, pgt_schema, defining_query)"
                + " VALUES ('public." + name + "'::regclass, '" + name + "', 'public', 'SELECT 1') RETURNING pgt_id"));
    }

    private void call(String function, long consumer) throws SQLException {
        call(function, "public.orders", consumer);
    }

    private void call(String function, String source, long consumer) throws SQLException {
        try (PreparedStatement p = c.prepareStatement("SELECT pgtrickle." + function + "(?::regclass, ?)")) {
            p.setString(1, source);
            p.setLong(2, consumer);
            p.execute();
        }
    }
}
