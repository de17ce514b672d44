package io.pgtrickle.launcher;

import io.pgtrickle.config.Setting;
import io.pgtrickle.config.Settings;
import java.util.Locale;
import java.util.Map;

/**
 * The HTTP server's settings ({@code pgtrickle.http.*}), turned into the framework properties Felix
 * HTTP Jetty reads when it starts. They are framework properties rather than a ConfigAdmin
 * configuration because Jetty opens its port as soon as its bundle starts, before the config bundle
 * has pushed anything: a configuration arriving later would first bind Jetty's own default, 8080.
 */
record HttpSettings(boolean enabled, String host, int port) {

    static final String DEFAULT_HOST = "127.0.0.1";
    static final int DEFAULT_PORT = 8181;

    /** Felix HTTP Jetty's framework properties. */
    static final String ENABLE_PROPERTY = "org.apache.felix.http.enable";
    static final String HOST_PROPERTY = "org.apache.felix.http.host";
    static final String PORT_PROPERTY = "org.osgi.service.http.port";

    static HttpSettings from(Settings settings) throws LauncherException {
        boolean enabled = true;
        String flag = settings.get(Setting.HTTP_ENABLED).orElse("true").toLowerCase(Locale.ROOT);
        if (flag.equals("false")) {
            enabled = false;
        } else if (!flag.equals("true")) {
            throw new LauncherException(settings.describe(Setting.HTTP_ENABLED) + ": not true or false");
        }
        int port = DEFAULT_PORT;
        String portText = settings.get(Setting.HTTP_PORT).orElse(null);
        if (portText != null) {
            try {
                port = Integer.parseInt(portText);
            } catch (NumberFormatException e) {
                port = -1;
            }
            if (port < 0 || port > 65535) {
                throw new LauncherException(settings.describe(Setting.HTTP_PORT) + ": not a port number (0 to 65535; 0 turns HTTP off)");
            }
        }
        String host = settings.get(Setting.HTTP_HOST).orElse(DEFAULT_HOST);
        return new HttpSettings(enabled && port != 0, host, port);
    }

    /** The properties to add to the framework's; HTTP off still names the port, so Jetty never binds 8080. */
    Map<String, String> frameworkProperties() {
        return Map.of(ENABLE_PROPERTY, Boolean.toString(enabled), HOST_PROPERTY, host, PORT_PROPERTY, Integer.toString(port));
    }

    /** The launcher's line about it. */
    String describe() {
        return enabled ? "HTTP at http://" + (host.contains(":") ? "[" + host + "]" : host) + ":" + port + "/"
                : "HTTP off (" + Setting.HTTP_PORT.key() + "=0 or " + Setting.HTTP_ENABLED.key() + "=false)";
    }
}
