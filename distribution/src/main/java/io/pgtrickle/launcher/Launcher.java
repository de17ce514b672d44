package io.pgtrickle.launcher;

import io.pgtrickle.api.jdbc.Redaction;
import io.pgtrickle.config.Setting;
import io.pgtrickle.config.Settings;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.concurrent.TimeUnit;
import org.apache.felix.main.AutoProcessor;
import org.osgi.framework.Bundle;
import org.osgi.framework.BundleException;
import org.osgi.framework.Constants;
import org.osgi.framework.FrameworkEvent;
import org.osgi.framework.InvalidSyntaxException;
import org.osgi.framework.ServiceReference;
import org.osgi.framework.launch.Framework;
import org.osgi.framework.launch.FrameworkFactory;
import org.osgi.framework.wiring.FrameworkWiring;

/**
 * Runs pgtrickle: settings, then the database (an existing one, or an embedded PostgreSQL), then Felix
 * with everything in {@code bundle/}, until the framework stops or the JVM is told to exit.
 *
 * <p>Shutdown order matters: the framework stops first, so the bundles close their pools and
 * finish their transactions while the database is still up; the embedded database stops last. The
 * same {@link #shutdown()} runs from the JVM shutdown hook (Ctrl-C, SIGTERM, Gogo's {@code exit}, which
 * is {@code System.exit}) and from the main thread (Gogo's {@code stop 0}, Ctrl-D on the console).
 */
final class Launcher {

    /** How long the shutdown waits for the bundles to stop before stopping the database anyway. */
    private static final long FRAMEWORK_STOP_TIMEOUT_MILLIS = TimeUnit.SECONDS.toMillis(60);

    private static final String GOSH_HOME = "gosh.home";

    /** The bundle that runs the interactive console (prints the banner and the {@code g!} prompt). */
    static final String CONSOLE_BUNDLE = "org.apache.felix.gogo.shell";

    /** The pgtrickle:* commands: the shell bundle's component, registered once the catalog and the scheduler are. */
    private static final String PGTRICKLE_COMMANDS = "(osgi.command.scope=pgtrickle)";
    private static final String REFRESH_SERVICE = "(objectClass=io.pgtrickle.api.refresh.RefreshService)";

    /**
     * How long the console waits for the pgtrickle commands before it opens anyway: a database that is
     * down must not keep the operator from the console, which is where they look at what is wrong.
     */
    private static final long CONSOLE_WAIT_MILLIS = TimeUnit.SECONDS.toMillis(15);

    /** Then, how long the log must have been quiet: the lines of sinks registering and the like come just after. */
    private static final long CONSOLE_QUIET_MILLIS = 500;

    private final Options options;
    private final PrintStream out;
    private final PrintStream err;

    // The main thread holds this while it starts the database or the framework; the shutdown hook takes it
    // too, so a Ctrl-C during startup waits for the step in progress and then stops what was started,
    // instead of leaving a PostgreSQL server running without its owner.
    private final Object lifecycle = new Object();

    /**
     * SPI Fly logs through java.util.logging, to stderr, a line for every provider it registers:
     * noise in a service manager's log. Its warnings still show. Held here because java.util.logging
     * keeps loggers only weakly, and a collected logger forgets its level.
     */
    private static final java.util.logging.Logger SPI_FLY_LOG = java.util.logging.Logger.getLogger("org.apache.aries.spifly");
    private boolean shutDown;            // guarded by lifecycle
    private EmbeddedDatabase embedded;   // guarded by lifecycle
    private Framework framework;         // guarded by lifecycle
    private Bundle heldConsole;          // guarded by lifecycle: the console bundle, until openConsole starts it

    Launcher(Options options, PrintStream out, PrintStream err) {
        this.options = options;
        this.out = out;
        this.err = err;
    }

    /** @return the process exit status */
    int run() throws LauncherException {
        Home home = Home.fromSystemProperty();
        // normalised and absolute, because etc/config.properties builds every framework path from ${pgtrickle.home}
        System.setProperty(Home.PROPERTY, home.root().toString());
        // before any library is touched: slf4j-simple reads its settings once, when the first logger is made
        SystemPropertyDefaults.apply(home.systemProperties());
        SystemPropertyDefaults.keepACommonPool(Runtime.getRuntime().availableProcessors());
        Settings settings = loadSettings(home);
        // read before anything is started, so a broken file fails fast and leaves nothing running
        Map<String, String> frameworkConfig = FrameworkConfig.load(home, this::warn);
        HttpSettings http = HttpSettings.from(settings);
        frameworkConfig.putAll(http.frameworkProperties());
        StartLevels.frameworkProperties().forEach(frameworkConfig::putIfAbsent);
        int osgiLogThreshold = OsgiLogForwarder.threshold(System.getProperty(OsgiLogForwarder.LEVEL_PROPERTY, "warn"));
        createDirectories(home);
        boolean interactive = chooseConsole(home);
        OutputActivity output = interactive ? OutputActivity.installOnSystemOut() : null;

        Runtime.getRuntime().addShutdownHook(new Thread(this::shutdown, "pgtrickle-shutdown"));
        try {
            connectDatabase(home, settings);
            startFramework(frameworkConfig, osgiLogThreshold, interactive);
            out.println("pgtrickle: " + http.describe());
            if (interactive) {
                openConsole(output);
            }
            return awaitFrameworkStop();
        } finally {
            shutdown();
        }
    }

    static Settings loadSettings(Home home) throws LauncherException {
        Path file = home.pgtrickleProperties();
        // A missing file is fine (all settings have defaults or come from the environment), but one that is
        // there and cannot be read is a mistake the operator must hear about, not silently ignore.
        if (Files.exists(file) && !Files.isRegularFile(file)) {
            throw new LauncherException("cannot read " + file + ": not a regular file");
        }
        if (Files.exists(file) && !Files.isReadable(file)) {
            throw new LauncherException("cannot read " + file + ": permission denied");
        }
        try {
            return Settings.load(file);
        } catch (IllegalArgumentException e) {
            throw new LauncherException(e.getMessage(), e);
        }
    }

    private void createDirectories(Home home) throws LauncherException {
        for (Path dir : new Path[] {home.data(), home.deploy()}) {
            try {
                Files.createDirectories(dir);
            } catch (IOException e) {
                throw new LauncherException("cannot create " + dir + ": " + e, e);
            }
        }
    }

    /**
     * Gogo's console reads stdin; under a service manager or with stdin redirected there is no one to
     * type, and an interactive console would stop the framework at end of input. {@code gosh.args} must
     * be a system property, not a framework property (osgi_stack.md trap 11); an explicit
     * {@code -Dgosh.args} is respected.
     *
     * @return whether Gogo will read commands (and print a prompt)
     */
    private boolean chooseConsole(Home home) {
        boolean headless = options.headless() || System.console() == null;
        if (headless && System.getProperty(FrameworkConfig.GOSH_ARGS) == null) {
            System.setProperty(FrameworkConfig.GOSH_ARGS, "--nointeractive");
        }
        boolean interactive = !System.getProperty(FrameworkConfig.GOSH_ARGS, "").contains("--nointeractive");
        // Gogo reads etc/gosh_profile (which redefines 'exit') and etc/motd relative to gosh.home
        if (System.getProperty(GOSH_HOME) == null) {
            System.setProperty(GOSH_HOME, home.root().toString());
        }
        if (interactive) {
            out.println("pgtrickle: Gogo console enabled; 'help' lists commands, 'exit' (or 'stop 0', Ctrl-D) stops pgtrickle");
        } else {
            out.println("pgtrickle: running headless (no console); stop with Ctrl-C or SIGTERM");
        }
        return interactive;
    }

    private void connectDatabase(Home home, Settings settings) throws LauncherException {
        if (settings.get(Setting.JDBC_URL).isPresent()) {
            Settings.Value url = settings.lookup(Setting.JDBC_URL).orElseThrow();
            String user = settings.lookup(Setting.JDBC_USER)
                    .map(v -> v.value() + " (" + v.source() + ")")
                    .orElse("postgres (default)");
            out.println("pgtrickle: database " + Redaction.jdbcUrl(url.value()) + " (" + url.source() + " "
                    + url.spelledAs() + "), user " + user);
            return;
        }
        EmbeddedDatabase.Spec spec = EmbeddedDatabase.Spec.from(settings, home);
        // postgresql.conf is the file zonky checks to decide whether to run initdb
        boolean reuse = Files.isRegularFile(spec.dataDirectory().resolve("postgresql.conf"));
        out.println("pgtrickle: no " + Setting.JDBC_URL.key() + " configured; starting the embedded PostgreSQL on port "
                + spec.port() + " (" + (reuse ? "reusing existing" : "initialising new") + " data directory "
                + home.display(spec.dataDirectory()) + ")");
        EmbeddedDatabase started;
        synchronized (lifecycle) {
            if (shutDown) {
                return;
            }
            started = EmbeddedDatabase.start(spec);
            embedded = started;
        }
        // System properties outrank the environment and the properties file (Settings' precedence), so the
        // config bundle pushes exactly this database to ConfigAdmin.
        System.setProperty(Setting.JDBC_URL.key(), started.jdbcUrl());
        System.setProperty(Setting.JDBC_USER.key(), EmbeddedDatabase.USER);
        out.println("pgtrickle: embedded PostgreSQL " + started.serverVersion() + " ready at " + started.jdbcUrl()
                + " (server log: " + home.display(spec.logFile()) + ")");
        out.println("pgtrickle: connect with: " + started.psqlCommand());
    }

    private void startFramework(Map<String, String> config, int osgiLogThreshold, boolean holdConsole) throws LauncherException {
        synchronized (lifecycle) {
            if (shutDown) {
                return;
            }
            FrameworkFactory factory = ServiceLoader.load(FrameworkFactory.class, Launcher.class.getClassLoader())
                    .findFirst()
                    .orElseThrow(() -> new LauncherException("no OSGi framework on the class path: lib/ is incomplete"));
            if (System.getProperty(OsgiLogForwarder.LOGGER_ADMIN_LEVEL_PROPERTY) == null) {
                config.putIfAbsent(OsgiLogForwarder.LOGGER_ADMIN_LEVEL_PROPERTY, OsgiLogForwarder.levelName(osgiLogThreshold));
            }
            Framework started = factory.newFramework(config);
            framework = started;
            try {
                started.init();
                OsgiLogForwarder.install(started.getBundleContext(), osgiLogThreshold);
                Slf4jPairing.install(started.getBundleContext());
                SPI_FLY_LOG.setLevel(java.util.logging.Level.WARNING);
                // installs and marks for start every jar in bundle/ (felix.auto.deploy.*); failures are printed by Felix
                AutoProcessor.process(config, started.getBundleContext());
                StartLevels.apply(started.getBundleContext());
                if (holdConsole) {
                    heldConsole = holdBackConsole(started);
                }
                started.start();
            } catch (BundleException | RuntimeException e) {
                throw new LauncherException("the OSGi framework did not start: " + e.getMessage(), e);
            }
            reportBundles(started);
        }
    }

    /**
     * Keeps the console bundle from starting with the others: it prints the banner and the prompt at once,
     * and the bundles' startup lines (data source, catalog, scheduler) would land after the prompt.
     * {@link #openConsole} starts it. Stopping a bundle that has not started only clears its start mark.
     */
    private static Bundle holdBackConsole(Framework started) throws BundleException {
        for (Bundle bundle : started.getBundleContext().getBundles()) {
            if (CONSOLE_BUNDLE.equals(bundle.getSymbolicName())) {
                bundle.stop();
                return bundle;
            }
        }
        return null;
    }

    /**
     * Starts the console once pgtrickle's startup is done: the pgtrickle:* commands are registered, the
     * scheduler has started, and nothing has been printed for {@value #CONSOLE_QUIET_MILLIS} ms; or, when
     * the commands do not come (the database is unreachable, the catalog refused), after
     * {@value #CONSOLE_WAIT_MILLIS} ms with a line saying so. Runs without the lifecycle lock, so Ctrl-C
     * meanwhile stops everything at once.
     */
    private void openConsole(OutputActivity output) throws LauncherException {
        Framework running;
        synchronized (lifecycle) {
            running = framework;
        }
        if (running == null) {
            return;
        }
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(CONSOLE_WAIT_MILLIS);
        boolean commands = false;
        while (isRunning(running) && System.nanoTime() < deadline) {
            if (!commands && registered(running, PGTRICKLE_COMMANDS)) {
                commands = true;
                awaitActivation(running, REFRESH_SERVICE);
            }
            if (commands && output.quietNanos() >= TimeUnit.MILLISECONDS.toNanos(CONSOLE_QUIET_MILLIS)) {
                break;
            }
            try {
                Thread.sleep(50);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
        synchronized (lifecycle) {
            if (shutDown || heldConsole == null) {
                return;
            }
            if (!commands) {
                out.println("pgtrickle: the pgtrickle:* commands are not there yet: they come once the catalog is"
                        + " migrated (see the lines above); opening the console");
            }
            try {
                heldConsole.start();
            } catch (BundleException | IllegalStateException e) {
                warn("the console did not start: " + LauncherException.oneLine(e.getMessage()));
            }
            heldConsole = null;
        }
    }

    private static boolean registered(Framework running, String filter) {
        try {
            ServiceReference<?>[] found = running.getBundleContext().getServiceReferences((String) null, filter);
            return found != null && found.length > 0;
        } catch (InvalidSyntaxException e) {
            throw new IllegalStateException("constant filter " + filter, e);
        } catch (IllegalStateException e) {
            return false; // the framework is stopping
        }
    }

    /**
     * Gets and releases the service: Declarative Services may register an immediate component's service
     * before its activate method has run, and getting it waits for that (the scheduler logs when it starts).
     */
    private static void awaitActivation(Framework running, String filter) {
        try {
            ServiceReference<?>[] found = running.getBundleContext().getServiceReferences((String) null, filter);
            if (found != null && found.length > 0 && running.getBundleContext().getService(found[0]) != null) {
                running.getBundleContext().ungetService(found[0]);
            }
        } catch (InvalidSyntaxException e) {
            throw new IllegalStateException("constant filter " + filter, e);
        } catch (IllegalStateException e) {
            // the framework is stopping
        }
    }

    /**
     * One line per bundle that did not start, with the resolver's reason, then a summary line the
     * operator (and the integration tests) can check. A console held back for {@link #openConsole} counts
     * as started once it resolves: it starts after the startup lines.
     */
    private void reportBundles(Framework started) {
        int total = 0;
        int running = 0;
        for (Bundle bundle : started.getBundleContext().getBundles()) {
            if (bundle.getBundleId() == 0) {
                continue;
            }
            total++;
            boolean fragment = bundle.getHeaders().get(Constants.FRAGMENT_HOST) != null;
            if (bundle == heldConsole && started.adapt(FrameworkWiring.class).resolveBundles(List.of(bundle))) {
                running++;
                continue;
            }
            if (fragment ? bundle.getState() == Bundle.RESOLVED : isRunning(bundle)) {
                running++;
                continue;
            }
            String reason = "";
            if (!fragment) {
                // Starting again yields the resolver's explanation (missing package or capability), which
                // is what the operator needs; if it succeeds now, all the better.
                try {
                    bundle.start();
                } catch (BundleException | IllegalStateException e) {
                    reason = ": " + LauncherException.oneLine(e.getMessage());
                }
                if (isRunning(bundle)) {
                    running++;
                    continue;
                }
            }
            warn("bundle " + bundle.getSymbolicName() + " " + bundle.getVersion() + " (" + bundle.getLocation()
                    + ") is " + stateName(bundle.getState()) + reason);
        }
        out.println("pgtrickle: OSGi framework started, " + running + " of " + total + " bundles active");
    }

    private static boolean isRunning(Bundle bundle) {
        return bundle.getState() == Bundle.ACTIVE || bundle.getState() == Bundle.STARTING;
    }

    private static String stateName(int state) {
        return switch (state) {
            case Bundle.INSTALLED -> "INSTALLED (not resolved)";
            case Bundle.RESOLVED -> "RESOLVED (not started)";
            case Bundle.STARTING -> "STARTING";
            case Bundle.STOPPING -> "STOPPING";
            case Bundle.ACTIVE -> "ACTIVE";
            case Bundle.UNINSTALLED -> "UNINSTALLED";
            default -> "in state " + state;
        };
    }

    /** Waits until the framework stops for good; an update or a system refresh restarts it, as in Felix's launcher. */
    private int awaitFrameworkStop() throws LauncherException {
        Framework running;
        synchronized (lifecycle) {
            running = framework;
        }
        if (running == null) {
            return 0; // shut down while starting
        }
        while (true) {
            FrameworkEvent event;
            try {
                event = running.waitForStop(0);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return 0;
            }
            int type = event.getType();
            if (type == FrameworkEvent.STOPPED_UPDATE || type == FrameworkEvent.STOPPED_SYSTEM_REFRESHED) {
                synchronized (lifecycle) {
                    if (shutDown) {
                        return 0;
                    }
                    out.println("pgtrickle: restarting the OSGi framework");
                    try {
                        running.start();
                    } catch (BundleException e) {
                        throw new LauncherException("the OSGi framework did not restart: " + e.getMessage(), e);
                    }
                }
                continue;
            }
            if (type == FrameworkEvent.ERROR) {
                err.println("pgtrickle: error: the OSGi framework stopped with an error: "
                        + (event.getThrowable() == null ? "unknown" : LauncherException.oneLine(String.valueOf(event.getThrowable()))));
                return 1;
            }
            return 0;
        }
    }

    /** Idempotent: stops the framework (bounded wait), then the embedded database. */
    void shutdown() {
        synchronized (lifecycle) {
            if (shutDown) {
                return;
            }
            shutDown = true;
            if (framework == null && embedded == null) {
                return;
            }
            if (framework != null) {
                // after 'stop 0' or Ctrl-D the framework has already stopped itself
                if ((framework.getState() & (Bundle.STARTING | Bundle.ACTIVE)) != 0) {
                    out.println("pgtrickle: stopping the OSGi framework");
                }
                stopFramework(framework);
            }
            if (embedded != null) {
                embedded.close();
                out.println("pgtrickle: embedded PostgreSQL stopped");
            }
            out.println("pgtrickle: stopped");
            out.flush();
        }
    }

    private void stopFramework(Framework running) {
        try {
            running.stop();
            FrameworkEvent event = running.waitForStop(FRAMEWORK_STOP_TIMEOUT_MILLIS);
            if (event.getType() == FrameworkEvent.WAIT_TIMEDOUT) {
                warn("the OSGi framework did not stop within " + FRAMEWORK_STOP_TIMEOUT_MILLIS / 1000 + " s; stopping anyway");
            }
        } catch (BundleException | RuntimeException e) {
            warn("stopping the OSGi framework: " + LauncherException.oneLine(e.getMessage()));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private void warn(String message) {
        err.println("pgtrickle: warning: " + message);
    }
}
