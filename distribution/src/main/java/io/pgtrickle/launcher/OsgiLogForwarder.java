package io.pgtrickle.launcher;

import java.lang.reflect.InvocationHandler;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;
import java.util.List;
import java.util.Locale;
import java.util.regex.Pattern;
import org.osgi.framework.Bundle;
import org.osgi.framework.BundleContext;
import org.osgi.framework.InvalidSyntaxException;
import org.osgi.framework.ServiceEvent;
import org.osgi.framework.ServiceListener;
import org.osgi.framework.ServiceReference;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Prints what bundles log through the OSGi Log Service. Felix SCR and FileInstall log there rather than
 * to the console as soon as a Log Service exists, and the distribution must have one (metatype needs
 * it), but Felix's implementation only keeps entries in memory. Without this, a component that fails
 * to activate or a jar in deploy/ that cannot be installed would fail silently.
 *
 * <p>Entries at or above {@value #LEVEL_PROPERTY} (default {@code warn}) go to slf4j-simple, so they look
 * like every other log line, under the logger name of the bundle that logged them.
 *
 * <p>The launcher's class path has no {@code org.osgi.service.log}: that package comes from the log
 * bundle. So the listener is a dynamic proxy of the bundle's own {@code LogListener} interface, and
 * entries are read through that bundle's {@code LogEntry} interface.
 */
final class OsgiLogForwarder implements ServiceListener {

    static final String LEVEL_PROPERTY = "pgtrickle.osgi.log.level";

    /**
     * The Log Service's default level for every bundle's Logger (OSGi R7 LoggerAdmin). Entries below it are
     * never recorded, so the launcher sets it to the forwarding level unless it is given explicitly.
     */
    static final String LOGGER_ADMIN_LEVEL_PROPERTY = "org.osgi.service.log.admin.loglevel";

    /** OSGi LogLevel names, most severe first (their enum order). */
    private static final List<String> LEVELS = List.of("AUDIT", "ERROR", "WARN", "INFO", "DEBUG", "TRACE");

    private static final String LOG_PACKAGE = "org.osgi.service.log.";

    /**
     * The Log Service also records every framework, bundle and service event ("BundleEvent STARTED",
     * "FrameworkEvent ERROR", ...). Felix already prints framework errors itself (felix.log.level) and the
     * launcher reports bundles that did not start, so these echoes would only repeat them.
     */
    private static final Pattern FRAMEWORK_EVENT_ECHO = Pattern.compile("(Framework|Bundle|Service)Event ");

    private final BundleContext context;
    private final int threshold;

    private OsgiLogForwarder(BundleContext context, int threshold) {
        this.context = context;
        this.threshold = threshold;
    }

    /** The level named by {@value #LEVEL_PROPERTY}, checked before anything starts. */
    static int threshold(String level) throws LauncherException {
        int threshold = LEVELS.indexOf(level.trim().toUpperCase(Locale.ROOT));
        if (threshold < 0) {
            throw new LauncherException(LEVEL_PROPERTY + " must be one of " + String.join(", ", LEVELS).toLowerCase(Locale.ROOT)
                    + ", not '" + level + "'");
        }
        return threshold;
    }

    /** The LogLevel name for {@link #LOGGER_ADMIN_LEVEL_PROPERTY}. */
    static String levelName(int threshold) {
        return LEVELS.get(threshold);
    }

    /** Call between {@code Framework.init()} and {@code start()}, so nothing logged at startup is missed. */
    static void install(BundleContext systemContext, int threshold) {
        OsgiLogForwarder forwarder = new OsgiLogForwarder(systemContext, threshold);
        try {
            systemContext.addServiceListener(forwarder, "(objectClass=" + LOG_PACKAGE + "LogReaderService)");
        } catch (InvalidSyntaxException e) {
            throw new IllegalStateException("constant filter", e);
        }
    }

    @Override
    public void serviceChanged(ServiceEvent event) {
        if (event.getType() == ServiceEvent.REGISTERED) {
            attach(event.getServiceReference());
        }
    }

    private void attach(ServiceReference<?> reference) {
        Bundle provider = reference.getBundle();
        try {
            Class<?> readerType = provider.loadClass(LOG_PACKAGE + "LogReaderService");
            Class<?> listenerType = provider.loadClass(LOG_PACKAGE + "LogListener");
            EntryReader entries = new EntryReader(provider.loadClass(LOG_PACKAGE + "LogEntry"));
            Object reader = context.getService(reference);
            if (reader == null) {
                return;
            }
            Object listener = Proxy.newProxyInstance(listenerType.getClassLoader(), new Class<?>[] {listenerType},
                    new Handler(entries));
            readerType.getMethod("addLogListener", listenerType).invoke(reader, listener);
        } catch (ReflectiveOperationException | RuntimeException e) {
            // the log keeps working, only its echo on the console is lost; say so once
            System.err.println("pgtrickle: warning: OSGi log entries will not be shown: " + e);
        }
    }

    /** Reads one LogEntry through its interface (the implementation class is private to the log bundle). */
    private static final class EntryReader {
        private final Method logLevel;
        private final Method message;
        private final Method bundle;
        private final Method exception;

        EntryReader(Class<?> entryType) throws NoSuchMethodException {
            logLevel = entryType.getMethod("getLogLevel");
            message = entryType.getMethod("getMessage");
            bundle = entryType.getMethod("getBundle");
            exception = entryType.getMethod("getException");
        }
    }

    private final class Handler implements InvocationHandler {
        private final EntryReader entries;

        Handler(EntryReader entries) {
            this.entries = entries;
        }

        @Override
        public Object invoke(Object proxy, Method method, Object[] args) throws Throwable {
            switch (method.getName()) {
                case "logged" -> {
                    forward(args[0]);
                    return null;
                }
                case "equals" -> {
                    return proxy == args[0];
                }
                case "hashCode" -> {
                    return System.identityHashCode(proxy);
                }
                case "toString" -> {
                    return "pgtrickle OSGi log forwarder";
                }
                default -> throw new UnsupportedOperationException(method.toString());
            }
        }

        private void forward(Object entry) throws IllegalAccessException, InvocationTargetException {
            String level = String.valueOf(entries.logLevel.invoke(entry));
            int rank = LEVELS.indexOf(level);
            if (rank < 0 || rank > threshold) {
                return;
            }
            String text = String.valueOf(entries.message.invoke(entry));
            if (FRAMEWORK_EVENT_ECHO.matcher(text).lookingAt()) {
                return;
            }
            Bundle source = (Bundle) entries.bundle.invoke(entry);
            String name = source == null || source.getSymbolicName() == null ? "osgi" : source.getSymbolicName();
            Logger logger = LoggerFactory.getLogger(name);
            Throwable thrown = (Throwable) entries.exception.invoke(entry);
            switch (level) {
                case "AUDIT", "ERROR" -> logger.error(text, thrown);
                case "WARN" -> logger.warn(text, thrown);
                case "INFO" -> logger.info(text, thrown);
                case "DEBUG" -> logger.debug(text, thrown);
                default -> logger.trace(text, thrown);
            }
        }
    }
}
