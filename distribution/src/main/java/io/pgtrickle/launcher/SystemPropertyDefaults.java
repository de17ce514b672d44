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
