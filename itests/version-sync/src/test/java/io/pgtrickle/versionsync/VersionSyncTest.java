package io.pgtrickle.versionsync;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.jar.JarFile;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * {@code check-version-sync}: the project, the catalog, the features XML and the docs state one version,
 * and the docs state the catalog's version as its newest migration (a step such as 0.33.0.1 included).
 */
class VersionSyncTest {

    private static final String PROJECT_VERSION = System.getProperty("project.version");
    private static final Path ROOT = Path.of(System.getProperty("project.root", "../.."));

    @Test
    void projectCatalogFeaturesAndDocsAgree() throws Exception {
        List<String> problems = new ArrayList<>();
        String newestMigration = newestMigration();
        problems.addAll(VersionSync.checkCatalog(PROJECT_VERSION, release(newestMigration)));
        problems.addAll(VersionSync.checkFeatures(PROJECT_VERSION, Files.readString(Path.of(System.getProperty("features.xml")))));

        String readme = Files.readString(ROOT.resolve("README.md"));
        if (!VersionSync.statesVersion(PROJECT_VERSION, readme)) {
            problems.add("README.md does not state the version (pgtrickle " + PROJECT_VERSION + ")");
        }
        problems.addAll(VersionSync.checkDocument(PROJECT_VERSION, "README.md", readme));
        problems.addAll(VersionSync.checkCatalogStatements(newestMigration, "README.md", readme));
        try (Stream<Path> docs = Files.walk(ROOT.resolve("docs"))) {
            for (Path doc : docs.filter(p -> p.toString().endsWith(".md")).sorted().toList()) {
                String text = Files.readString(doc);
                problems.addAll(VersionSync.checkDocument(PROJECT_VERSION, ROOT.relativize(doc).toString(), text));
                problems.addAll(VersionSync.checkCatalogStatements(newestMigration, ROOT.relativize(doc).toString(), text));
            }
        }
        assertEquals(List.of(), problems, "versions disagree");
    }

    /** The catalog bundle's newest migration (e.g. 0.33.0.2): its newest db/schema/V&lt;version&gt;__*.sql, read from the bundle jar itself. */
    private static String newestMigration() throws Exception {
        Path location = Path.of(Class.forName("io.pgtrickle.catalog.CatalogMigrator").getProtectionDomain().getCodeSource().getLocation().toURI());
        List<String> names = new ArrayList<>();
        if (Files.isDirectory(location)) {
            try (var files = Files.list(location.resolve("db/schema"))) {
                files.forEach(f -> names.add(f.getFileName().toString()));
            }
        } else {
            try (JarFile jar = new JarFile(location.toFile())) {
                jar.stream().map(e -> e.getName()).filter(n -> n.startsWith("db/schema/"))
                        .forEach(n -> names.add(n.substring("db/schema/".length())));
            }
        }
        return names.stream().map(VERSIONED::matcher).filter(Matcher::matches).map(m -> m.group(1))
                .max(Comparator.comparing(v -> Arrays.stream(v.split("\\.")).mapToInt(Integer::parseInt).toArray(), Arrays::compare))
                .orElseThrow(() -> new AssertionError("no db/schema/V*.sql in " + location));
    }

    private static final Pattern VERSIONED = Pattern.compile("V(\\d+(?:\\.\\d+){2,3})__\\w+\\.sql");

    /** The release a migration belongs to: 0.33.0.1 → 0.33.0. */
    private static String release(String migration) {
        String[] parts = migration.split("\\.");
        return parts[0] + "." + parts[1] + "." + parts[2];
    }

    @Test
    void eachRuleReportsAMismatch() {
        assertEquals(1, VersionSync.checkCatalog("0.33.0", "0.32.0").size());
        assertEquals(List.of(), VersionSync.checkCatalog("0.33.0-SNAPSHOT", "0.33.0"));

        String features = "<features xmlns=\"x\" name=\"pgtrickle-0.33.0\">"
                + "<feature name=\"pgtrickle-core\" version=\"0.33.0\"><bundle>mvn:io.pgtrickle/pgtrickle-api/0.32.0</bundle></feature></features>";
        List<String> featureProblems = VersionSync.checkFeatures("0.33.0", features);
        assertEquals(1, featureProblems.size(), featureProblems.toString());
        assertTrue(featureProblems.get(0).contains("pgtrickle-api 0.32.0"));
        assertEquals(2, VersionSync.checkFeatures("0.34.0", features.replace("0.32.0", "0.34.0")).size());

        List<String> doc = VersionSync.checkDocument("0.33.0", "README.md", "intro\nrun pgtrickle-0.33.0/bin/pgtrickle\nthis is pgtrickle 0.32.1\n");
        assertEquals(List.of("README.md:3 states 'pgtrickle 0.32.1', project is 0.33.0"), doc);
        assertTrue(VersionSync.statesVersion("0.33.0", "pgtrickle v0.33.0"));

        assertEquals(List.of("running.md:2 states catalog version 0.33.0, the newest migration is 0.33.0.1"),
                VersionSync.checkCatalogStatements("0.33.0.1", "running.md", "logs\n`pgtrickle catalog at version 0.33.0 on <url>`"));
        String psql = "pgtrickle=# SELECT max(version) FROM pgtrickle.pgt_schema_version;\n   max\n--------\n 0.33.0\n";
        assertEquals(List.of("README.md:4 states catalog version 0.33.0, the newest migration is 0.33.0.1"),
                VersionSync.checkCatalogStatements("0.33.0.1", "README.md", psql));
        assertEquals(List.of(), VersionSync.checkCatalogStatements("0.33.0.1", "README.md",
                psql.replace(" 0.33.0\n", " 0.33.0.1\n") + "at catalog version 0.33.0.1 (release 0.33.0)"));
        assertEquals(false, VersionSync.statesVersion("0.33.0", "catalog 0.33.0"));
    }
}
