package io.pgtrickle.launcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.config.Setting;
import io.pgtrickle.config.Settings;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.stream.Collectors;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** etc/pgtrickle.properties: the shipped template, and what happens when the file is broken. */
class SettingsFileTest {

    private static final Path TEMPLATE = Path.of("src/main/dist/etc/pgtrickle.properties");

    @TempDir
    Path root;

    private Home home;

    @BeforeEach
    void home() throws Exception {
        Files.createDirectories(root.resolve("bundle"));
        Files.createDirectories(root.resolve("etc"));
        home = Home.of(root.toString());
    }

    @Test
    void templateDocumentsEverySetting() throws Exception {
        String template = Files.readString(TEMPLATE);
        for (Setting setting : Setting.values()) {
            assertTrue(template.contains("\n#" + setting.key() + "="), "etc/pgtrickle.properties lacks " + setting.key());
        }
    }

    @Test
    void templateSetsNothingAsShipped() throws Exception {
        Settings settings = Settings.load(TEMPLATE, Map.of(), Map.of());
        for (Setting setting : Setting.values()) {
            assertFalse(settings.get(setting).isPresent(), setting.key() + " is set in the shipped template");
        }
    }

    @Test
    void templateKeysAreSpelledSoTheConfigBundleFindsThem() throws Exception {
        // uncomment every example line: each must then be read as its setting
        String uncommented = Files.readAllLines(TEMPLATE).stream()
                .map(line -> line.startsWith("#pgtrickle.") || line.startsWith("#pg_trickle.") ? line.substring(1) : line)
                .map(line -> line.endsWith("=") ? line + "x" : line)
                .collect(Collectors.joining("\n"));
        Files.writeString(home.pgtrickleProperties(), uncommented);
        Settings settings = Settings.load(home.pgtrickleProperties(), Map.of(), Map.of());
        for (Setting setting : Setting.values()) {
            assertTrue(settings.get(setting).isPresent(), setting.key());
        }
    }

    @Test
    void missingFileMeansDefaults() throws Exception {
        Launcher.loadSettings(home);
    }

    @Test
    void directoryInPlaceOfTheFileIsAnError() throws Exception {
        Files.createDirectories(home.pgtrickleProperties());
        LauncherException e = assertThrows(LauncherException.class, () -> Launcher.loadSettings(home));
        assertEquals("cannot read " + home.pgtrickleProperties() + ": not a regular file", e.getMessage());
    }

    @Test
    void fileThatCannotBeParsedIsAnError() throws Exception {
        // an include of a missing file is a parse error in Commons Configuration
        Files.writeString(home.pgtrickleProperties(), "include = " + root.resolve("missing.properties") + "\n");
        LauncherException e = assertThrows(LauncherException.class, () -> Launcher.loadSettings(home));
        assertTrue(e.getMessage().startsWith("cannot read " + home.pgtrickleProperties()), e.getMessage());
        assertFalse(e.getMessage().contains("\n"));
    }
}
