package io.pgtrickle.launcher;

import static org.junit.jupiter.api.Assertions.fail;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * {@code bin/pgtrickle} run as a real process, the way an operator or a service manager runs it. Its
 * stdout and stderr are collected line by line; waits are bounded and a failed wait shows the whole
 * transcript.
 */
final class PgTrickleProcess implements AutoCloseable {

    private final Process process;
    private final Path home;
    private final List<String> stdout = new ArrayList<>();  // guarded by this
    private final List<String> stderr = new ArrayList<>();  // guarded by this
    private final List<String> transcript = new ArrayList<>();  // guarded by this
    private final Thread[] readers;

    private PgTrickleProcess(Process process, Path home) {
        this.process = process;
        this.home = home;
        this.readers = new Thread[] {reader(process.getInputStream(), stdout, "out"), reader(process.getErrorStream(), stderr, "err")};
    }

    /** Starts {@code home/bin/pgtrickle} with a clean environment: no PGTRICKLE_* or JAVA_OPTS from the build's. */
    static PgTrickleProcess start(Path home, Map<String, String> environment, String... args) {
        List<String> command = new ArrayList<>();
        command.add(home.resolve("bin/pgtrickle").toString());
        command.addAll(List.of(args));
        return start(home, command, environment);
    }

    /**
     * Starts {@code home/bin/pgtrickle --headless} on its embedded PostgreSQL at {@code port} (plus
     * {@code environment}) and waits until every bundle is active and the catalog is migrated: the
     * distribution as a user runs it, ready for SQL at {@link #jdbcUrl(int)}.
     */
    static PgTrickleProcess startReady(Path home, int port, Map<String, String> environment) throws Exception {
        Map<String, String> env = new java.util.HashMap<>(environment);
        env.put("PGTRICKLE_EMBEDDED_PORT", Integer.toString(port));
        PgTrickleProcess pgtrickle = start(home, env, "--headless");
        try {
            pgtrickle.awaitLine(ExistingDatabaseIT.allActive(), ExistingDatabaseIT.STARTUP);
            pgtrickle.awaitLine(ExistingDatabaseIT.catalogLine(), ExistingDatabaseIT.STARTUP);
        } catch (Exception | Error e) {
            pgtrickle.close();
            throw e;
        }
        return pgtrickle;
    }

    /** The embedded database's JDBC URL. */
    static String jdbcUrl(int port) {
        return "jdbc:postgresql://localhost:" + port + "/pgtrickle";
    }

    /** Starts an arbitrary command (e.g. java without bin/pgtrickle) in the same harness. */
    static PgTrickleProcess start(Path home, List<String> command, Map<String, String> environment) {
        return start(home, command, environment, ProcessBuilder.Redirect.from(new File("/dev/null")));
    }

    /**
     * Starts {@code home/bin/pgtrickle} with Gogo's interactive console reading what {@link #type} sends.
     * stdin is a pipe, not a terminal, so the launcher alone would run headless; {@code -Dgosh.args=}
     * (no {@code --nointeractive}) makes the console interactive all the same, as a terminal would.
     */
    static PgTrickleProcess startWithConsole(Path home, Map<String, String> environment) {
        Map<String, String> env = new java.util.HashMap<>(environment);
        env.put("JAVA_OPTS", "-Dgosh.args=");
        return start(home, List.of(home.resolve("bin/pgtrickle").toString()), env, ProcessBuilder.Redirect.PIPE);
    }

    private static PgTrickleProcess start(Path home, List<String> command, Map<String, String> environment,
            ProcessBuilder.Redirect input) {
        ProcessBuilder builder = new ProcessBuilder(command);
        builder.environment().keySet().removeIf(k -> k.startsWith("PGTRICKLE_") || k.equals("JAVA_OPTS"));
        // the same JDK as the test, not whatever java is on the PATH
        builder.environment().put("JAVA_HOME", System.getProperty("java.home"));
        builder.environment().putAll(environment);
        // HTTP's default port, 8181, is one port for every test and every other process on the machine: each
        // run gets a free one unless the test chooses
        builder.environment().putIfAbsent("PGTRICKLE_HTTP_PORT", Integer.toString(Distribution.freePort()));
        // not the home: the script must find its home by itself
        builder.directory(home.getParent().toFile());
        builder.redirectInput(input);
        try {
            return new PgTrickleProcess(builder.start(), home);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Types one line at the console of a process from {@link #startWithConsole}. */
    void type(String line) throws IOException {
        process.getOutputStream().write((line + "\n").getBytes(StandardCharsets.UTF_8));
        process.getOutputStream().flush();
    }

    private Thread reader(InputStream stream, List<String> lines, String name) {
        Thread t = new Thread(() -> {
            try (BufferedReader in = new BufferedReader(new InputStreamReader(stream, StandardCharsets.UTF_8))) {
                for (String line = in.readLine(); line != null; line = in.readLine()) {
                    synchronized (this) {
                        lines.add(line);
                        transcript.add(name + "| " + line);
                        notifyAll();
                    }
                }
            } catch (IOException e) {
                // the process is gone; what was read is kept
            } finally {
                synchronized (this) {
                    notifyAll();
                }
            }
        }, "pgtrickle-" + name);
        t.setDaemon(true);
        t.start();
        return t;
    }

    /** Waits (at most {@code timeout}) for a line of stdout or stderr matching {@code regex}; returns it. */
    String awaitLine(String regex, Duration timeout) throws InterruptedException {
        Pattern pattern = Pattern.compile(regex);
        long deadline = System.nanoTime() + timeout.toNanos();
        synchronized (this) {
            while (true) {
                for (String line : transcript) {
                    String text = line.substring(5);
                    if (pattern.matcher(text).find()) {
                        return text;
                    }
                }
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    fail("no line matching /" + regex + "/ within " + timeout.toSeconds() + " s" + dump());
                }
                if (!process.isAlive() && !readersAlive()) {
                    fail("pgtrickle exited with status " + process.exitValue() + " before printing a line matching /"
                            + regex + "/" + dump());
                }
                TimeUnit.NANOSECONDS.timedWait(this, Math.min(left, TimeUnit.MILLISECONDS.toNanos(500)));
            }
        }
    }

    private boolean readersAlive() {
        return readers[0].isAlive() || readers[1].isAlive();
    }

    /**
     * SIGTERM, then a bounded wait for the exit status. Sent through the ProcessHandle: Process.destroy
     * sends the same signal but also closes our end of the pipes at once, which would hide everything
     * pgtrickle prints while it shuts down.
     */
    int terminate(Duration bound) throws InterruptedException {
        process.toHandle().destroy();
        return awaitExit(bound);
    }

    int awaitExit(Duration bound) throws InterruptedException {
        if (!process.waitFor(bound.toMillis(), TimeUnit.MILLISECONDS)) {
            process.destroyForcibly();
            fail("pgtrickle did not exit within " + bound.toSeconds() + " s" + dump());
        }
        for (Thread reader : readers) {
            reader.join(TimeUnit.SECONDS.toMillis(10));
        }
        return process.exitValue();
    }

    /** The JVM's process id (bin/pgtrickle execs java, so the script's process is the JVM). */
    long pid() {
        return process.pid();
    }

    synchronized List<String> stdout() {
        return List.copyOf(stdout);
    }

    synchronized List<String> stderr() {
        return List.copyOf(stderr);
    }

    synchronized List<String> allLines() {
        return transcript.stream().map(l -> l.substring(5)).toList();
    }

    synchronized String dump() {
        return "\n--- pgtrickle output ---\n" + String.join("\n", transcript) + "\n--- end ---";
    }

    /** Another pgtrickle process may legitimately be running on this home (a test of the refusal, say). */
    private static boolean ownedByARunningPgtrickle(Path dataDirectory) throws IOException {
        Path lockFile = dataDirectory.resolve(EmbeddedDatabase.LOCK_FILE);
        if (!Files.exists(lockFile)) {
            return false;
        }
        try (FileChannel channel = FileChannel.open(lockFile, StandardOpenOption.WRITE)) {
            FileLock lock = channel.tryLock();
            if (lock == null) {
                return true;
            }
            lock.release();
            return false;
        }
    }

    /**
     * Leaves nothing running: a test that failed half-way may leave pgtrickle up, and pgtrickle killed
     * hard leaves its embedded PostgreSQL running without an owner, which is stopped here with the
     * distribution's own pg_ctl.
     */
    @Override
    public void close() throws Exception {
        if (process.isAlive()) {
            process.destroy();
            if (!process.waitFor(60, TimeUnit.SECONDS)) {
                process.destroyForcibly();
                process.waitFor(10, TimeUnit.SECONDS);
            }
        }
        stopLeftoverPostgres(home.resolve("data/postgres"));
    }

    static void stopLeftoverPostgres(Path dataDirectory) throws IOException, InterruptedException {
        if (!Files.exists(dataDirectory.resolve("postmaster.pid")) || ownedByARunningPgtrickle(dataDirectory)) {
            return;
        }
        Path binaries = dataDirectory.getParent().resolve("postgres-binaries");
        if (!Files.isDirectory(binaries)) {
            return;
        }
        try (Stream<Path> found = Files.find(binaries, 3, (p, a) -> p.endsWith("bin/pg_ctl"))) {
            for (Path pgCtl : (Iterable<Path>) found::iterator) {
                Process stop = new ProcessBuilder(pgCtl.toString(), "-D", dataDirectory.toString(), "stop", "-m", "immediate", "-w")
                        .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
                stop.waitFor(30, TimeUnit.SECONDS);
            }
        }
    }
}
