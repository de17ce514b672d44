package io.pgtrickle.launcher;

import static io.pgtrickle.launcher.ExistingDatabaseIT.SHUTDOWN;
import static io.pgtrickle.launcher.ExistingDatabaseIT.STARTUP;
import static io.pgtrickle.launcher.ExistingDatabaseIT.allActive;
import static io.pgtrickle.launcher.ExistingDatabaseIT.catalogLine;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.jar.JarFile;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import java.util.zip.ZipEntry;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The Gogo console as an operator meets it: the banner names every pgtrickle:* command the bundles
 * register (the shell's, pgtrickle:health, pgtrickle:metrics), and the banner and the first {@code g!} prompt come after the startup lines (data source,
 * catalog, scheduler), not in the middle of them. Then a command and {@code exit}, which stops pgtrickle
 * with status 0.
 */
class ConsoleIT {

    private static final String PROMPT = "g! ";

    @Test
    void bannerListsThePgtrickleCommandsAndThePromptComesAfterStartup(@TempDir Path tmp) throws Exception {
        Path home = Distribution.copyTo(tmp.resolve("pgtrickle"));
        Map<String, String> env = Map.of("PGTRICKLE_EMBEDDED_PORT", Integer.toString(Distribution.freePort()));
        try (PgTrickleProcess pgtrickle = PgTrickleProcess.startWithConsole(home, env)) {
            String banner = "pgtrickle " + Distribution.version() + " - Apache Felix Gogo console";
            pgtrickle.awaitLine(Pattern.quote(banner), STARTUP);
            // the prompt has no line end of its own: it shows up at the start of the next line printed
            pgtrickle.type("pgtrickle:list");
            pgtrickle.awaitLine("^" + PROMPT, STARTUP);

            List<String> lines = pgtrickle.stdout();
            int bannerAt = indexOf(lines, Pattern.quote(banner), pgtrickle);
            int promptAt = indexOf(lines, "^" + PROMPT, pgtrickle);
            for (String startup : List.of(allActive(), catalogLine(), Pattern.quote("pgtrickle refresh scheduler started"))) {
                int at = indexOf(lines, startup, pgtrickle);
                assertTrue(at < bannerAt, "/" + startup + "/ comes after the banner" + pgtrickle.dump());
                assertTrue(at < promptAt, "/" + startup + "/ comes after the prompt" + pgtrickle.dump());
            }

            String shown = String.join("\n", lines.subList(bannerAt, promptAt));
            List<String> missing = new ArrayList<>();
            for (String function : shellCommandFunctions(home)) {
                if (!Pattern.compile("pgtrickle:" + function + "\\b").matcher(shown).find()) {
                    missing.add("pgtrickle:" + function);
                }
            }
            assertEquals(List.of(), missing, "commands the banner does not name" + pgtrickle.dump());

            pgtrickle.type("exit");
            assertEquals(0, pgtrickle.awaitExit(SHUTDOWN), pgtrickle.dump());
        }
    }

    private static int indexOf(List<String> lines, String regex, PgTrickleProcess pgtrickle) {
        Pattern pattern = Pattern.compile(regex);
        for (int i = 0; i < lines.size(); i++) {
            if (pattern.matcher(lines.get(i)).find()) {
                return i;
            }
        }
        throw new AssertionError("no line matching /" + regex + "/" + pgtrickle.dump());
    }

    /**
     * The osgi.command.function values of every pgtrickle bundle's components in scope pgtrickle (the
     * shell's, and the health and metrics bundles' own), read from the jars the distribution ships.
     */
    private static List<String> shellCommandFunctions(Path home) throws IOException {
        List<String> names = new ArrayList<>();
        List<Path> jars;
        try (Stream<Path> found = Files.list(home.resolve("bundle"))) {
            jars = found.filter(p -> p.getFileName().toString().startsWith("pgtrickle-")).sorted().toList();
        }
        Pattern scope = Pattern.compile("<property name=\"osgi.command.scope\"[^>]*value=\"pgtrickle\"");
        Pattern functions = Pattern.compile("<property name=\"osgi.command.function\"(?: type=\"String\")?(?: value=\"([^\"]*)\"/>|>([^<]*)</property>)");
        for (Path jar : jars) {
            try (JarFile file = new JarFile(jar.toFile())) {
                for (ZipEntry entry : java.util.Collections.list(file.entries())) {
                    if (!entry.getName().startsWith("OSGI-INF/") || !entry.getName().endsWith(".xml")) {
                        continue;
                    }
                    String xml;
                    try (InputStream in = file.getInputStream(entry)) {
                        xml = new String(in.readAllBytes(), StandardCharsets.UTF_8);
                    }
                    if (!scope.matcher(xml).find()) {
                        continue;
                    }
                    Matcher m = functions.matcher(xml);
                    assertTrue(m.find(), entry.getName() + ": " + xml);
                    String value = m.group(1) != null ? m.group(1) : m.group(2);
                    names.addAll(List.of(value.trim().split("\\s+")));
                }
            }
        }
        assertTrue(names.containsAll(List.of("list", "health", "metrics")), names.toString());
        return names;
    }
}
