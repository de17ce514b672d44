package io.pgtrickle.launcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class FrameworkConfigTest {

    @TempDir
    Path root;

    private Home home;
    private final List<String> warnings = new ArrayList<>();
    private String homeBefore;

    @BeforeEach
    void home() throws Exception {
        Files.createDirectories(root.resolve("bundle"));
        Files.createDirectories(root.resolve("etc"));
        home = Home.of(root.toString());
        homeBefore = System.getProperty(Home.PROPERTY);
        // as the launcher does before loading the file
        System.setProperty(Home.PROPERTY, root.toString());
    }

    @AfterEach
    void restore() {
        if (homeBefore == null) {
            System.clearProperty(Home.PROPERTY);
        } else {
            System.setProperty(Home.PROPERTY, homeBefore);
        }
        System.clearProperty("felix.log.level");
    }

    @Test
    void shippedFileResolvesEveryPathBelowTheHome() throws Exception {
        Files.copy(Path.of("src/main/dist/etc/config.properties"), home.configProperties());
        Map<String, String> config = FrameworkConfig.load(home, warnings::add);
        assertEquals(root + "/data/felix-cache", config.get("org.osgi.framework.storage"));
        assertEquals("onFirstInit", config.get("org.osgi.framework.storage.clean"));
        assertEquals(root + "/bundle", config.get("felix.auto.deploy.dir"));
        assertEquals("install,start", config.get("felix.auto.deploy.action"));
        assertEquals(root + "/etc", config.get(FrameworkConfig.ETC_PROPERTY));
        assertEquals(root + "/deploy," + root + "/etc", config.get("felix.fileinstall.dir"));
        assertEquals(".*\\.(jar|cfg|config)", config.get("felix.fileinstall.filter"));
        assertEquals("false", config.get("felix.fileinstall.enableConfigSave"));
        assertFalse(config.containsKey(FrameworkConfig.GOSH_ARGS));
        assertEquals(List.of(), warnings);
    }

    @Test
    void fileInstallFilterTakesConfigurationsAndBundlesOnly() throws Exception {
        Files.copy(Path.of("src/main/dist/etc/config.properties"), home.configProperties());
        String filter = FrameworkConfig.load(home, warnings::add).get("felix.fileinstall.filter");
        for (String name : List.of("io.pgtrickle.datasource.cfg", "org.example.sink-a.config", "sink.jar")) {
            assertTrue(name.matches(filter), name);
        }
        for (String name : List.of("pgtrickle.properties", "config.properties", "gosh_profile", "README.txt", "x.cfg~")) {
            assertFalse(name.matches(filter), name);
        }
    }

    @Test
    void minimalFileGetsTheLayoutDefaults() throws Exception {
        Files.writeString(home.configProperties(), "# nothing\n");
        Map<String, String> config = FrameworkConfig.load(home, warnings::add);
        assertEquals(root.resolve("data/felix-cache").toString(), config.get("org.osgi.framework.storage"));
        assertEquals(root.resolve("bundle").toString(), config.get("felix.auto.deploy.dir"));
        assertEquals("install,start", config.get("felix.auto.deploy.action"));
        assertEquals(root.resolve("etc").toString(), config.get(FrameworkConfig.ETC_PROPERTY));
    }

    @Test
    void felixSystemPropertiesOverrideTheFile() throws Exception {
        Files.writeString(home.configProperties(), "felix.log.level=1\n");
        System.setProperty("felix.log.level", "4");
        assertEquals("4", FrameworkConfig.load(home, warnings::add).get("felix.log.level"));
    }

    @Test
    void goshArgsInTheFileIsDroppedWithAWarning() throws Exception {
        Files.writeString(home.configProperties(), "gosh.args=--nointeractive\n");
        Map<String, String> config = FrameworkConfig.load(home, warnings::add);
        assertFalse(config.containsKey(FrameworkConfig.GOSH_ARGS));
        assertEquals(1, warnings.size());
        assertTrue(warnings.get(0).startsWith("ignoring gosh.args in etc/config.properties"), warnings.get(0));
    }

    @Test
    void missingFileIsAnError() {
        LauncherException e = assertThrows(LauncherException.class, () -> FrameworkConfig.load(home, warnings::add));
        assertTrue(e.getMessage().startsWith("etc/config.properties is missing"), e.getMessage());
    }

    @Test
    void brokenSubstitutionNamesTheProperty() throws Exception {
        Files.writeString(home.configProperties(), "a=${b}\nb=${a}\n");
        LauncherException e = assertThrows(LauncherException.class, () -> FrameworkConfig.load(home, warnings::add));
        assertTrue(e.getMessage().startsWith("etc/config.properties: "), e.getMessage());
    }
}
