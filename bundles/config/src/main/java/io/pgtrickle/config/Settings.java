package io.pgtrickle.config;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.EnumMap;
import java.util.Iterator;
import java.util.Map;
import java.util.Optional;
import org.apache.commons.configuration2.Configuration;
import org.apache.commons.configuration2.MapConfiguration;
import org.apache.commons.configuration2.PropertiesConfiguration;
import org.apache.commons.configuration2.ex.ConfigurationException;
import org.apache.commons.configuration2.io.FileHandler;

/**
 * The effective container settings. Precedence, highest first: system properties ({@code -D}),
 * environment variables, {@code etc/pgtrickle.properties}, then each component's own default.
 * A key may be spelled in any case and with '.' or '_' (so {@code PGTRICKLE_JDBC_URL} works in the
 * properties file as well as in the environment). Values support Commons Configuration interpolation,
 * e.g. {@code ${env:HOME}} or {@code ${sys:user.name}}.
 */
public final class Settings {

    /** Where a value came from, for the log. */
    public enum Source {
        SYSTEM_PROPERTY("system property"), ENVIRONMENT("environment"), PROPERTIES_FILE("etc/pgtrickle.properties");

        private final String label;

        Source(String label) {
            this.label = label;
        }

        @Override
        public String toString() {
            return label;
        }
    }

    /** A value and its origin. */
    public record Value(String value, Source source, String spelledAs) {
    }

    private final Map<Setting, Value> values;

    private Settings(Map<Setting, Value> values) {
        this.values = values;
    }

    /**
     * @param propertiesFile {@code etc/pgtrickle.properties}; a missing file is not an error
     * @throws IllegalArgumentException naming the file when it exists but cannot be parsed
     */
    public static Settings load(Path propertiesFile, Map<String, String> environment, Map<?, ?> systemProperties) {
        Configuration file = new MapConfiguration(Map.of());
        if (propertiesFile != null && Files.isRegularFile(propertiesFile)) {
            try {
                // FileHandler rather than the fluent builders: those need commons-beanutils at run time
                PropertiesConfiguration p = new PropertiesConfiguration();
                new FileHandler(p).load(propertiesFile.toFile());
                file = p;
            } catch (ConfigurationException e) {
                throw new IllegalArgumentException("cannot read " + propertiesFile + ": " + e.getMessage(), e);
            }
        }
        Configuration sys = new MapConfiguration(stringKeys(systemProperties));
        Configuration env = new MapConfiguration(stringKeys(environment));
        Map<Setting, Value> found = new EnumMap<>(Setting.class);
        for (Setting s : Setting.values()) {
            Value v = find(s, sys, Source.SYSTEM_PROPERTY);
            if (v == null) {
                v = find(s, env, Source.ENVIRONMENT);
            }
            if (v == null) {
                v = find(s, file, Source.PROPERTIES_FILE);
            }
            if (v != null) {
                found.put(s, v);
            }
        }
        return new Settings(found);
    }

    private static Map<String, Object> stringKeys(Map<?, ?> map) {
        Map<String, Object> copy = new java.util.HashMap<>();
        map.forEach((k, v) -> {
            if (k instanceof String && v instanceof String) {
                copy.put((String) k, v);
            }
        });
        return copy;
    }

    /** Loads from the real environment and system properties. */
    public static Settings load(Path propertiesFile) {
        return load(propertiesFile, System.getenv(), System.getProperties());
    }

    private static Value find(Setting setting, Configuration config, Source source) {
        String wanted = Setting.normalize(setting.key());
        for (Iterator<String> keys = config.getKeys(); keys.hasNext(); ) {
            String key = keys.next();
            if (Setting.normalize(key).equals(wanted)) {
                // getString interpolates ${env:...}, ${sys:...} and references to other keys
                String value = config.getString(key);
                if (value != null && !value.isBlank()) {
                    return new Value(value.trim(), source, key);
                }
            }
        }
        return null;
    }

    public Optional<String> get(Setting setting) {
        return Optional.ofNullable(values.get(setting)).map(Value::value);
    }

    public Optional<Value> lookup(Setting setting) {
        return Optional.ofNullable(values.get(setting));
    }

    /** The value as it may appear in a log line: secrets masked. */
    public String describe(Setting setting) {
        Value v = values.get(setting);
        if (v == null) {
            return setting.key() + " (not set)";
        }
        return setting.key() + "=" + (setting.secret() ? "********" : v.value()) + " (from " + v.source() + " " + v.spelledAs() + ")";
    }
}
