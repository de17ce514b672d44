package io.pgtrickle.notify;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.testing.MigratedDatabaseTest;
import java.sql.SQLException;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The sinks' durable outbox through its SQL functions: queueing, claiming in order, failing, dead letters, replay. */
class OutboxTest extends MigratedDatabaseTest {

    OutboxTest() {
        super("outbox");
    }

    @BeforeEach
    void twoStreamTablesWithSubscriptions() throws SQLException {
        exec("CREATE TABLE orders (id int PRIMARY KEY, customer text, amount numeric)");
        exec("SELECT pgtrickle.create_stream_table('totals', 'SELECT customer, sum(amount) AS total FROM orders GROUP BY customer', 'calculated')");
        exec("SELECT pgtrickle.create_stream_table('big', 'SELECT id FROM orders WHERE amount > 5', 'calculated')");
        exec("SELECT pgtrickle.subscribe('totals', 'orders_changed')");
        exec("SELECT pgtrickle.subscribe('big', 'big_changed')");
        exec("SET pg_trickle.notify_coalesce_ms = 0");
    }

    @Test
    void notificationsAreQueuedPerSinkAndClaimedInRefreshOrder() throws SQLException {
        exec("SELECT pgtrickle.register_sink('webhook:a', ARRAY['orders_changed'])");
        exec("SELECT pgtrickle.register_sink('log:log', ARRAY['*'])");
        exec("SELECT pgtrickle.register_sink('log:log', ARRAY['*', 'Big_Changed'])"); // re-registration updates channels
        for (int i = 1; i <= 3; i++) {
            exec("INSERT INTO orders VALUES (" + i + ", 'c" + i + "', " + (i * 4) + ")");
            exec("SELECT pgtrickle.refresh_stream_table('totals')");
            exec("SELECT pgtrickle.refresh_stream_table('big')");
        }
        // totals changed 3 times (both sinks), big twice (amount 8 and 12; only the log sink)
        assertEquals(List.of("log:log|5", "webhook:a|3"), strings("SELECT sink_id || '|' || queued FROM pgtrickle.list_sinks()"));
        assertEquals("{*,big_changed}", string("SELECT channels::text FROM pgtrickle.pgt_sinks WHERE sink_id = 'log:log'"));

        // only the oldest per stream table is claimable: two rows (one per stream table), then none until completed
        List<String> first = strings("SELECT stream_table || '|' || refresh_id || '|' || attempts FROM pgtrickle.claim_notifications('log:log', 10, 60000)");
        assertEquals(2, first.size(), first.toString());
        assertEquals(List.of(), strings("SELECT outbox_id FROM pgtrickle.claim_notifications('log:log', 10, 60000)"), "leased");
        long head = Long.parseLong(string("SELECT min(outbox_id) FROM pgtrickle.pgt_outbox WHERE sink_id = 'log:log' AND stream_table = 'public.totals'"));
        exec("SELECT pgtrickle.complete_notifications(array_agg(outbox_id), array_agg(claim_token)) FROM pgtrickle.pgt_outbox WHERE outbox_id = " + head);
        List<String> next = strings("SELECT stream_table || '|' || refresh_id FROM pgtrickle.claim_notifications('log:log', 10, 60000)");
        assertEquals(1, next.size(), "the next of totals, nothing of big (its head is still leased): " + next);
        assertTrue(next.get(0).startsWith("public.totals|"));
    }

    @Test
    void onlyTheCurrentClaimHolderCompletesOrFails() throws SQLException {
        exec("SELECT pgtrickle.register_sink('webhook:a', ARRAY['orders_changed'])");
        exec("INSERT INTO orders VALUES (1, 'ann', 1)");
        exec("SELECT pgtrickle.refresh_stream_table('totals')");
        exec("INSERT INTO orders VALUES (2, 'bob', 2)");
        exec("SELECT pgtrickle.refresh_stream_table('totals')");
        // the first claimer's lease (1 ms) runs out and a second claimer takes the head over
        String[] stale = string("SELECT outbox_id || ' ' || claim_token FROM pgtrickle.claim_notifications('webhook:a', 1, 1)").split(" ");
        exec("SELECT pg_sleep(0.01)");
        String[] current = string("SELECT outbox_id || ' ' || claim_token FROM pgtrickle.claim_notifications('webhook:a', 1, 60000)").split(" ");
        assertEquals(stale[0], current[0], "the same head, claimed again");
        assertNotEquals(stale[1], current[1], "with a new token");

        // the stale claimer can neither delete it under the new holder nor release it early
        assertEquals(List.of(), strings(complete(stale)));
        assertEquals(null, string("SELECT pgtrickle.fail_notification(" + stale[0] + ", '" + stale[1] + "', 'late', 0, 10)"));
        assertEquals("1|2", string("SELECT count(*) || '|' || max(attempts) FROM pgtrickle.pgt_outbox WHERE outbox_id = " + stale[0]
                + " AND claimed_until > clock_timestamp() AND last_error IS NULL"), "still leased to the second claimer, untouched");
        assertEquals(List.of(), strings("SELECT outbox_id FROM pgtrickle.claim_notifications('webhook:a', 10, 60000)"),
                "the next refresh's notification cannot overtake the head");

        assertEquals(List.of(current[0]), strings(complete(current)));
        assertEquals(List.of(), strings(complete(current)), "once");
        assertEquals(1, strings("SELECT outbox_id FROM pgtrickle.claim_notifications('webhook:a', 10, 60000)").size());
    }

    private static String complete(String[] idAndToken) {
        return "SELECT * FROM pgtrickle.complete_notifications(ARRAY[" + idAndToken[0] + "]::bigint[], ARRAY['" + idAndToken[1] + "']::uuid[])";
    }

    @Test
    void oneCallCompletesManyAndAnswersWhichItCompleted() throws SQLException {
        exec("SELECT pgtrickle.register_sink('log:log', ARRAY['*'])");
        exec("INSERT INTO orders VALUES (1, 'ann', 10)");
        exec("SELECT pgtrickle.refresh_stream_table('totals')");
        exec("SELECT pgtrickle.refresh_stream_table('big')");
        List<String> claimed = strings("SELECT outbox_id || ' ' || claim_token FROM pgtrickle.claim_notifications('log:log', 10, 60000) ORDER BY outbox_id");
        assertEquals(2, claimed.size(), claimed.toString());
        String[] a = claimed.get(0).split(" ");
        String[] b = claimed.get(1).split(" ");
        // the second with a token that is not its claim's: only the first is deleted, and the answer says so
        assertEquals(List.of(a[0]), strings("SELECT * FROM pgtrickle.complete_notifications(ARRAY[" + a[0] + ", " + b[0]
                + "]::bigint[], ARRAY['" + a[1] + "', gen_random_uuid()::text]::uuid[])"));
        assertEquals(List.of(b[0]), strings("SELECT outbox_id FROM pgtrickle.pgt_outbox"));
        assertFails("SELECT pgtrickle.complete_notifications(ARRAY[" + b[0] + "]::bigint[], ARRAY[]::uuid[])",
                "one claim token per outbox id (1 ids, 0 tokens)", "22023");
        assertEquals(List.of(b[0]), strings("SELECT outbox_id FROM pgtrickle.pgt_outbox"), "nothing deleted by the bad call");
        assertEquals(List.of(b[0]), strings(complete(b)));
    }

    @Test
    void failuresAreRetriedThenDeadThenReplayedWithTheirIds() throws SQLException {
        exec("SELECT pgtrickle.register_sink('webhook:a', ARRAY['orders_changed'])");
        exec("INSERT INTO orders VALUES (1, 'ann', 1)");
        exec("SELECT pgtrickle.refresh_stream_table('totals')");
        String[] claim = string("SELECT outbox_id || ' ' || claim_token FROM pgtrickle.claim_notifications('webhook:a', 1, 60000)").split(" ");
        String id = claim[0];
        assertEquals("RETRY", string("SELECT pgtrickle.fail_notification(" + id + ", '" + claim[1] + "', 'HTTP 500', 0, 2)"));
        claim = string("SELECT outbox_id || ' ' || attempts || ' ' || claim_token FROM pgtrickle.claim_notifications('webhook:a', 1, 60000)").split(" ");
        assertEquals(id + " 2", claim[0] + " " + claim[1]);
        assertEquals("DEAD", string("SELECT pgtrickle.fail_notification(" + id + ", '" + claim[2] + "', 'HTTP 500 again', 0, 2)"));
        assertEquals(List.of(id + "|webhook:a|public.totals|orders_changed|2|HTTP 500 again"),
                strings("SELECT concat_ws('|', outbox_id, sink_id, stream_table, channel, attempts, last_error) FROM pgtrickle.list_dead_letters()"));
        assertEquals("0", string("SELECT count(*) FROM pgtrickle.pgt_outbox"));

        assertEquals("1", string("SELECT pgtrickle.replay_dead_letters('webhook:a')"));
        assertEquals(id + "|1", string("SELECT outbox_id || '|' || attempts FROM pgtrickle.claim_notifications('webhook:a', 1, 60000)"),
                "the same id, attempts counted afresh");
        assertEquals("0", string("SELECT count(*) FROM pgtrickle.list_dead_letters()"));
    }

    @Test
    void aDisabledSinkQueuesNothingUntilEnabled() throws SQLException {
        exec("SELECT pgtrickle.register_sink('webhook:gone', ARRAY['orders_changed'])");
        exec("SELECT pgtrickle.disable_sink('webhook:gone', 'HTTP 410 Gone')");
        exec("INSERT INTO orders VALUES (1, 'ann', 1)");
        exec("SELECT pgtrickle.refresh_stream_table('totals')");
        assertEquals("f|HTTP 410 Gone|0", string("SELECT concat_ws('|', enabled, disabled_reason, queued) FROM pgtrickle.list_sinks()"));
        exec("SELECT pgtrickle.enable_sink('webhook:gone')");
        exec("INSERT INTO orders VALUES (2, 'bob', 1)");
        exec("SELECT pgtrickle.refresh_stream_table('totals')");
        assertEquals("t|1", string("SELECT concat_ws('|', enabled, queued) FROM pgtrickle.list_sinks()"));
        assertEquals("1", string("SELECT pgtrickle.unregister_sink('webhook:gone')"), "its queued notification goes with it");
        assertEquals("0", string("SELECT count(*) FROM pgtrickle.pgt_outbox"));
    }

    @Test
    void badSinkCallsFailClearly() {
        assertFails("SELECT pgtrickle.register_sink('', ARRAY['*'])", "needs an id", "22023");
        assertFails("SELECT pgtrickle.register_sink('x:y', ARRAY[]::text[])", "needs at least one channel", "22023");
        assertFails("SELECT pgtrickle.register_sink('x:y', ARRAY['bad channel'])", "invalid channel name", "42602");
        assertFails("SELECT pgtrickle.disable_sink('nope', 'x')", "no sink nope", "42704");
        assertFails("SELECT pgtrickle.unregister_sink('nope')", "no sink nope", "42704");
    }

}
