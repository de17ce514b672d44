package io.pgtrickle.launcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Flow;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * docs/live.md's promise that idle server-sent event streams hold no thread and no database
 * connection, against the running distribution on this machine: 1,000 clients (the JDK's
 * HttpClient, asynchronous, one connection each) stay connected while the container's thread count
 * hardly moves, and every one of them receives the event of the next refresh. The container's
 * threads and resident memory (from /proc) before and after are printed; only the thread count is
 * asserted, and no duration.
 */
class SseIdleClientsIT {

    static final int CLIENTS = 1_000;
    /**
     * Connections opened at once (-Dsse.batch). Requests arriving together grow Jetty's thread pool (by
     * about 40 idle threads for batches of 25, which Jetty ends after its idle timeout); what this test
     * is about is what connected clients hold, so they connect a few at a time, as real ones do.
     */
    static final int BATCH = Integer.getInteger("sse.batch", 5);
    private static final Duration WAIT = Duration.ofSeconds(60);

    /** Threads and VmRSS (kB) of a process, from /proc/PID/status, and its threads by name (digits dropped) from /proc/PID/task. */
    record ProcStatus(int threads, long rssKb, Map<String, Integer> names) {
        static ProcStatus of(long pid) throws Exception {
            Map<String, Integer> names = new java.util.TreeMap<>();
            try (java.util.stream.Stream<Path> tasks = Files.list(Path.of("/proc/" + pid + "/task"))) {
                for (Path task : (Iterable<Path>) tasks::iterator) {
                    try {
                        names.merge(Files.readString(task.resolve("comm")).trim().replaceAll("[0-9]+", "#"), 1, Integer::sum);
                    } catch (java.io.IOException e) {
                        // the thread ended meanwhile
                    }
                }
            }
            int threads = -1;
            long rss = -1;
            for (String line : Files.readAllLines(Path.of("/proc/" + pid + "/status"))) {
                if (line.startsWith("Threads:")) {
                    threads = Integer.parseInt(line.substring(8).trim());
                } else if (line.startsWith("VmRSS:")) {
                    rss = Long.parseLong(line.substring(6).trim().split("\\s+")[0]);
                }
            }
            return new ProcStatus(threads, rss, names);
        }
    }

    /** Reads a stream line by line as the bytes arrive, on the client's threads, and counts refresh events. */
    static final class Listener implements Flow.Subscriber<String> {
        final CountDownLatch refreshed;
        final AtomicInteger events = new AtomicInteger();
        volatile Flow.Subscription subscription;

        Listener(CountDownLatch refreshed) {
            this.refreshed = refreshed;
        }

        @Override
        public void onSubscribe(Flow.Subscription s) {
            subscription = s;
            s.request(Long.MAX_VALUE);
        }

        @Override
        public void onNext(String line) {
            if (line.equals("event: refresh") && events.incrementAndGet() == 1) {
                refreshed.countDown();
            }
        }

        @Override
        public void onError(Throwable t) {
        }

        @Override
        public void onComplete() {
        }
    }

    @Test
    void aThousandIdleClientsHoldNoThreadsAndAllHearTheNextRefresh(@TempDir Path tmp) throws Exception {
        assertTrue(Files.exists(Path.of("/proc/self/status")), "needs Linux' /proc");
        Path home = Distribution.copyTo(tmp.resolve("pgtrickle"));
        Files.writeString(home.resolve("etc/io.pgtrickle.http.events.config"), "tokens=[\"postgres:tok-many\"]\n");
        int port = Distribution.freePort();
        int httpPort = Distribution.freePort();
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(30)).build();
        List<Listener> listeners = new ArrayList<>();
        try (PgTrickleProcess pgtrickle = PgTrickleProcess.startReady(home, port, Map.of("PGTRICKLE_HTTP_PORT", Integer.toString(httpPort)));
             Connection c = DriverManager.getConnection(PgTrickleProcess.jdbcUrl(port), "postgres", null); Statement s = c.createStatement()) {
            s.execute("CREATE TABLE ticks (id int PRIMARY KEY, n int)");
            s.execute("SELECT pgtrickle.create_stream_table('tick_count', 'SELECT count(*) AS n, sum(n) AS total FROM ticks')");
            s.execute("SELECT pgtrickle.subscribe('tick_count', 'pgtrickle_sse')");
            URI events = URI.create("http://127.0.0.1:" + httpPort + "/pgtrickle/events?stream_table=tick_count");
            CountDownLatch refreshed = new CountDownLatch(CLIENTS + 1);

            // one client first: HTTP, the SSE reader and the pool are up before the baseline
            listeners.add(open(http, events, refreshed).get(30, TimeUnit.SECONDS));
            awaitClients(http, httpPort, 1);
            System.gc();
            ProcStatus before = ProcStatus.of(pgtrickle.pid());

            long started = System.nanoTime();
            ProcStatus half = null;
            for (int i = 0; i < CLIENTS; i += BATCH) {
                if (i == CLIENTS / 2) {
                    awaitClients(http, httpPort, i + 1);
                    Thread.sleep(2_000);
                    half = ProcStatus.of(pgtrickle.pid());
                }
                List<CompletableFuture<Listener>> batch = new ArrayList<>();
                for (int j = i; j < Math.min(CLIENTS, i + BATCH); j++) {
                    batch.add(open(http, events, refreshed));
                }
                for (CompletableFuture<Listener> f : batch) {
                    listeners.add(f.get(30, TimeUnit.SECONDS));
                }
            }
            long connectMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started);
            awaitClients(http, httpPort, CLIENTS + 1);
            // a moment for threads started by the burst of requests to settle, as they would on an idle server
            Thread.sleep(2_000);
            ProcStatus connected = ProcStatus.of(pgtrickle.pid());

            s.execute("INSERT INTO ticks VALUES (1, 1)");
            long committed = System.nanoTime();
            boolean all = refreshed.await(WAIT.toSeconds(), TimeUnit.SECONDS);
            long fanOutMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - committed);
            ProcStatus afterEvent = ProcStatus.of(pgtrickle.pid());

            System.out.printf("SSE idle clients: %d connected in %d ms (batches of %d)%n", CLIENTS + 1, connectMs, BATCH);
            System.out.printf("  container threads: %d with 1 client, %d with %d, %d with %d (%+d), %d after the event%n", before.threads(),
                    half.threads(), CLIENTS / 2 + 1, connected.threads(), CLIENTS + 1, connected.threads() - before.threads(), afterEvent.threads());
            Map<String, Integer> grown = new java.util.TreeMap<>();
            connected.names().forEach((name, n) -> {
                int d = n - before.names().getOrDefault(name, 0);
                if (d != 0) {
                    grown.put(name, d);
                }
            });
            before.names().forEach((name, n) -> {
                if (!connected.names().containsKey(name)) {
                    grown.put(name, -n);
                }
            });
            System.out.printf("  threads that came and went, by name: %s%n", grown);
            System.out.printf("  container RSS: %d MB with 1 client, %d MB with %d, %d MB with %d (%+d MB, %.1f kB per client)%n",
                    before.rssKb() / 1024, half.rssKb() / 1024, CLIENTS / 2 + 1, connected.rssKb() / 1024, CLIENTS + 1, (connected.rssKb() - before.rssKb()) / 1024,
                    (connected.rssKb() - before.rssKb()) / (double) CLIENTS);
            System.out.printf("  every client heard the refresh: %s, the last %d ms after the commit%n", all, fanOutMs);

            assertTrue(all, (CLIENTS + 1 - refreshed.getCount()) + " of " + (CLIENTS + 1) + " clients heard the refresh");
            assertTrue(connected.threads() - before.threads() < 50, "threads grew with the clients: " + before + " -> " + connected);
            for (Listener l : listeners) {
                assertEquals(1, l.events.get(), "one refresh, one event");
            }
        } finally {
            for (Listener l : listeners) {
                if (l.subscription != null) {
                    l.subscription.cancel();
                }
            }
        }
    }

    private static CompletableFuture<Listener> open(HttpClient http, URI events, CountDownLatch refreshed) {
        Listener listener = new Listener(refreshed);
        HttpRequest request = HttpRequest.newBuilder(events).header("Accept", "text/event-stream")
                .header("Authorization", "Bearer tok-many").build();
        // sendAsync completes only when the body ends, which a stream does not: the status comes from the handler
        CompletableFuture<Listener> headers = new CompletableFuture<>();
        http.sendAsync(request, info -> {
            if (info.statusCode() == 200) {
                headers.complete(listener);
            } else {
                headers.completeExceptionally(new IllegalStateException("HTTP " + info.statusCode()));
            }
            return HttpResponse.BodySubscribers.fromLineSubscriber(listener);
        }).whenComplete((r, error) -> {
            if (error != null) {
                headers.completeExceptionally(error);
            }
        });
        return headers;
    }

    /** Waits until /metrics counts {@code n} SSE clients. */
    private static void awaitClients(HttpClient http, int httpPort, int n) throws Exception {
        long deadline = System.nanoTime() + WAIT.toNanos();
        double clients = -1;
        while (System.nanoTime() < deadline) {
            HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + httpPort + "/metrics")).build(),
                    HttpResponse.BodyHandlers.ofString());
            if (r.statusCode() == 200) {
                clients = PrometheusText.parse(r.body()).value("pgtrickle_sse_clients", Map.of());
                if (clients == n) {
                    return;
                }
            }
            Thread.sleep(100);
        }
        throw new AssertionError("pgtrickle_sse_clients is " + clients + ", not " + n);
    }
}
