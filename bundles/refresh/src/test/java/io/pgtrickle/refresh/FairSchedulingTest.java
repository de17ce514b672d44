package io.pgtrickle.refresh;

import static io.pgtrickle.refresh.RefreshDatabase.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * More due work than workers: eight FULL stream tables whose refresh takes longer than their
 * schedule, two workers, and a writer so that every refresh has changes to apply. Every stream table
 * is due again the moment its refresh ends, so the workers can never catch up. The scheduler must
 * then serve them in turn: each gets about an eighth of the refreshes, and none waits much longer
 * than the others between two of its refreshes.
 *
 * <p>Everything is judged as ratios of the database's own timestamps (the refresh history), never
 * against a wall-clock bound: a slow machine makes every refresh slower, not the turns less fair.
 */
class FairSchedulingTest {

    private static final int STREAM_TABLES = 8;
    private static final int WORKERS = 2;
    /** Scheduled refreshes to wait for: eight turns each, if they are fair. */
    private static final int REFRESHES = STREAM_TABLES * 8;
    /**
     * The longest a stream table may go without a refresh, in multiples of the fair share (the
     * window divided by its refreshes per stream table). Turns taken strictly in order give 1; the
     * slack is for refreshes of uneven length and the tick that notices a free worker.
     */
    private static final double MAX_GAP_IN_FAIR_SHARES = 3;

    private RefreshDatabase db;
    private RefreshEngine engine;
    private Thread writer;
    private final AtomicBoolean writing = new AtomicBoolean(true);

    @BeforeEach
    void setUp() throws Exception {
        db = new RefreshDatabase("refresh_fair");
        // a refresh that takes 150 ms of waiting, not of CPU, on a 100 ms schedule: the refreshes of
        // eight stream tables need six workers' time, two are there
        db.exec("CREATE TABLE src (id serial PRIMARY KEY, v int NOT NULL)",
                "CREATE FUNCTION slowly(n bigint) RETURNS bigint LANGUAGE sql VOLATILE AS 'SELECT n FROM pg_sleep(0.15)'");
        for (int k = 0; k < STREAM_TABLES; k++) {
            db.exec("SELECT pgtrickle.create_stream_table('st" + k + "', 'SELECT slowly(count(*)) AS n, sum(v) AS s FROM src WHERE id % "
                    + STREAM_TABLES + " = " + k + "', '100ms', refresh_mode => 'FULL')");
        }
        engine = new RefreshEngine(db.dataSource(), new EngineSettings(10, WORKERS, 3), new Listeners());
    }

    @AfterEach
    void tearDown() throws Exception {
        writing.set(false);
        if (writer != null) {
            writer.join();
        }
        if (engine != null) {
            engine.close();
        }
        db.close();
    }

    /** Inserts a row into every stream table's share of the source every few milliseconds. */
    private void startWriter() {
        writer = new Thread(() -> {
            try (Connection c = db.connect(); Statement s = c.createStatement()) {
                while (writing.get()) {
                    s.execute("INSERT INTO src (v) SELECT g FROM generate_series(1, " + STREAM_TABLES + ") g");
                    Thread.sleep(20);
                }
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        }, "fair-scheduling-writer");
        writer.setDaemon(true);
        writer.start();
    }

    @Test
    void underSaturationEveryStreamTableIsRefreshedInTurn() throws Exception {
        String windowStart = db.queryString("SELECT clock_timestamp()::text");
        startWriter();
        engine.start();
        await(REFRESHES + " scheduled refreshes", () -> db.queryLong("SELECT count(*) FROM pgtrickle.pgt_refresh_history"
                + " WHERE initiated_by = 'SCHEDULER' AND start_time >= ?::timestamptz", windowStart) >= REFRESHES);
        engine.close();
        writing.set(false);
        String windowEnd = db.queryString("SELECT clock_timestamp()::text");

        // per stream table, the seconds from the window's start to the end of each of its refreshes
        Map<String, List<Double>> ends = new TreeMap<>();
        double window;
        try (Connection c = db.connect(); PreparedStatement ps = c.prepareStatement(
                "SELECT s.pgt_name, extract(epoch FROM h.end_time - ?::timestamptz)::float8,"
                        + " extract(epoch FROM ?::timestamptz - ?::timestamptz)::float8"
                        + " FROM pgtrickle.pgt_stream_tables s LEFT JOIN pgtrickle.pgt_refresh_history h ON h.pgt_id = s.pgt_id"
                        + " AND h.initiated_by = 'SCHEDULER' AND h.status = 'COMPLETED' AND h.start_time >= ?::timestamptz"
                        + " ORDER BY s.pgt_name, h.end_time")) {
            ps.setString(1, windowStart);
            ps.setString(2, windowEnd);
            ps.setString(3, windowStart);
            ps.setString(4, windowStart);
            try (ResultSet rs = ps.executeQuery()) {
                window = 0;
                while (rs.next()) {
                    List<Double> mine = ends.computeIfAbsent(rs.getString(1), k -> new ArrayList<>());
                    double end = rs.getDouble(2);
                    if (!rs.wasNull()) {
                        mine.add(end);
                    }
                    window = rs.getDouble(3);
                }
            }
        }
        assertEquals(STREAM_TABLES, ends.size());
        int total = ends.values().stream().mapToInt(List::size).sum();
        double fairShare = window * STREAM_TABLES / total;

        StringBuilder report = new StringBuilder(String.format("%d refreshes in %.2f s, fair share %.3f s;", total, window, fairShare));
        Map<String, Double> worstGap = new TreeMap<>();
        for (Map.Entry<String, List<Double>> e : ends.entrySet()) {
            double previous = 0;
            double worst = 0;
            for (double end : e.getValue()) {
                worst = Math.max(worst, end - previous);
                previous = end;
            }
            worst = Math.max(worst, window - previous);
            worstGap.put(e.getKey(), worst);
            report.append(String.format(" %s: %d refreshes, longest wait %.2f shares;", e.getKey(), e.getValue().size(), worst / fairShare));
        }
        System.out.println(report);

        for (Map.Entry<String, List<Double>> e : ends.entrySet()) {
            assertTrue(e.getValue().size() >= 2, e.getKey() + " was refreshed in turn: " + report);
        }
        for (Map.Entry<String, Double> e : worstGap.entrySet()) {
            assertTrue(e.getValue() <= MAX_GAP_IN_FAIR_SHARES * fairShare,
                    e.getKey() + " waited at most " + MAX_GAP_IN_FAIR_SHARES + " fair shares between refreshes: " + report);
        }
        assertEquals(0, engine.stats().failed());
    }
}
