package io.pgtrickle.launcher;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.function.Consumer;
import org.apache.felix.framework.util.Util;
import org.apache.felix.main.AutoProcessor;
import org.osgi.framework.Constants;

/**
 * The Felix framework properties: {@code etc/config.properties} with {@code ${...}} substituted the
 * way Felix's own launcher does it (from the file, then from system properties, so
 * {@code ${pgtrickle.home}} works), then {@code -Dfelix.*} and {@code -Dorg.osgi.framework.*}
 * overrides, again as in Felix's launcher. The properties the launcher depends on get a default here
 * as well, so a trimmed config.properties still yields a working layout.
 */
final class FrameworkConfig {

    /** Framework property telling the config bundle where {@code pgtrickle.properties} lives. */
    static final String ETC_PROPERTY = "pgtrickle.etc";

    /** Gogo's options; must stay out of the framework properties (see {@link #load}). */
    static final String GOSH_ARGS = "gosh.args";

    private FrameworkConfig() {
    }

    /**
     * @param warnings receives one line per setting that was ignored
     */
    static Map<String, String> load(Home home, Consumer<String> warnings) throws LauncherException {
        Path file = home.configProperties();
        if (!Files.isRegularFile(file)) {
            throw new LauncherException(home.display(file) + " is missing: the framework cannot be configured without it"
                    + " (restore it from the distribution)");
        }
        Properties raw = new Properties();
        try (InputStream in = Files.newInputStream(file)) {
            raw.load(in);
        } catch (IOException | IllegalArgumentException e) {
            throw new LauncherException("cannot read " + file + ": " + e.getMessage(), e);
        }
        Map<String, String> config = new HashMap<>();
        for (String name : raw.stringPropertyNames()) {
            try {
                config.put(name, Util.substVars(raw.getProperty(name), name, null, raw));
            } catch (IllegalArgumentException e) {
                throw new LauncherException(home.display(file) + ": " + name + ": " + e.getMessage(), e);
            }
        }
        for (String name : System.getProperties().stringPropertyNames()) {
            if (name.startsWith("felix.") || name.startsWith("org.osgi.framework.")) {
                config.put(name, System.getProperty(name));
            }
        }
        // A gosh.args framework property beats the system property the launcher sets for headless mode
        // (osgi_stack.md trap 11), which would silently leave a service without a console or a terminal
        // user without one. Console mode is chosen by --headless or -Dgosh.args only.
        if (config.remove(GOSH_ARGS) != null) {
            warnings.accept("ignoring " + GOSH_ARGS + " in " + home.display(file)
                    + ": use --headless, or -D" + GOSH_ARGS + "=... in JAVA_OPTS");
        }
        config.putIfAbsent(Constants.FRAMEWORK_STORAGE, home.data().resolve("felix-cache").toString());
        config.putIfAbsent(Constants.FRAMEWORK_STORAGE_CLEAN, Constants.FRAMEWORK_STORAGE_CLEAN_ONFIRSTINIT);
        config.putIfAbsent(AutoProcessor.AUTO_DEPLOY_DIR_PROPERTY, home.bundles().toString());
        config.putIfAbsent(AutoProcessor.AUTO_DEPLOY_ACTION_PROPERTY,
                AutoProcessor.AUTO_DEPLOY_INSTALL_VALUE + "," + AutoProcessor.AUTO_DEPLOY_START_VALUE);
        config.putIfAbsent(ETC_PROPERTY, home.etc().toString());
        return config;
    }
}
