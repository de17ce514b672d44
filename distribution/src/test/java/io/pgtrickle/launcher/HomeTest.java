package io.pgtrickle.launcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class HomeTest {

    @TempDir
    Path tmp;

    @Test
    void unsetHomeTellsHowToStart() {
        LauncherException e = assertThrows(LauncherException.class, () -> Home.of(null));
        assertEquals("pgtrickle.home is not set: start pgtrickle with bin/pgtrickle, or pass -Dpgtrickle.home=<the unpacked distribution>",
                e.getMessage());
        assertThrows(LauncherException.class, () -> Home.of("  "));
    }

    @Test
    void missingHomeIsNamed() {
        Path missing = tmp.resolve("nowhere");
        LauncherException e = assertThrows(LauncherException.class, () -> Home.of(missing.toString()));
        assertEquals("pgtrickle home " + missing + " does not exist or is not a directory", e.getMessage());
    }

    @Test
    void aDirectoryWithoutBundlesIsNotAHome() {
        LauncherException e = assertThrows(LauncherException.class, () -> Home.of(tmp.toString()));
        assertTrue(e.getMessage().contains("has no bundle/ directory"), e.getMessage());
    }

    @Test
    void pathsAreDerivedFromTheHome() throws Exception {
        Files.createDirectories(tmp.resolve("bundle"));
        Home home = Home.of(tmp.resolve("bundle").resolve("..").toString());
        assertEquals(tmp, home.root());
        assertEquals(tmp.resolve("etc/pgtrickle.properties"), home.pgtrickleProperties());
        assertEquals(tmp.resolve("etc/config.properties"), home.configProperties());
        assertEquals(tmp.resolve("data"), home.data());
        assertEquals(tmp.resolve("deploy"), home.deploy());
        assertEquals("data/postgres", home.display(tmp.resolve("data/postgres")));
        assertEquals("/elsewhere/pg", home.display(Path.of("/elsewhere/pg")));
    }

    @Test
    void mainReportsAMissingHomeOnOneLineWithStatusOne() {
        String before = System.getProperty(Home.PROPERTY);
        System.clearProperty(Home.PROPERTY);
        try {
            ByteArrayOutputStream err = new ByteArrayOutputStream();
            int status = Main.run(new String[0], System.out, new PrintStream(err, true, StandardCharsets.UTF_8));
            assertEquals(1, status);
            String stderr = err.toString(StandardCharsets.UTF_8);
            assertEquals(1, stderr.lines().count(), stderr);
            assertTrue(stderr.startsWith("pgtrickle: error: pgtrickle.home is not set"), stderr);
        } finally {
            if (before != null) {
                System.setProperty(Home.PROPERTY, before);
            }
        }
    }
}
