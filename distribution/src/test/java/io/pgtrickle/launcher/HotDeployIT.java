package io.pgtrickle.launcher;

import static io.pgtrickle.launcher.ExistingDatabaseIT.SHUTDOWN;
import static io.pgtrickle.launcher.ExistingDatabaseIT.SIGTERM_STATUS;
import static io.pgtrickle.launcher.ExistingDatabaseIT.STARTUP;
import static io.pgtrickle.launcher.ExistingDatabaseIT.allActive;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Map;
import java.util.jar.Attributes;
import java.util.jar.JarOutputStream;
import java.util.jar.Manifest;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * deploy/ and etc/ are watched while pgtrickle runs: a bundle dropped into deploy/ is installed and
 * started, and removed again when its jar is deleted; a .cfg dropped into etc/ becomes a configuration.
 * What FileInstall and SCR report goes through the OSGi Log Service, so this also shows that the
 * launcher puts those entries on the console. The database is deliberately unreachable: the
 * container must run (and deploy) without it.
 */
class HotDeployIT {

    private static final String BSN = "io.pgtrickle.test.hotdeploy";

    @Test
    void bundlesAndConfigurationsAreDeployedWhileRunning(@TempDir Path tmp) throws Exception {
        Path home = Distribution.copyTo(tmp.resolve("pgtrickle"));
        Map<String, String> env = Map.of(
                "PGTRICKLE_JDBC_URL", "jdbc:postgresql://localhost:" + Distribution.freePort() + "/unreachable",
                // FileInstall reports installs at its INFO level; show OSGi log entries down to INFO
                "JAVA_OPTS", "-Dfelix.fileinstall.log.level=3 -D" + OsgiLogForwarder.LEVEL_PROPERTY + "=info");
        try (PgTrickleProcess pgtrickle = PgTrickleProcess.start(home, env, "--headless")) {
            pgtrickle.awaitLine(allActive(), STARTUP);

            // written elsewhere and moved in, so FileInstall never sees half a jar
            Path built = tmp.resolve("hotdeploy.jar");
            writeBundle(built);
            Path deployed = home.resolve("deploy/hotdeploy.jar");
            Files.move(built, deployed, StandardCopyOption.ATOMIC_MOVE);
            pgtrickle.awaitLine("Started bundle: file:.*/deploy/hotdeploy\\.jar", STARTUP);
            // the bundle names a component descriptor it does not contain: SCR's error must reach the console
            pgtrickle.awaitLine("ERROR .*Component descriptor entry 'OSGI-INF/missing\\.xml' not found", STARTUP);

            Files.delete(deployed);
            pgtrickle.awaitLine("Uninstalling bundle \\d+ \\(" + Pattern.quote(BSN) + "\\)", STARTUP);

            Path cfg = home.resolve("etc/" + BSN + ".cfg");
            Files.writeString(tmp.resolve("hotdeploy.cfg"), "greeting = hello\n");
            Files.move(tmp.resolve("hotdeploy.cfg"), cfg, StandardCopyOption.ATOMIC_MOVE);
            pgtrickle.awaitLine(Pattern.quote("Creating configuration {" + BSN + "}"), STARTUP);

            assertEquals(SIGTERM_STATUS, pgtrickle.terminate(SHUTDOWN), pgtrickle.dump());
        }
    }

    /** A bundle with only a manifest, whose Service-Component header points at a missing file. */
    private static void writeBundle(Path jar) throws Exception {
        Manifest manifest = new Manifest();
        Attributes main = manifest.getMainAttributes();
        main.put(Attributes.Name.MANIFEST_VERSION, "1.0");
        main.putValue("Bundle-ManifestVersion", "2");
        main.putValue("Bundle-SymbolicName", BSN);
        main.putValue("Bundle-Version", "1.0.0");
        main.putValue("Service-Component", "OSGI-INF/missing.xml");
        try (OutputStream out = Files.newOutputStream(jar); JarOutputStream ignored = new JarOutputStream(out, manifest)) {
            // the manifest is the whole bundle
        }
    }
}
