package io.pgtrickle.config;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Collections;
import java.util.Dictionary;
import java.util.Hashtable;
import java.util.LinkedHashMap;
import java.util.Map;
import org.osgi.framework.BundleContext;
import org.osgi.service.cm.Configuration;
import org.osgi.service.cm.ConfigurationAdmin;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Pushes the settings found in {@code etc/pgtrickle.properties}, the environment and system
 * properties into ConfigAdmin, once, when the bundle starts. Only the properties a source actually
 * sets are written; the other properties of the same PID (from a FileInstall {@code .cfg}, say) are
 * kept, and a PID none of whose settings is set is not touched at all.
 *
 * <p>The directory holding {@code pgtrickle.properties} is the framework property
 * {@code pgtrickle.etc} (set by the launcher), else Karaf's {@code karaf.etc}, else {@code ./etc}.
 */
@Component(immediate = true)
public class ConfigurationBridge {

    private static final Logger LOG = LoggerFactory.getLogger(ConfigurationBridge.class);

    @Reference
    private ConfigurationAdmin configurationAdmin;

    @Activate
    void activate(BundleContext context) throws IOException {
        Path file = etcDirectory(context).resolve("pgtrickle.properties");
        Settings settings = Settings.load(file);
        for (Map.Entry<String, Map<String, Object>> pid : byPid(settings).entrySet()) {
            Configuration configuration = configurationAdmin.getConfiguration(pid.getKey(), "?");
            Dictionary<String, Object> merged = copy(configuration.getProperties());
            pid.getValue().forEach(merged::put);
            if (configuration.updateIfDifferent(merged)) {
                LOG.info("configuration {} updated: {}", pid.getKey(), describe(settings, pid.getKey()));
            }
        }
    }

    static Map<String, Map<String, Object>> byPid(Settings settings) {
        Map<String, Map<String, Object>> result = new LinkedHashMap<>();
        for (Setting s : Setting.all()) {
            if (s.pid().isEmpty()) {
                continue;
            }
            settings.get(s).ifPresent(v -> result.computeIfAbsent(s.pid().get(), k -> new LinkedHashMap<>()).put(s.property(), v));
        }
        return result;
    }

    private static String describe(Settings settings, String pid) {
        StringBuilder sb = new StringBuilder();
        for (Setting s : Setting.all()) {
            if (s.pid().filter(pid::equals).isPresent() && settings.get(s).isPresent()) {
                sb.append(sb.length() == 0 ? "" : ", ").append(settings.describe(s));
            }
        }
        return sb.toString();
    }

    private static Dictionary<String, Object> copy(Dictionary<String, Object> properties) {
        Hashtable<String, Object> copy = new Hashtable<>();
        if (properties != null) {
            for (String key : Collections.list(properties.keys())) {
                copy.put(key, properties.get(key));
            }
        }
        return copy;
    }

    static Path etcDirectory(BundleContext context) {
        String etc = context.getProperty("pgtrickle.etc");
        if (etc == null) {
            etc = context.getProperty("karaf.etc");
        }
        return Path.of(etc != null ? etc : "etc");
    }
}
