package io.pgtrickle.itests.felix;

import static org.junit.Assert.fail;

import io.pgtrickle.api.schema.SchemaUnit;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.function.UnaryOperator;
import java.util.jar.Attributes;
import java.util.jar.JarOutputStream;
import java.util.jar.Manifest;
import java.util.zip.ZipEntry;
import java.util.zip.ZipInputStream;
import java.util.zip.ZipOutputStream;
import org.osgi.framework.Bundle;
import org.osgi.framework.BundleException;
import org.osgi.framework.Constants;
import org.osgi.framework.ServiceReference;

/**
 * Bundles with a database part (units), made at test time inside the framework, and waits on what
 * the schema extender does with them. A unit is nothing but a manifest with the
 * {@code Pgtrickle-Schema} header and the extender requirement, and {@code .sql} files in its folder,
 * so a jar written with {@code java.util.jar} is enough (no bnd, no tinybundles in the probe).
 */
final class UnitBundles {

    static final String SCHEMA_HEADER = "Pgtrickle-Schema";
    /** What every unit bundle requires, as the project's own units declare it. */
    static final String EXTENDER_REQUIREMENT =
            "osgi.extender;filter:=\"(&(osgi.extender=pgtrickle.schema)(version>=1.0.0)(!(version>=2.0.0)))\"";

    static final String UNIT_TABLE = "pgtrickle.pgt_schema_unit";
    static final String SCRIPT_TABLE = "pgtrickle.pgt_schema_script";

    private UnitBundles() {
    }

    /**
     * A unit bundle: {@code files} maps paths inside the jar ({@code db/schema/V0.1.0__x.sql}) to
     * their text. {@code schemaHeader} is the header's value, e.g. {@code db} or
     * {@code db;requires:="com.example.other"}.
     */
    static byte[] unit(String symbolicName, String version, String schemaHeader, Map<String, String> files) {
        Manifest manifest = new Manifest();
        Attributes main = manifest.getMainAttributes();
        // without Manifest-Version java.util.jar writes an empty manifest
        main.put(Attributes.Name.MANIFEST_VERSION, "1.0");
        main.putValue(Constants.BUNDLE_MANIFESTVERSION, "2");
        main.putValue(Constants.BUNDLE_SYMBOLICNAME, symbolicName);
        main.putValue(Constants.BUNDLE_VERSION, version);
        main.putValue(SCHEMA_HEADER, schemaHeader);
        main.putValue(Constants.REQUIRE_CAPABILITY, EXTENDER_REQUIREMENT);
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (JarOutputStream jar = new JarOutputStream(bytes, manifest)) {
            Set<String> directories = new HashSet<>();
            for (Map.Entry<String, String> f : new TreeMap<>(files).entrySet()) {
                // directory entries too, as a jar built by Maven has them
                String path = f.getKey();
                for (int i = path.indexOf('/'); i > 0; i = path.indexOf('/', i + 1)) {
                    String dir = path.substring(0, i + 1);
                    if (directories.add(dir)) {
                        jar.putNextEntry(new ZipEntry(dir));
                        jar.closeEntry();
                    }
                }
                jar.putNextEntry(new ZipEntry(path));
                jar.write(f.getValue().getBytes(StandardCharsets.UTF_8));
                jar.closeEntry();
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return bytes.toByteArray();
    }

    /** One of our bundles' jars as the build copied it (bundles.dir: the JVM is the failsafe one). */
    static byte[] ourJar(String artifactId) {
        File jar = ourJarFile(artifactId);
        try {
            return Files.readAllBytes(jar.toPath());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static File ourJarFile(String artifactId) {
        String dir = System.getProperty("bundles.dir");
        if (dir == null || dir.isBlank()) {
            throw new IllegalStateException("system property bundles.dir is not set: run the tests through Maven (mvn verify)");
        }
        File jar = new File(dir, artifactId + ".jar");
        if (!jar.isFile()) {
            throw new IllegalStateException(jar + " is missing: run the tests through Maven (mvn verify)");
        }
        return jar;
    }

    /** A copy of {@code jar} with the text of entry {@code path} passed through {@code edit}; every other entry as it was. */
    static byte[] rewrite(byte[] jar, String path, UnaryOperator<String> edit) {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        boolean found = false;
        try (ZipInputStream in = new ZipInputStream(new ByteArrayInputStream(jar)); ZipOutputStream out = new ZipOutputStream(bytes)) {
            for (ZipEntry e = in.getNextEntry(); e != null; e = in.getNextEntry()) {
                byte[] content = in.readAllBytes();
                if (e.getName().equals(path)) {
                    content = edit.apply(new String(content, StandardCharsets.UTF_8)).getBytes(StandardCharsets.UTF_8);
                    found = true;
                }
                ZipEntry copy = new ZipEntry(e.getName());
                copy.setTime(e.getTime());
                out.putNextEntry(copy);
                out.write(content);
                out.closeEntry();
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        if (!found) {
            throw new IllegalArgumentException(path + " is not in the jar");
        }
        return bytes.toByteArray();
    }

    /** The text of one entry of a jar. */
    static String entry(byte[] jar, String path) {
        try (ZipInputStream in = new ZipInputStream(new ByteArrayInputStream(jar))) {
            for (ZipEntry e = in.getNextEntry(); e != null; e = in.getNextEntry()) {
                if (e.getName().equals(path)) {
                    return new String(in.readAllBytes(), StandardCharsets.UTF_8);
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        throw new IllegalArgumentException(path + " is not in the jar");
    }

    /** Installs and starts a bundle made in memory, under a location of its own. */
    static Bundle installAndStart(String name, byte[] jar) throws BundleException {
        Bundle b = install(name, jar);
        b.start();
        return b;
    }

    static Bundle install(String name, byte[] jar) throws BundleException {
        InputStream in = new ByteArrayInputStream(jar);
        return InFramework.context().installBundle("it-unit:" + name + ":" + System.nanoTime(), in);
    }

    /** The filter of the SchemaUnit of {@code unit}. */
    static String unitFilter(String unit) {
        return "(" + SchemaUnit.UNIT_PROPERTY + "=" + unit + ")";
    }

    /** Waits (bounded) for the SchemaUnit of {@code unit} and returns its reference. */
    static ServiceReference<SchemaUnit> awaitUnit(String unit) {
        InFramework.awaitService(SchemaUnit.class, unitFilter(unit), InFramework.SERVICE_TIMEOUT_MILLIS);
        ServiceReference<SchemaUnit> ref = unitReference(unit);
        if (ref == null) {
            fail("the SchemaUnit of " + unit + " went away again");
        }
        return ref;
    }

    /** The SchemaUnit of {@code unit} registered now, or null. */
    static ServiceReference<SchemaUnit> unitReference(String unit) {
        try {
            var refs = InFramework.context().getServiceReferences(SchemaUnit.class, unitFilter(unit));
            return refs.isEmpty() ? null : refs.iterator().next();
        } catch (org.osgi.framework.InvalidSyntaxException e) {
            throw new IllegalArgumentException(e);
        }
    }

    /** Waits (bounded) until no SchemaUnit of {@code unit} is registered: the extender withdraws it on its own thread. */
    static void awaitNoUnit(String unit) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(InFramework.SERVICE_TIMEOUT_MILLIS);
        while (unitReference(unit) != null) {
            if (System.nanoTime() > deadline) {
                fail("the SchemaUnit of " + unit + " is still registered after " + InFramework.SERVICE_TIMEOUT_MILLIS + " ms");
            }
            Thread.sleep(20);
        }
    }

    /** Service id of a reference. */
    static long serviceId(ServiceReference<?> ref) {
        return (Long) ref.getProperty(Constants.SERVICE_ID);
    }

    /** Something to wait for. */
    @FunctionalInterface
    interface Condition {
        boolean holds() throws Exception;
    }

    /** Waits up to 60 s for {@code condition}; a wait that runs out fails with {@code what} and the SCR report. */
    static void await(String what, Condition condition) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(InFramework.SERVICE_TIMEOUT_MILLIS);
        while (!condition.holds()) {
            if (System.nanoTime() > deadline) {
                fail("not within " + InFramework.SERVICE_TIMEOUT_MILLIS + " ms: " + what + "\n" + InFramework.componentReport());
            }
            Thread.sleep(20);
        }
    }
}
