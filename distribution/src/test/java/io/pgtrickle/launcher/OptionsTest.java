package io.pgtrickle.launcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

class OptionsTest {

    @Test
    void noArgumentsMeansConsoleIfThereIsATerminal() {
        Options options = Options.parse();
        assertFalse(options.headless());
        assertFalse(options.help());
    }

    @Test
    void headlessAndHelp() {
        assertTrue(Options.parse("--headless").headless());
        assertTrue(Options.parse("--help").help());
        assertTrue(Options.parse("-h").help());
    }

    @Test
    void unknownArgumentIsNamed() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Options.parse("--headless", "--port=1"));
        assertEquals("unknown argument '--port=1'", e.getMessage());
    }

    @Test
    void mainExitsWithTwoAndUsageOnABadArgument() {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = Main.run(new String[] {"--nope"}, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        assertEquals(2, status);
        String stderr = err.toString(StandardCharsets.UTF_8);
        assertTrue(stderr.startsWith("pgtrickle: error: unknown argument '--nope'"), stderr);
        assertTrue(stderr.contains("usage: pgtrickle"), stderr);
    }

    @Test
    void mainPrintsUsageForHelpAndStartsNothing() {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        int status = Main.run(new String[] {"--help"}, new PrintStream(out, true, StandardCharsets.UTF_8), System.err);
        assertEquals(0, status);
        assertTrue(out.toString(StandardCharsets.UTF_8).startsWith("usage: pgtrickle"));
    }
}
