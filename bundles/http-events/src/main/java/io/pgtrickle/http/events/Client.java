package io.pgtrickle.http.events;

import jakarta.servlet.AsyncContext;
import jakarta.servlet.AsyncEvent;
import jakarta.servlet.AsyncListener;
import jakarta.servlet.ServletOutputStream;
import jakarta.servlet.WriteListener;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.StringJoiner;

/**
 * One connected event stream. Writes never block: frames wait in a queue that is written whenever
 * the connection can take more ({@link WriteListener}), so an idle or slow client holds no thread.
 * A client that falls {@value #MAX_QUEUED} frames behind is disconnected; it loses nothing, because it
 * reconnects with its last id and resumes.
 */
final class Client implements WriteListener, AsyncListener {

    static final int MAX_QUEUED = 10_000;

    private final Hub hub;
    private final AsyncContext context;
    private final ServletOutputStream out;
    private final String role;
    private final List<EventStore.StreamTable> tables;
    private final Map<Long, Integer> index = new HashMap<>();
    private final long[] positions; // guarded by this
    private final ArrayDeque<byte[]> queue = new ArrayDeque<>(); // guarded by this
    private boolean needFlush; // guarded by this
    private boolean closed; // guarded by this

    Client(Hub hub, AsyncContext context, ServletOutputStream out, String role, List<EventStore.StreamTable> tables, long[] positions) {
        this.hub = hub;
        this.context = context;
        this.out = out;
        this.role = role;
        this.tables = List.copyOf(tables);
        this.positions = positions.clone();
        for (int i = 0; i < tables.size(); i++) {
            index.put(tables.get(i).pgtId(), i);
        }
    }

    List<EventStore.StreamTable> tables() {
        return tables;
    }

    String role() {
        return role;
    }

    synchronized long position(long pgtId) {
        return positions[index.get(pgtId)];
    }

    /**
     * The {@code id:} of an event: the outbox id of each requested stream table's latest event, in the
     * order of the request; for one stream table just that id.
     */
    static String lastEventId(long[] positions) {
        StringJoiner j = new StringJoiner(",");
        for (long p : positions) {
            j.add(Long.toString(p));
        }
        return j.toString();
    }

    /** Queues raw text (the opening frames). */
    synchronized void send(String frame) {
        if (closed) {
            return;
        }
        if (queue.size() >= MAX_QUEUED) {
            close();
            return;
        }
        queue.add(frame.getBytes(StandardCharsets.UTF_8));
        drain();
    }

    /** An event, unless this client has it already (a rewind for another client reads rows again). */
    synchronized void offer(EventStore.Row row) {
        Integer i = index.get(row.pgtId());
        if (i == null || row.outboxId() <= positions[i]) {
            return;
        }
        positions[i] = row.outboxId();
        StringBuilder frame = new StringBuilder("id: ").append(lastEventId(positions)).append("\nevent: refresh\n");
        for (String line : row.payload().split("\r\n|\r|\n", -1)) {
            frame.append("data: ").append(line).append('\n');
        }
        send(frame.append('\n').toString());
    }

    void keepAlive() {
        send(": keep-alive\n\n");
    }

    /** The role lost SELECT on a stream table: say so, and end the stream. */
    synchronized void revoke(String name) {
        send("event: revoked\ndata: {\"stream_table\": \"" + name.replace("\\", "\\\\").replace("\"", "\\\"") + "\"}\n\n");
        closeWhenWritten = true;
        drain();
    }

    private boolean closeWhenWritten; // guarded by this

    private synchronized void drain() {
        if (closed) {
            return;
        }
        try {
            while (out.isReady()) {
                byte[] frame = queue.poll();
                if (frame == null) {
                    if (!needFlush) {
                        if (closeWhenWritten) {
                            close();
                        }
                        return;
                    }
                    needFlush = false;
                    out.flush();
                    continue;
                }
                out.write(frame);
                needFlush = true;
            }
        } catch (IOException | IllegalStateException e) {
            close();
        }
    }

    synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        queue.clear();
        hub.remove(this);
        try {
            context.complete();
        } catch (IllegalStateException e) {
            // completed already (the client went away)
        }
    }

    @Override
    public void onWritePossible() {
        drain();
    }

    @Override
    public void onError(Throwable t) {
        close();
    }

    @Override
    public void onComplete(AsyncEvent event) {
        close();
    }

    @Override
    public void onTimeout(AsyncEvent event) {
        close();
    }

    @Override
    public void onError(AsyncEvent event) {
        close();
    }

    @Override
    public void onStartAsync(AsyncEvent event) {
    }
}
