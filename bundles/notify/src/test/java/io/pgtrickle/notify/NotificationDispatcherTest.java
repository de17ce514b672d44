package io.pgtrickle.notify;

import static io.pgtrickle.notify.NotifyDatabase.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.api.notify.Notification;
import io.pgtrickle.api.notify.NotificationSink;
import io.pgtrickle.api.notify.NotificationSinkType;
import io.pgtrickle.api.notify.SinkGoneException;
import java.io.IOException;
import java.lang.reflect.Proxy;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.stream.Collectors;
import javax.sql.DataSource;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The dispatcher against a real catalog: stream tables refreshed through SQL with a subscription,
 * so that every notification reaches the outbox as in production, and real sinks that record what
 * they are called with.
 */
class NotificationDispatcherTest {

    private static final String TOTALS = "public.totals";
    private static final String BIG = "public.big_orders";

    /** Fast polls and retries, so the tests do not wait on production pacing. */
    private static final DispatcherSettings FAST = new DispatcherSettings(20, 50, 60_000, 20, 200, DispatcherSettings.PARALLEL_DELIVERIES);

    private NotifyDatabase db;
    private Connection writer;
    private final List<NotificationDispatcher> dispatchers = new ArrayList<>();
    private int nextOrder = 10;
    private long baseline;

    /** What a test sink does with a call: return (delivered) or throw. */
    @FunctionalInterface
    interface Behavior {
        void apply(Notification n) throws Exception;
    }

    /** A sink that records every call (attempts included) and every successful delivery. */
    static final class RecordingSink implements NotificationSink {
        final List<Notification> calls;
        final List<Notification> delivered = new CopyOnWriteArrayList<>();
        volatile Behavior behavior = n -> { };

        RecordingSink() {
            this(new CopyOnWriteArrayList<>());
        }

        RecordingSink(List<Notification> calls) {
            this.calls = calls;
        }

        @Override
        public void deliver(Notification n) throws Exception {
            calls.add(n);
            behavior.apply(n);
            delivered.add(n);
        }
    }

    @BeforeEach
    void streamTablesWithASubscription() throws Exception {
        db = new NotifyDatabase("notify");
        db.exec("CREATE TABLE orders (id int PRIMARY KEY, customer text, amount numeric)",
                "INSERT INTO orders VALUES (1, 'ann', 10), (2, 'bob', 3)",
                "SELECT pgtrickle.create_stream_table('totals', 'SELECT customer, sum(amount) AS total FROM orders GROUP BY customer',"
                        + " schedule => 'calculated')",
                "SELECT pgtrickle.create_stream_table('big_orders', 'SELECT id, amount FROM orders WHERE amount > 5',"
                        + " schedule => 'calculated')",
                "SELECT pgtrickle.subscribe('totals', 'order_events')",
                "SELECT pgtrickle.subscribe('big_orders', 'order_events')");
        baseline = db.queryLong("SELECT max(refresh_id) FROM pgtrickle.pgt_refresh_history");
        writer = db.connect();
        try (Statement s = writer.createStatement()) {
            s.execute("SET pg_trickle.notify_coalesce_ms = 0");
        }
    }

    @AfterEach
    void stop() throws SQLException {
        dispatchers.forEach(NotificationDispatcher::close);
        writer.close();
        db.close();
    }

    private NotificationDispatcher dispatcher() {
        NotificationDispatcher d = new NotificationDispatcher(db.dataSource(), FAST);
        dispatchers.add(d);
        return d;
    }

    private static Map<String, Object> service(long id, String name, Object... more) {
        Map<String, Object> p = new HashMap<>();
        p.put("service.id", id);
        p.put(NotificationSinkType.TYPE, "test");
        p.put(NotificationSinkType.NAME, name);
        for (int i = 0; i < more.length; i += 2) {
            p.put((String) more[i], more[i + 1]);
        }
        return p;
    }

    private static void started(NotificationDispatcher d) throws Exception {
        d.start();
        await("sinks registered", d::allRegistered);
    }

    /**
     * A new order (changes both stream tables), then a refresh of each given one: one notification
     * each. The refreshes commit together, so a claim sees all of their notifications or none.
     */
    private void order(String... streamTables) throws SQLException {
        int id = nextOrder++;
        try (Statement s = writer.createStatement()) {
            s.execute("INSERT INTO orders VALUES (" + id + ", 'c" + id + "', 10)");
            writer.setAutoCommit(false);
            try {
                for (String st : streamTables) {
                    s.execute("SELECT pgtrickle.refresh_stream_table('" + st + "')");
                }
                writer.commit();
            } finally {
                writer.setAutoCommit(true);
            }
        }
    }

    /** The refreshes of a stream table since the set-up that changed it: what its subscribers hear, in order. */
    private List<Long> announced(String streamTable) throws SQLException {
        return db.queryLongs("SELECT refresh_id FROM pgtrickle.pgt_refresh_history WHERE pgt_id = (pgtrickle.find_stream_table(?)).pgt_id"
                + " AND refresh_id > ? AND (rows_inserted > 0 OR rows_deleted > 0) ORDER BY refresh_id", streamTable, baseline);
    }

    private long queued(String sinkId) throws SQLException {
        return db.queryLong("SELECT count(*) FROM pgtrickle.pgt_outbox WHERE sink_id = ?", sinkId);
    }

    private static List<Long> refreshIds(List<Notification> notifications, String streamTable) {
        return notifications.stream().filter(n -> n.streamTable().equals(streamTable)).map(Notification::refreshId).toList();
    }

    private static void assertInRefreshOrder(List<Notification> calls) {
        for (String st : calls.stream().map(Notification::streamTable).collect(Collectors.toSet())) {
            List<Long> ids = refreshIds(calls, st);
            for (int i = 1; i < ids.size(); i++) {
                assertTrue(ids.get(i - 1) <= ids.get(i), "calls for " + st + " out of refresh order: " + ids);
            }
        }
    }

    @Test
    void deliversEveryNotificationInRefreshOrderWithIdsStableAcrossARetry() throws Exception {
        RecordingSink sink = new RecordingSink();
        Set<String> failedOnce = ConcurrentSet.create();
        sink.behavior = n -> {
            if (n.streamTable().equals(TOTALS) && failedOnce.size() < 2 && failedOnce.add(n.id())) {
                throw new IllegalStateException("flaky");
            }
        };
        NotificationDispatcher d = dispatcher();
        d.add(sink, service(1, "ordered"));
        started(d);

        for (int i = 0; i < 6; i++) {
            order("totals", "big_orders");
        }
        await("12 deliveries", () -> sink.delivered.size() == 12 && queued("test:ordered") == 0);

        assertEquals(announced("totals"), refreshIds(sink.delivered, TOTALS));
        assertEquals(announced("big_orders"), refreshIds(sink.delivered, BIG));
        assertEquals(6, announced("totals").size());
        assertInRefreshOrder(sink.calls);
        assertEquals(12, sink.delivered.stream().map(Notification::id).distinct().count());
        assertEquals(2, failedOnce.size());
        for (String id : failedOnce) {
            List<Integer> attempts = sink.calls.stream().filter(n -> n.id().equals(id)).map(Notification::attempt).toList();
            assertEquals(List.of(1, 2), attempts, "the retried notification " + id + " keeps its id");
            assertTrue(sink.delivered.stream().anyMatch(n -> n.id().equals(id) && n.attempt() == 2));
        }
        for (Notification n : sink.delivered) {
            assertTrue(n.id().startsWith("pgt-"), n.id());
            assertEquals("test:ordered", n.sinkId());
            assertEquals("order_events", n.channel());
            assertEquals(1, n.refreshes());
            assertEquals(1, n.insertedCount(), "one new order per refresh: " + n);
            assertTrue(n.payload().contains("\"refresh_id\" : " + n.refreshId()), n.payload());
        }
    }

    @Test
    void retriesWithBackoffThenDeadLettersAndAReplayDeliversTheSameId() throws Exception {
        RecordingSink sink = new RecordingSink();
        AtomicBoolean down = new AtomicBoolean(true);
        sink.behavior = n -> {
            if (down.get()) {
                throw new IOException("endpoint down");
            }
        };
        NotificationDispatcher d = dispatcher();
        d.add(sink, service(1, "failing", NotificationSinkType.MAX_ATTEMPTS, 3));
        started(d);

        order("totals");
        await("a dead letter", () -> db.queryLong("SELECT count(*) FROM pgtrickle.list_dead_letters('test:failing')") == 1);

        assertEquals(List.of(1, 2, 3), sink.calls.stream().map(Notification::attempt).toList());
        assertEquals(1, sink.calls.stream().map(Notification::id).distinct().count(), "one id across the retries");
        assertTrue(sink.delivered.isEmpty());
        assertEquals(0, queued("test:failing"));
        assertEquals(3, db.queryLong("SELECT attempts FROM pgtrickle.list_dead_letters('test:failing')"));
        String error = db.queryString("SELECT last_error FROM pgtrickle.list_dead_letters('test:failing')");
        assertTrue(error.contains("IOException") && error.contains("endpoint down"), error);
        String id = sink.calls.get(0).id();
        long outboxId = db.queryLong("SELECT outbox_id FROM pgtrickle.list_dead_letters('test:failing')");
        assertEquals("pgt-" + outboxId, id);

        down.set(false);
        assertEquals(1, db.queryLong("SELECT pgtrickle.replay_dead_letters('test:failing', ARRAY[?::bigint])", outboxId));
        await("the replayed delivery", () -> sink.delivered.size() == 1);
        assertEquals(id, sink.delivered.get(0).id());
        assertEquals(1, sink.delivered.get(0).attempt(), "a replay starts its attempts afresh");
        await("an empty outbox", () -> queued("test:failing") == 0);
        assertEquals(0, db.queryLong("SELECT count(*) FROM pgtrickle.list_dead_letters('test:failing')"));
    }

    @Test
    void aGoneSinkIsDisabledAndQueuesNothingMoreUntilReEnabled() throws Exception {
        RecordingSink gone = new RecordingSink();
        AtomicBoolean isGone = new AtomicBoolean(true);
        gone.behavior = n -> {
            if (isGone.get()) {
                throw new SinkGoneException("410 Gone");
            }
        };
        RecordingSink other = new RecordingSink();
        NotificationDispatcher d = dispatcher();
        d.add(gone, service(1, "gone"));
        d.add(other, service(2, "other"));
        started(d);

        order("totals");
        await("the sink disabled", () -> "false|410 Gone".equals(db.queryString(
                "SELECT enabled::text || '|' || coalesce(disabled_reason, '') FROM pgtrickle.list_sinks() WHERE sink_id = 'test:gone'")));
        await("its notification released", () -> db.queryLong(
                "SELECT count(*) FROM pgtrickle.pgt_outbox WHERE sink_id = 'test:gone' AND claimed_until IS NULL") == 1);

        order("totals");
        order("totals");
        await("the other sink's deliveries", () -> other.delivered.size() == 3);
        assertEquals(1, queued("test:gone"), "nothing queued for a disabled sink but what it had");
        assertEquals(1, gone.calls.size());
        assertEquals(0, db.queryLong("SELECT count(*) FROM pgtrickle.list_dead_letters('test:gone')"));

        isGone.set(false);
        db.exec("SELECT pgtrickle.enable_sink('test:gone')");
        await("the kept notification delivered", () -> gone.delivered.size() == 1);
        assertEquals(gone.calls.get(0).id(), gone.delivered.get(0).id());
        assertEquals(2, gone.delivered.get(0).attempt());
    }

    @Test
    void aHangingSinkDelaysOnlyItselfAndItsRowIsRetriedAfterTheTimeout() throws Exception {
        // hangs on its first call for longer than the test would wait
        RecordingSink hung = new RecordingSink();
        AtomicBoolean hanging = new AtomicBoolean();
        // hangs on the first notification of one stream table; the batch's other one is delivered beside it
        hung.behavior = n -> {
            if (n.attempt() == 1 && n.streamTable().equals("public.totals") && !hanging.get()) {
                hanging.set(true);
                try {
                    Thread.sleep(Long.MAX_VALUE);
                } finally {
                    hanging.set(false);
                }
            }
        };
        // hangs on its first call, but gives up after 300 ms
        RecordingSink slow = new RecordingSink();
        AtomicBoolean interrupted = new AtomicBoolean();
        slow.behavior = n -> {
            if (slow.calls.size() == 1) {
                try {
                    Thread.sleep(Long.MAX_VALUE);
                } catch (InterruptedException e) {
                    interrupted.set(true);
                    throw e;
                }
            }
        };
        RecordingSink fast = new RecordingSink();
        NotificationDispatcher d = dispatcher();
        d.add(hung, service(1, "hung", NotificationSinkType.TIMEOUT_MS, 120_000));
        d.add(slow, service(2, "slow", NotificationSinkType.TIMEOUT_MS, "300"));
        d.add(fast, service(3, "fast"));
        started(d);

        order("totals", "big_orders");
        order("totals", "big_orders");
        order("totals", "big_orders");

        await("the fast sink's deliveries", () -> fast.delivered.size() == 6);
        // the hung call holds back its own stream table only: the sink's other one goes on, in order
        await("the hung sink's other stream table", () -> hung.delivered.size() == 3);
        assertTrue(hanging.get(), "the hung sink is still in its first call");
        assertEquals(1, hung.calls.stream().filter(n -> n.streamTable().equals(TOTALS)).count(),
                "of the hung stream table, its first notification and nothing after: " + hung.calls);
        assertEquals(4, hung.calls.size(), "each called once: " + hung.calls);
        assertEquals(announced("big_orders"), refreshIds(hung.delivered, BIG));
        assertInRefreshOrder(hung.calls);

        await("the slow sink's deliveries", () -> slow.delivered.size() == 6);
        assertTrue(interrupted.get(), "the timed-out call was interrupted");
        Notification first = slow.calls.get(0);
        assertTrue(slow.delivered.stream().anyMatch(n -> n.id().equals(first.id()) && n.attempt() == 2),
                "the timed-out notification came again with its id: " + slow.delivered);
        assertInRefreshOrder(slow.calls);
        assertEquals(announced("totals"), refreshIds(slow.delivered, TOTALS));
        assertEquals(announced("big_orders"), refreshIds(fast.delivered, BIG));
    }

    @Test
    void twoDispatchersOnOneDatabaseDeliverEachNotificationOnce() throws Exception {
        List<Notification> calls = new CopyOnWriteArrayList<>();
        RecordingSink one = new RecordingSink(calls);
        RecordingSink two = new RecordingSink(calls);
        NotificationDispatcher d1 = dispatcher();
        NotificationDispatcher d2 = dispatcher();
        d1.add(one, service(1, "shared"));
        d2.add(two, service(1, "shared"));
        started(d1);
        started(d2);

        for (int i = 0; i < 15; i++) {
            order("totals", "big_orders");
        }
        await("30 deliveries", () -> calls.size() >= 30 && queued("test:shared") == 0);

        assertEquals(30, calls.size(), "no notification twice");
        assertEquals(30, calls.stream().map(Notification::id).distinct().count());
        assertInRefreshOrder(calls);
        assertEquals(announced("totals"), refreshIds(calls, TOTALS));
        assertEquals(announced("big_orders"), refreshIds(calls, BIG));
    }

    @Test
    void deliveriesThatFinishTogetherAreCompletedTogether() throws Exception {
        int tables = 8; // at most parallelDeliveries: all of them in flight at once
        for (int k = 0; k < tables; k++) {
            db.exec("SELECT pgtrickle.create_stream_table('part_" + k + "', 'SELECT id FROM orders WHERE id % " + tables + " = " + k
                    + "', schedule => 'calculated')", "SELECT pgtrickle.subscribe('part_" + k + "', 'parts')");
        }
        // every delivery of the batch waits for the others, so they all finish at once
        CountDownLatch together = new CountDownLatch(tables);
        RecordingSink sink = new RecordingSink();
        sink.behavior = n -> {
            together.countDown();
            together.await(10, TimeUnit.SECONDS);
        };
        AtomicInteger completions = new AtomicInteger();
        NotificationDispatcher d = new NotificationDispatcher(countingCompletions(db.dataSource(), completions), FAST);
        dispatchers.add(d);
        d.add(sink, service(1, "parts", NotificationSinkType.CHANNELS, new String[] {"parts"}));
        started(d);

        // the sink is registered: the refreshes queue one notification each for it, all claimable at once
        refreshPartsTogether(tables);
        await("all delivered and completed", () -> sink.delivered.size() == tables && queued("test:parts") == 0);
        assertEquals(tables, sink.calls.size(), "each once");
        assertTrue(completions.get() < tables, "one completion call served several deliveries: " + completions.get() + " calls for "
                + tables + " deliveries");
    }

    @Test
    void parallelDeliveriesBoundsTheCallsOfASinkAtOnce() throws Exception {
        int parallel = 3;
        int tables = parallel + 2;
        for (int k = 0; k < tables; k++) {
            db.exec("SELECT pgtrickle.create_stream_table('part_" + k + "', 'SELECT id FROM orders WHERE id % " + tables + " = " + k
                    + "', schedule => 'calculated')", "SELECT pgtrickle.subscribe('part_" + k + "', 'parts')");
        }
        // the first calls wait until `parallel` of them are in the sink at once
        CountDownLatch together = new CountDownLatch(parallel);
        AtomicInteger now = new AtomicInteger();
        AtomicInteger most = new AtomicInteger();
        RecordingSink sink = new RecordingSink();
        sink.behavior = n -> {
            most.accumulateAndGet(now.incrementAndGet(), Math::max);
            try {
                together.countDown();
                together.await(30, TimeUnit.SECONDS);
            } finally {
                now.decrementAndGet();
            }
        };
        NotificationDispatcher d = new NotificationDispatcher(db.dataSource(), new DispatcherSettings(20, 50, 60_000, 20, 200, parallel));
        dispatchers.add(d);
        d.add(sink, service(1, "parts", NotificationSinkType.CHANNELS, new String[] {"parts"}));
        started(d);

        refreshPartsTogether(tables);
        await("all delivered", () -> sink.delivered.size() == tables && queued("test:parts") == 0);
        assertEquals(0, together.getCount(), "that many calls were in the sink at once");
        assertEquals(parallel, most.get(), "never more than parallelDeliveries calls at once, of " + tables + " claimable");
    }

    /** The data source, counting the statements that complete notifications. */
    private static DataSource countingCompletions(DataSource target, AtomicInteger completions) {
        return (DataSource) Proxy.newProxyInstance(DataSource.class.getClassLoader(), new Class<?>[] {DataSource.class},
                (proxy, method, args) -> {
                    Object result = invoke(target, method, args);
                    if (!(result instanceof Connection c)) {
                        return result;
                    }
                    return Proxy.newProxyInstance(Connection.class.getClassLoader(), new Class<?>[] {Connection.class},
                            (p, m, a) -> {
                                if (m.getName().equals("prepareStatement") && String.valueOf(a[0]).contains("complete_notifications")) {
                                    completions.incrementAndGet();
                                }
                                return invoke(c, m, a);
                            });
                });
    }

    private static Object invoke(Object target, java.lang.reflect.Method method, Object[] args) throws Throwable {
        try {
            return method.invoke(target, args);
        } catch (java.lang.reflect.InvocationTargetException e) {
            throw e.getCause();
        }
    }

    @Test
    void aSinkRemovedAndAddedAgainReceivesWhatQueuedMeanwhile() throws Exception {
        RecordingSink before = new RecordingSink();
        NotificationDispatcher d = dispatcher();
        Map<String, Object> first = service(1, "returning", NotificationSinkType.CHANNELS, new String[] {"Order_Events", "order_events"});
        d.add(before, first);
        started(d);
        assertEquals("{order_events}", db.queryString("SELECT channels::text FROM pgtrickle.pgt_sinks WHERE sink_id = 'test:returning'"));
        order("totals");
        await("the first delivery", () -> before.delivered.size() == 1);

        d.remove(first);
        assertTrue(d.sinkIds().isEmpty());
        order("totals");
        order("totals", "big_orders");
        assertEquals(3, db.queryLong("SELECT queued FROM pgtrickle.list_sinks() WHERE sink_id = 'test:returning' AND enabled"),
                "a sink that left stays registered and its queue grows");

        RecordingSink after = new RecordingSink();
        d.add(after, service(7, "returning", NotificationSinkType.CHANNELS, "order_events"));
        await("the queued deliveries", () -> after.delivered.size() == 3 && queued("test:returning") == 0);
        assertEquals(1, before.calls.size());
        assertEquals(announced("totals").subList(1, 3), refreshIds(after.delivered, TOTALS));
        assertEquals(announced("big_orders"), refreshIds(after.delivered, BIG));
    }

    @Test
    void theHighestRankedServiceOfASinkIdDeliversAndUntypedServicesAreIgnored() throws Exception {
        RecordingSink low = new RecordingSink();
        RecordingSink high = new RecordingSink();
        RecordingSink untyped = new RecordingSink();
        NotificationDispatcher d = dispatcher();
        d.add(low, service(1, "ranked"));
        Map<String, Object> highService = service(2, "ranked", "service.ranking", 5);
        d.add(high, highService);
        Map<String, Object> noType = service(3, "x");
        noType.remove(NotificationSinkType.TYPE);
        d.add(untyped, noType);
        assertEquals(Set.of("test:ranked"), d.sinkIds());
        started(d);

        order("totals");
        await("the high-ranked delivery", () -> high.delivered.size() == 1);
        d.remove(highService);
        order("totals");
        await("the low-ranked delivery", () -> low.delivered.size() == 1);
        assertEquals(1, high.calls.size());
        assertTrue(untyped.calls.isEmpty());
        assertFalse(high.delivered.get(0).id().equals(low.delivered.get(0).id()));
    }

    /** A concurrent set, spelled out once. */
    private static final class ConcurrentSet {
        static <T> Set<T> create() {
            return java.util.concurrent.ConcurrentHashMap.newKeySet();
        }
    }

    /** A row for each of part_0 .. part_{tables-1}, and all of them refreshed in one transaction: one notification each, claimable at once. */
    private void refreshPartsTogether(int tables) throws SQLException {
        try (Statement s = writer.createStatement()) {
            s.execute("INSERT INTO orders SELECT g, 'p', 1 FROM generate_series(100, " + (99 + tables) + ") g");
            writer.setAutoCommit(false);
            for (int k = 0; k < tables; k++) {
                s.execute("SELECT pgtrickle.refresh_stream_table('part_" + k + "')");
            }
            writer.commit();
            writer.setAutoCommit(true);
        }
    }
}
