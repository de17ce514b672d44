package io.pgtrickle.launcher;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Properties;

/**
 * Loads {@code etc/system.properties} into the JVM's system properties, for libraries that read only
 * system properties (slf4j-simple, which both the launcher and the framework's logging bundle use).
 * A property already given with {@code -D} wins over the file.
 */
final class SystemPropertyDefaults {

    private SystemPropertyDefaults() {
    }

    static final String COMMON_POOL_PARALLELISM = "java.util.concurrent.ForkJoinPool.common.parallelism";

    /**
     * The JDK gives its common pool one thread less than there are CPUs, and with fewer than two
     * CompletableFuture runs every asynchronous stage on a new thread of its own; the JDK's HttpClient
     * (the webhook sink) has several per request. On 2 CPUs a loopback webhook delivery cost 0.79 ms
     * that way and 0.47 ms with a pool of 2 (docs/benchmarks/subscriptions.md). Set only where the
     * default would be below 2, and only if nobody set it; before anything uses the pool.
     */
    static void keepACommonPool(int cpus) {
        if (cpus <= 2 && System.getProperty(COMMON_POOL_PARALLELISM) == null) {
            System.setProperty(COMMON_POOL_PARALLELISM, "2");
        }
    }

    static void apply(Path file) throws LauncherException {
        if (!Files.exists(file)) {
            return;
        }
        Properties defaults = new Properties();
        try (InputStream in = Files.newInputStream(file)) {
            defaults.load(in);
        } catch (IOException | IllegalArgumentException e) {
            throw new LauncherException("cannot read " + file + ": " + e.getMessage(), e);
        }
        for (String key : defaults.stringPropertyNames()) {
            if (System.getProperty(key) == null) {
                System.setProperty(key, defaults.getProperty(key));
            }
        }
    }
}
