package io.pgtrickle.http.events;

import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import javax.sql.DataSource;
import org.postgresql.PGConnection;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The container's one reader of the event outbox, fanned out in memory to every connected client.
 * One thread does all database work (poll, prune, privilege re-checks) and the keep-alives, so a
 * thousand idle clients cost one connection now and then, not a thousand.
 *
 * <p>It keeps a cursor per watched stream table. A client joins with its own position per stream
 * table; a position behind the cursor rewinds it, the next poll reads from there, and clients that
 * have those events already skip them. A client receives nothing before the poll that includes its
 * rewind, so it never sees a later event before an earlier one.
 */
final class Hub implements AutoCloseable {

    private static final Logger LOG = LoggerFactory.getLogger(Hub.class);

    static final long POLL_MS = 100;

    /** How often a connected client's role is asked again whether it may still read its stream tables. */
    static final long RECHECK_MS = 5_000;

    private final DataSource dataSource;
    private final long retentionMs;
    private final ScheduledExecutorService thread;
    private final Set<Client> clients = ConcurrentHashMap.newKeySet();
    private final List<Client> joining = new ArrayList<>(); // guarded by this
    private final Map<Long, Long> rewinds = new HashMap<>(); // guarded by this
    private final Map<Long, Long> cursors = new HashMap<>(); // reader thread only
    private boolean registered; // reader thread only
    private boolean databaseDown; // reader thread only
    private long nextPrune; // reader thread only
    private long nextRecheck; // reader thread only

    /**
     * While clients are connected, a connection of the reader's own LISTENing on the events' channel:
     * the refresh that writes an event also sends a NOTIFY on it, which ends the reader's wait between
     * polls at once, so an event reaches the clients about as soon as a LISTEN client hears it instead
     * of up to a poll interval later. The poll stays: it is what reads, and what finds events whose
     * NOTIFY came before the LISTEN.
     */
    private Connection listener; // reader thread only

    Hub(DataSource dataSource, long retentionMs, long keepAliveMs) {
        this.dataSource = dataSource;
        this.retentionMs = retentionMs;
        this.thread = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "pgtrickle-sse");
            t.setDaemon(true);
            return t;
        });
        thread.scheduleWithFixedDelay(this::pollThenWait, 0, 1, TimeUnit.MILLISECONDS);
        thread.scheduleWithFixedDelay(this::keepAlive, keepAliveMs, keepAliveMs, TimeUnit.MILLISECONDS);
    }

    /** How often old events are removed: often enough that the retention holds to about half of itself. */
    long pruneIntervalMs() {
        return Math.max(1_000, Math.min(60_000, retentionMs / 2));
    }

    int connected() {
        return clients.size();
    }

    /** A new client, starting after {@code positions} (pgt_id to outbox id). */
    synchronized void join(Client client, Map<Long, Long> positions) {
        positions.forEach((pgtId, position) -> rewinds.merge(pgtId, position, Math::min));
        joining.add(client);
    }

    void remove(Client client) {
        clients.remove(client);
        synchronized (this) {
            joining.remove(client);
        }
    }

    /** A poll, then up to {@link #POLL_MS} of waiting, ended early by a NOTIFY on the channel. */
    private void pollThenWait() {
        poll();
        try {
            if (clients.isEmpty()) {
                closeListener();
                Thread.sleep(POLL_MS);
                return;
            }
            if (listener == null) {
                listener = dataSource.getConnection();
                listener.setAutoCommit(true);
                try (Statement s = listener.createStatement()) {
                    s.execute("LISTEN " + EventStore.CHANNEL);
                }
            }
            // pgjdbc's wait for notifications, which returns as soon as one arrives (none: after the timeout)
            listener.unwrap(PGConnection.class).getNotifications((int) POLL_MS);
        } catch (SQLException | RuntimeException e) {
            closeListener();
            try {
                Thread.sleep(POLL_MS);
            } catch (InterruptedException interrupted) {
                Thread.currentThread().interrupt();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Back to the pool, listening no more (a pooled connection must not go on collecting notifications). */
    private void closeListener() {
        if (listener == null) {
            return;
        }
        try (Connection c = listener; Statement s = c.createStatement()) {
            s.execute("UNLISTEN *");
        } catch (SQLException e) {
            LOG.debug("pgtrickle SSE: closing the listening connection: {}", e.getMessage());
        }
        listener = null;
    }

    private void poll() {
        List<Client> joined;
        Map<Long, Long> rewound;
        synchronized (this) {
            joined = List.copyOf(joining);
            joining.clear();
            rewound = new HashMap<>(rewinds);
            rewinds.clear();
        }
        try (Connection c = dataSource.getConnection()) {
            c.setAutoCommit(true);
            if (databaseDown) {
                LOG.info("pgtrickle SSE reader reaches the database again");
                databaseDown = false;
            }
            if (!registered) {
                EventStore.register(c);
                registered = true;
            }
            long now = System.currentTimeMillis();
            if (now >= nextPrune) {
                nextPrune = now + pruneIntervalMs();
                int pruned = EventStore.prune(c, retentionMs);
                if (pruned > 0) {
                    LOG.debug("pgtrickle SSE: {} events older than the retention removed", pruned);
                }
            }
            clients.addAll(joined);
            joined = List.of();
            Set<Long> watched = new HashSet<>();
            for (Client client : clients) {
                for (EventStore.StreamTable t : client.tables()) {
                    watched.add(t.pgtId());
                }
            }
            cursors.keySet().retainAll(watched);
            Map<Long, Long> from = new HashMap<>();
            for (long pgtId : watched) {
                Long cursor = cursors.get(pgtId);
                Long rewind = rewound.get(pgtId);
                if (cursor != null || rewind != null) {
                    from.put(pgtId, Math.min(cursor == null ? Long.MAX_VALUE : cursor, rewind == null ? Long.MAX_VALUE : rewind));
                }
            }
            rewound = Map.of();
            List<EventStore.Row> rows = EventStore.after(c, from);
            cursors.putAll(from);
            for (EventStore.Row row : rows) {
                cursors.merge(row.pgtId(), row.outboxId(), Math::max);
            }
            for (Client client : clients) {
                for (EventStore.Row row : rows) {
                    client.offer(row);
                }
            }
            if (now >= nextRecheck) {
                nextRecheck = now + RECHECK_MS;
                recheck(c);
            }
        } catch (SQLException | RuntimeException e) {
            // what this poll took over is handed back, so the next one starts where this one should have
            synchronized (this) {
                joining.addAll(0, joined);
                rewound.forEach((pgtId, position) -> rewinds.merge(pgtId, position, Math::min));
            }
            if (!databaseDown) {
                LOG.warn("pgtrickle SSE reader cannot read the event outbox, retrying: {}", e.getMessage());
                databaseDown = true;
            }
        }
    }

    /** Grants change: a client whose role lost SELECT on one of its stream tables is told so and closed. */
    private void recheck(Connection c) throws SQLException {
        Map<String, Boolean> answers = new HashMap<>();
        for (Client client : clients) {
            for (EventStore.StreamTable t : client.tables()) {
                String key = client.role() + "\u0000" + t.pgtId();
                Boolean ok = answers.get(key);
                if (ok == null) {
                    ok = EventStore.canRead(c, client.role(), t.pgtId());
                    answers.put(key, ok);
                }
                if (!ok) {
                    client.revoke(t.name());
                    break;
                }
            }
        }
    }

    private void keepAlive() {
        for (Client client : clients) {
            client.keepAlive();
        }
    }

    @Override
    public void close() {
        thread.shutdownNow();
        try {
            thread.awaitTermination(5, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        closeListener();
        List<Client> open;
        synchronized (this) {
            open = new ArrayList<>(joining);
            joining.clear();
        }
        open.addAll(clients);
        for (Client client : open) {
            client.close();
        }
    }
}
