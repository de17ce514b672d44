package io.pgtrickle.launcher;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.stream.Stream;

/** The distribution the build unpacked (failsafe passes its location), and what it must contain. */
final class Distribution {

    /**
     * Symbolic names of every bundle in {@code bundle/}. The pom's copy list and this list must agree:
     * a bundle missing from the build fails DistributionLayoutIT, and the running ITs expect this many
     * bundles active.
     */
    static final List<String> BUNDLES = List.of(
            "org.apache.felix.gogo.runtime",
            "org.apache.felix.gogo.shell",
            "org.apache.felix.gogo.command",
            "org.osgi.util.function",
            "org.osgi.util.promise",
            "org.osgi.service.component",
            "org.apache.felix.scr",
            "org.apache.felix.configadmin",
            "org.apache.felix.metatype",
            "org.apache.felix.log",
            "org.apache.felix.fileinstall",
            "org.osgi.service.jdbc",
            "org.postgresql.jdbc",
            "com.zaxxer.HikariCP",
            "com.github.jsqlparser",
            "slf4j.api",
            "slf4j.simple",
            "org.apache.commons.commons-configuration2",
            "org.apache.commons.lang3",
            "org.apache.commons.text",
            "org.apache.commons.commons-io",
            "org.apache.commons.commons-logging",
            "org.apache.felix.http.servlet-api",
            "org.apache.felix.http.jetty12",
            "org.apache.commons.commons-fileupload",
            "org.apache.aries.spifly.dynamic.bundle",
            "org.objectweb.asm",
            "org.objectweb.asm.commons",
            "org.objectweb.asm.tree",
            "org.objectweb.asm.tree.analysis",
            "org.objectweb.asm.util",
            // Jetty 12 logs through slf4j 2, our bundles through 1.7: both are installed
            "slf4j.api",
            "slf4j.simple",
            "io.pgtrickle.api",
            "io.pgtrickle.config",
            "io.pgtrickle.datasource",
            "io.pgtrickle.catalog",
            "io.pgtrickle.refresh",
            "io.pgtrickle.shell",
            "io.pgtrickle.notify",
            "io.pgtrickle.evolution",
            "io.pgtrickle.sink-webhook",
            "io.pgtrickle.sink-log",
            "io.pgtrickle.http-events",
            "io.pgtrickle.live-page",
            "io.pgtrickle.health",
            "io.pgtrickle.metrics",
            "com.fasterxml.jackson.core.jackson-core");

    private Distribution() {
    }

    static String version() {
        return required("pgtrickle.version");
    }

    /** {@code target/pgtrickle-<version>/}, unpacked from the tar.gz by the build. */
    static Path unpacked() {
        Path dir = Path.of(required("pgtrickle.dist.dir"));
        assertTrue(Files.isRegularFile(dir.resolve("bin/pgtrickle")), dir + " holds no unpacked distribution");
        return dir;
    }

    static Path tarball() {
        return Path.of(required("pgtrickle.dist.tarball"));
    }

    private static String required(String property) {
        String value = System.getProperty(property);
        if (value == null) {
            throw new IllegalStateException(property + " is not set: run the integration tests through Maven (mvn verify)");
        }
        return value;
    }

    /**
     * A private copy of the distribution, so that each test has its own data/ and bundle cache and the
     * distribution is shown to work from any directory. File modes are kept (bin/pgtrickle stays executable).
     */
    static Path copyTo(Path target) {
        Path source = unpacked();
        try (Stream<Path> files = Files.walk(source)) {
            for (Path file : (Iterable<Path>) files::iterator) {
                Path relative = source.relativize(file);
                if (relative.startsWith("data")) {
                    continue; // left behind by someone running the build's copy by hand
                }
                Path copy = target.resolve(relative.toString());
                if (Files.isDirectory(file, LinkOption.NOFOLLOW_LINKS)) {
                    Files.createDirectories(copy);
                } else {
                    Files.copy(file, copy, StandardCopyOption.COPY_ATTRIBUTES);
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return target;
    }

    /** A loopback port nothing listens on right now. */
    static int freePort() {
        try (ServerSocket socket = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return socket.getLocalPort();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
