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
import org.osgi.service.cm.ConfigurationEvent;
import org.osgi.service.cm.ConfigurationListener;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Pushes the settings found in {@code etc/pgtrickle.properties}, the environment and system
 * properties into ConfigAdmin. Only the properties a source actually sets are written; the other
 * properties of the same PID (from a FileInstall {@code .cfg}, say) are kept, and a PID none of whose
 * settings is set is not touched at all.
 *
 * <p>The settings are read once, when the bundle starts. Whenever one of our PIDs is updated by
 * someone else (FileInstall replaces a configuration whole when it reads a {@code .cfg} file, in no
 * particular order relative to this bundle), the settings are merged in again, so the documented
 * precedence holds: these sources beat {@code .cfg} files for the properties they set.
 *
 * <p>The directory holding {@code pgtrickle.properties} is the framework property
 * {@code pgtrickle.etc} (set by the launcher), else Karaf's {@code karaf.etc}, else {@code ./etc}.
 */
@Component(immediate = true, service = ConfigurationListener.class)
public class ConfigurationBridge implements ConfigurationListener {

    private static final Logger LOG = LoggerFactory.getLogger(ConfigurationBridge.class);

    @Reference
    private ConfigurationAdmin configurationAdmin;

    private Settings settings;
    private Map<String, Map<String, Object>> wanted;

    @Activate
    void activate(BundleContext context) throws IOException {
        Path file = etcDirectory(context).resolve("pgtrickle.properties");
        settings = Settings.load(file);
        wanted = byPid(settings);
        for (String pid : wanted.keySet()) {
            apply(pid);
        }
    }

    @Override
    public void configurationEvent(ConfigurationEvent event) {
        if (event.getType() == ConfigurationEvent.CM_UPDATED && event.getFactoryPid() == null && wanted.containsKey(event.getPid())) {
            try {
                apply(event.getPid());
            } catch (IOException e) {
                LOG.error("cannot merge settings into configuration {}: {}", event.getPid(), e.getMessage());
            }
        }
    }

    /** Merges our settings into the PID; a no-op (and no event) when they are already there. */
    private synchronized void apply(String pid) throws IOException {
        Configuration configuration = configurationAdmin.getConfiguration(pid, "?");
        Dictionary<String, Object> merged = copy(configuration.getProperties());
        wanted.get(pid).forEach(merged::put);
        if (configuration.updateIfDifferent(merged)) {
            LOG.info("configuration {} updated: {}", pid, describe(settings, pid));
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
