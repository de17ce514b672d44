package io.pgtrickle.bench;

import static io.pgtrickle.bench.BenchOutput.log;
import static io.pgtrickle.bench.BenchOutput.ms;
import static io.pgtrickle.bench.BenchOutput.pct;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.Flow;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;

/**
 * Server-sent events fan-out: commit on a source → the refresh's event received by 1, 100 and 1,000
 * SSE clients on loopback, side by side with NOTIFY (a LISTEN client on the same stream table's
 * channel, hearing the same refreshes) as the baseline, in one run.
 *
 * <p>Unlike the other benchmarks this one needs the container: it copies the built distribution
 * ({@code distribution/target/pgtrickle-<version>}), starts {@code bin/pgtrickle --headless} on its
 * embedded PostgreSQL with a token for role postgres, and talks to it over JDBC and HTTP as the
 * distribution's tests do. Run with {@code mvn -B -f itests/bench/pom.xml -Pbench-sse verify}.
 */
public final class SseBenchmark {

    private static final String TOKEN = "tok-bench";
    /** Clients connected at once: a burst of requests grows Jetty's pool, which is not what is measured. */
    private static final int CONNECT_BATCH = 5;

    private final List<Integer> clientCounts;
    private final int writes;
    private final int warmup;
    private final int pauseMs;
    private final Path distribution;
    private final Path report;
    private final String command;

    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(30)).build();
    private Process container;
    private int httpPort;
    private int dbPort;

    private SseBenchmark() {
        clientCounts = Stream.of(System.getProperty("bench.sse.clients", "1,100,1000").split(",")).map(String::trim)
                .map(Integer::parseInt).toList();
        writes = Integer.getInteger("bench.sse.writes", 40);
        warmup = Integer.getInteger("bench.sse.warmup", 5);
        pauseMs = Integer.getInteger("bench.sse.pause", 250);
        distribution = Path.of(System.getProperty("bench.sse.dist", "distribution/target/pgtrickle-0.33.0"));
        report = Path.of(System.getProperty("bench.sse.report", "docs/benchmarks/sse.md"));
        command = System.getProperty("bench.sse.command", "mvn -B -f itests/bench/pom.xml -Pbench-sse verify");
    }

    public static void main(String[] args) throws Exception {
        new SseBenchmark().run();
        System.exit(0);
    }

    /** One SSE client: stamps the arrival of each complete refresh event (the blank line that dispatches it). */
    static final class Client implements Flow.Subscriber<String> {
        final ConcurrentLinkedQueue<Long> arrivals = new ConcurrentLinkedQueue<>();
        final AtomicLong total;
        final CompletableFuture<Client> connected = new CompletableFuture<>();
        volatile Flow.Subscription subscription;
        private boolean inRefresh; // the client's delivery thread only

        Client(AtomicLong total) {
            this.total = total;
        }

        @Override
        public void onSubscribe(Flow.Subscription s) {
            subscription = s;
            s.request(Long.MAX_VALUE);
        }

        @Override
        public void onNext(String line) {
            if (line.equals("event: refresh")) {
                inRefresh = true;
            } else if (line.isEmpty() && inRefresh) {
                inRefresh = false;
                arrivals.add(System.nanoTime());
                total.incrementAndGet();
            }
        }

        @Override
        public void onError(Throwable t) {
            connected.completeExceptionally(t);
        }

        @Override
        public void onComplete() {
        }

        void close() {
            if (subscription != null) {
                subscription.cancel();
            }
        }
    }

    /** One cell's figures. */
    record Cell(int clients, int writes, List<Double> sse, List<Double> lastClient, List<Double> listen, int missing,
                int threadsBefore, int threadsConnected, long rssBeforeKb, long rssConnectedKb, long connectMs) {
    }

    private void run() throws Exception {
        Instant startedAt = Instant.now().truncatedTo(java.time.temporal.ChronoUnit.SECONDS);
        long t0 = System.nanoTime();
        Path home = copy(distribution);
        dbPort = freePort();
        httpPort = freePort();
        Files.writeString(home.resolve("etc/io.pgtrickle.http.events.config"), "tokens=[\"postgres:" + TOKEN + "\"]\n");
        List<Cell> cells = new ArrayList<>();
        String pgVersion;
        try {
            start(home);
            try (Connection c = DriverManager.getConnection("jdbc:postgresql://localhost:" + dbPort + "/pgtrickle", "postgres", null);
                 Statement s = c.createStatement()) {
                c.setAutoCommit(true);
                pgVersion = one(s, "SHOW server_version");
                s.execute("CREATE TABLE sse_src (id bigint PRIMARY KEY, w int)");
                s.execute("SELECT pgtrickle.create_stream_table('sse_st', 'SELECT id, w FROM sse_src')");
                // one notification per refresh: the measured latency is the path's, not a coalescing window's
                s.execute("SELECT pgtrickle.alter_stream_table('sse_st', notify_coalesce_ms => 0)");
                s.execute("SELECT pgtrickle.subscribe('sse_st', 'pgtrickle_sse')");
                long id = 0;
                for (int n : clientCounts) {
                    Cell cell = cell(s, n, id);
                    id += writes;
                    cells.add(cell);
                }
            }
        } finally {
            stop();
        }
        double minutes = (System.nanoTime() - t0) / 60e9;
        BenchOutput.publish(markdown(cells, startedAt, pgVersion, minutes), report, minutes);
    }

    private Cell cell(Statement s, int n, long firstId) throws Exception {
        log("cell: %d SSE client(s)", n);
        ProcStatus before = ProcStatus.of(container.pid());
        AtomicLong total = new AtomicLong();
        List<Client> clients = new ArrayList<>();
        long connectStart = System.nanoTime();
        for (int i = 0; i < n; i += CONNECT_BATCH) {
            List<Client> batch = new ArrayList<>();
            for (int j = i; j < Math.min(n, i + CONNECT_BATCH); j++) {
                batch.add(open(total));
            }
            for (Client c : batch) {
                clients.add(c.connected.get(30, TimeUnit.SECONDS));
            }
        }
        long connectMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - connectStart);
        awaitClients(n);
        Thread.sleep(1_000);
        ProcStatus connected = ProcStatus.of(container.pid());

        List<Double> sse = new ArrayList<>();
        List<Double> last = new ArrayList<>();
        List<Double> notify = new ArrayList<>();
        int missing = 0;
        try (Connection listen = DriverManager.getConnection("jdbc:postgresql://localhost:" + dbPort + "/pgtrickle", "postgres", null)) {
            try (Statement l = listen.createStatement()) {
                l.execute("LISTEN pgtrickle_sse");
            }
            PGConnection pg = listen.unwrap(PGConnection.class);
            ConcurrentLinkedQueue<Long> heard = new ConcurrentLinkedQueue<>();
            AtomicBoolean listening = new AtomicBoolean(true);
            Thread listener = new Thread(() -> {
                try {
                    while (listening.get()) {
                        PGNotification[] got = pg.getNotifications(50);
                        long at = System.nanoTime();
                        if (got != null) {
                            for (int i = 0; i < got.length; i++) {
                                heard.add(at);
                            }
                        }
                    }
                } catch (Exception e) {
                    if (listening.get()) {
                        log("LISTEN client failed: %s", e);
                    }
                }
            }, "bench-listen");
            listener.setDaemon(true);
            listener.start();

            for (int w = 0; w < writes; w++) {
                long expected = (long) n * (w + 1);
                s.execute("INSERT INTO sse_src VALUES (" + (firstId + w) + ", " + w + ")");
                long ack = System.nanoTime();
                long deadline = ack + TimeUnit.SECONDS.toNanos(10);
                while ((total.get() < expected || heard.isEmpty()) && System.nanoTime() < deadline) {
                    Thread.sleep(1);
                }
                Long notified = heard.poll();
                boolean measured = w >= warmup;
                if (measured && notified != null) {
                    notify.add((notified - ack) / 1e6);
                }
                long latest = Long.MIN_VALUE;
                for (Client c : clients) {
                    Long at = c.arrivals.poll();
                    if (at == null) {
                        if (measured) {
                            missing++;
                        }
                        continue;
                    }
                    latest = Math.max(latest, at);
                    if (measured) {
                        sse.add((at - ack) / 1e6);
                    }
                }
                if (measured && latest != Long.MIN_VALUE) {
                    last.add((latest - ack) / 1e6);
                }
                // a pause, so that each commit is refreshed and announced on its own; with a random part, so
                // that commits fall anywhere in the SSE reader's 100 ms poll cycle (a fixed cycle would keep one phase)
                Thread.sleep(pauseMs + java.util.concurrent.ThreadLocalRandom.current().nextInt(100));
                total.set((long) n * (w + 1));
                heard.clear();
                clients.forEach(c -> c.arrivals.clear());
            }
            listening.set(false);
            listener.join(1_000);
        } finally {
            clients.forEach(Client::close);
        }
        log("  %d clients: SSE p50 %s ms p99 %s ms, last client p50 %s ms, NOTIFY p50 %s ms, %d missing", n, ms(pct(sse, 50)),
                ms(pct(sse, 99)), ms(pct(last, 50)), ms(pct(notify, 50)), missing);
        awaitClients(0);
        return new Cell(n, writes - warmup, sse, last, notify, missing, before.threads(), connected.threads(), before.rssKb(),
                connected.rssKb(), connectMs);
    }

    private Client open(AtomicLong total) {
        Client client = new Client(total);
        HttpRequest request = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + httpPort + "/pgtrickle/events?stream_table=sse_st"))
                .header("Accept", "text/event-stream").header("Authorization", "Bearer " + TOKEN).build();
        // sendAsync completes only when the body ends, which a stream does not: the handler sees the status
        http.sendAsync(request, info -> {
            if (info.statusCode() == 200) {
                client.connected.complete(client);
            } else {
                client.connected.completeExceptionally(new IllegalStateException("HTTP " + info.statusCode()));
            }
            return HttpResponse.BodySubscribers.fromLineSubscriber(client);
        }).whenComplete((r, e) -> {
            if (e != null) {
                client.connected.completeExceptionally(e);
            }
        });
        return client;
    }

    /** Waits until /metrics counts {@code n} SSE clients (those gone are noticed at the next keep-alive, 15 s at most). */
    private void awaitClients(int n) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        String seen = "";
        while (System.nanoTime() < deadline) {
            HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + httpPort + "/metrics")).build(),
                    HttpResponse.BodyHandlers.ofString());
            for (String line : r.body().split("\n")) {
                if (line.startsWith("pgtrickle_sse_clients ")) {
                    seen = line;
                    if (Double.parseDouble(line.substring(line.indexOf(' ') + 1)) == n) {
                        return;
                    }
                }
            }
            Thread.sleep(200);
        }
        throw new IllegalStateException("the container does not count " + n + " SSE clients: " + seen);
    }

    private String markdown(List<Cell> cells, Instant startedAt, String pgVersion, double minutes) {
        StringBuilder b = new StringBuilder();
        BenchOutput.title(b, "SSE fan-out benchmark: commit → event received, 1 to 1,000 clients", SseBenchmark.class, startedAt);
        b.append("## Reproduce\n\nFrom the repository root, after `mvn -B install -DskipTests` (which builds and unpacks the distribution):\n\n```\n")
                .append(command).append("\n```\n\n");
        b.append(String.format(Locale.ROOT, "Knobs (`-D...`): `bench.sse.clients` (default 1,100,1000; this run %s), `bench.sse.writes` "
                + "(commits per cell, 40; %d), `bench.sse.warmup` (commits not measured, 5; %d), `bench.sse.pause` (ms after each "
                + "commit's events, 250; %d), `bench.sse.dist` (the unpacked distribution). Only `-Pbench-sse` runs it.\n\n",
                clientCounts.stream().map(String::valueOf).reduce((x, y) -> x + "," + y).orElse(""), writes, warmup, pauseMs));
        b.append("## Machine and setup\n\n");
        b.append(String.format(Locale.ROOT, "- %d cores as seen by the JVM: a shared, **noisy** VM; the container (Felix, Jetty, the "
                + "scheduler), its embedded PostgreSQL %s, and this program's clients all share them. Compare within the run. Java %s.%n",
                Runtime.getRuntime().availableProcessors(), pgVersion, System.getProperty("java.version")));
        b.append("- The distribution as shipped (`bin/pgtrickle --headless`, embedded PostgreSQL, defaults: scheduler tick 1 s, "
                + "wake 10 ms; the SSE reader reads the outbox at each NOTIFY on its channel, and every 100 ms), with one token for role `postgres`.\n");
        b.append(String.format(Locale.ROOT, "- Whole run %.1f min.%n%n", minutes));
        b.append("## Method\n\n");
        b.append("One source `sse_src(id bigint PK, w int)`, one stream table `SELECT id, w FROM sse_src` (schedule `calculated`, "
                + "the default), `notify_coalesce_ms` 0, subscribed to channel `pgtrickle_sse`: each refresh that changes it sends "
                + "`NOTIFY pgtrickle_sse` and queues one outbox row for the SSE reader, in the refresh's transaction. Per cell, N "
                + "clients connect to `/pgtrickle/events?stream_table=sse_st` (JDK HttpClient, asynchronous, one HTTP/1.1 connection "
                + "each, " + CONNECT_BATCH + " at a time), plus one pgjdbc connection `LISTEN`ing on `pgtrickle_sse` in "
                + "`getNotifications(50)`. Then single-row INSERTs in autocommit, one at a time: after each, the program waits until "
                + "every client and the LISTEN connection have the event (10 s at most), then pauses (`bench.sse.pause` plus a random "
                + "0 to 100 ms, so that commits fall anywhere in the SSE reader's poll interval), so that each commit is "
                + "refreshed and announced on its own. **Latency = arrival − the client-side acknowledgement of the commit**, on one "
                + "clock (System.nanoTime) in one JVM; an SSE event arrives at the blank line that dispatches it. The first "
                + "commits of each cell are warm-up. *SSE, every client*: one sample per client per commit; *last client*: per commit, "
                + "the client that heard it last (the fan-out's end).\n\n");
        b.append("## Results\n\n");
        b.append("| SSE clients | commits measured | SSE every client: p50 ms | p99 ms | last client: p50 ms | p99 ms | NOTIFY (LISTEN): p50 ms "
                + "| p99 ms | events missing | container threads: before → connected | container RSS MB: before → connected | connect time s |\n");
        b.append("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (Cell c : cells) {
            b.append(String.format(Locale.ROOT, "| %,d | %d | %s | %s | %s | %s | %s | %s | %d | %d → %d | %d → %d | %.1f |%n", c.clients(),
                    c.writes(), ms(pct(c.sse(), 50)), ms(pct(c.sse(), 99)), ms(pct(c.lastClient(), 50)), ms(pct(c.lastClient(), 99)),
                    ms(pct(c.listen(), 50)), ms(pct(c.listen(), 99)), c.missing(), c.threadsBefore(), c.threadsConnected(),
                    c.rssBeforeKb() / 1024, c.rssConnectedKb() / 1024, c.connectMs() / 1000.0));
        }
        b.append("\n## Reading it\n\n");
        b.append("- Both paths start at the same refresh: the scheduler's wake notices the commit (within its 10 ms interval), the "
                + "refresh commits its NOTIFY and its outbox row together. NOTIFY reaches the LISTEN connection at that commit; the SSE "
                + "reader, LISTENing on the same channel while clients are connected, wakes at that NOTIFY and reads the outbox row "
                + "(one query for every stream table any client watches; it also polls every 100 ms, for events whose NOTIFY it "
                + "missed), so SSE adds that query and the write to each socket. With a thousand clients the write to every socket, "
                + "on the two cores the clients share, is most of the difference.\n");
        b.append("- The SSE figures include this program's side: a thousand connections read by the JDK HttpClient on the same "
                + "two cores as the container and PostgreSQL.\n");
        b.append("- Threads: an idle stream holds none (asynchronous servlet, one reader thread per container); see also "
                + "`SseIdleClientsIT` and docs/live.md.\n");
        return b.toString();
    }

    // --- the container ---

    private void start(Path home) throws Exception {
        ProcessBuilder pb = new ProcessBuilder(home.resolve("bin/pgtrickle").toString(), "--headless");
        pb.environment().keySet().removeIf(k -> k.startsWith("PGTRICKLE_") || k.equals("JAVA_OPTS"));
        pb.environment().put("JAVA_HOME", System.getProperty("java.home"));
        pb.environment().put("PGTRICKLE_EMBEDDED_PORT", Integer.toString(dbPort));
        pb.environment().put("PGTRICKLE_HTTP_PORT", Integer.toString(httpPort));
        pb.redirectErrorStream(true);
        pb.redirectOutput(home.resolve("pgtrickle.log").toFile());
        pb.redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
        log("starting %s (log %s)", home, home.resolve("pgtrickle.log"));
        container = pb.start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(180);
        while (true) {
            if (!container.isAlive()) {
                throw new IllegalStateException("pgtrickle exited: " + Files.readString(home.resolve("pgtrickle.log")));
            }
            try {
                HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + httpPort + "/health"))
                        .timeout(Duration.ofSeconds(10)).build(), HttpResponse.BodyHandlers.ofString());
                if (r.statusCode() == 200) {
                    break;
                }
            } catch (IOException e) {
                // not listening yet
            }
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("pgtrickle not healthy within 180 s: " + Files.readString(home.resolve("pgtrickle.log")));
            }
            Thread.sleep(500);
        }
        log("pgtrickle is up: HTTP %d, PostgreSQL %d", httpPort, dbPort);
    }

    private void stop() throws InterruptedException {
        if (container != null && container.isAlive()) {
            container.destroy();
            if (!container.waitFor(60, TimeUnit.SECONDS)) {
                container.destroyForcibly();
            }
        }
    }

    private static Path copy(Path dist) throws IOException {
        if (!Files.isExecutable(dist.resolve("bin/pgtrickle"))) {
            throw new IllegalStateException(dist.toAbsolutePath() + " is not an unpacked distribution: build it first (mvn -B install -DskipTests)");
        }
        Path home = Files.createTempDirectory("pgtrickle-sse-bench").resolve("pgtrickle");
        try (Stream<Path> files = Files.walk(dist)) {
            for (Path p : (Iterable<Path>) files::iterator) {
                Path to = home.resolve(dist.relativize(p).toString());
                if (Files.isDirectory(p)) {
                    Files.createDirectories(to);
                } else if (!dist.relativize(p).startsWith("data")) {
                    Files.copy(p, to);
                }
            }
        }
        home.resolve("bin/pgtrickle").toFile().setExecutable(true);
        return home;
    }

    private static int freePort() {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static String one(Statement s, String sql) throws Exception {
        try (ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getString(1);
        }
    }

    /** Threads and VmRSS (kB) of a process, from /proc/PID/status. */
    record ProcStatus(int threads, long rssKb) {
        static ProcStatus of(long pid) throws IOException {
            int threads = -1;
            long rss = -1;
            for (String line : Files.readAllLines(Path.of("/proc/" + pid + "/status"))) {
                if (line.startsWith("Threads:")) {
                    threads = Integer.parseInt(line.substring(8).trim());
                } else if (line.startsWith("VmRSS:")) {
                    rss = Long.parseLong(line.substring(6).trim().split("\\s+")[0]);
                }
            }
            return new ProcStatus(threads, rss);
        }
    }
}
