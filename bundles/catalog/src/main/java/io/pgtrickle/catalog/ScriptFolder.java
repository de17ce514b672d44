package io.pgtrickle.catalog;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.JarURLConnection;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;
import org.osgi.framework.wiring.BundleWiring;

/**
 * The {@code .sql} files of one folder of a unit, by file name. In OSGi the folder is read from the
 * bundle's wiring ({@link BundleWiring#findEntries}); on a plain class path (tests, benchmarks) from the directory or
 * jar the unit's manifest came from. Written by hand because a class loader cannot list a folder,
 * and the two cases are all we need (Flyway's scanner does the same for many more).
 */
interface ScriptFolder {

    /** File name to text, in name order; empty when the folder does not exist. */
    Map<String, String> scripts(String folder);

    /** The entries of one revision of a bundle (its wiring), so an update cannot mix two revisions' scripts. */
    static ScriptFolder of(BundleWiring wiring, String root) {
        return folder -> {
            Map<String, String> out = new TreeMap<>();
            List<URL> entries = wiring.findEntries(root + "/" + folder, "*.sql", 0);
            for (URL url : entries == null ? List.<URL>of() : entries) {
                String path = url.getPath();
                out.put(path.substring(path.lastIndexOf('/') + 1), read(url));
            }
            return out;
        };
    }

    /** {@code base} is the root of a directory or jar on the class path, where its META-INF lives. */
    static ScriptFolder of(URL base, String root) {
        return folder -> {
            Map<String, String> out = new TreeMap<>();
            String prefix = root + "/" + folder + "/";
            try {
                if ("file".equals(base.getProtocol())) {
                    Path dir = Paths.get(base.toURI()).resolve(prefix);
                    if (Files.isDirectory(dir)) {
                        try (var files = Files.list(dir)) {
                            for (Path p : (Iterable<Path>) files::iterator) {
                                String name = p.getFileName().toString();
                                if (name.endsWith(".sql")) {
                                    out.put(name, Files.readString(p, StandardCharsets.UTF_8));
                                }
                            }
                        }
                    }
                } else if ("jar".equals(base.getProtocol())) {
                    JarURLConnection connection = (JarURLConnection) base.openConnection();
                    connection.setUseCaches(false);
                    try (JarFile jar = new JarFile(new File(connection.getJarFileURL().toURI()))) {
                        for (JarEntry e : Collections.list(jar.entries())) {
                            String name = e.getName();
                            if (name.startsWith(prefix) && name.endsWith(".sql") && name.indexOf('/', prefix.length()) < 0) {
                                try (InputStream in = jar.getInputStream(e)) {
                                    out.put(name.substring(prefix.length()), new String(in.readAllBytes(), StandardCharsets.UTF_8));
                                }
                            }
                        }
                    }
                } else {
                    throw new IllegalStateException("cannot list " + prefix + " in " + base);
                }
            } catch (IOException e) {
                throw new UncheckedIOException("cannot read " + prefix + " in " + base, e);
            } catch (java.net.URISyntaxException e) {
                throw new IllegalStateException("cannot read " + prefix + " in " + base, e);
            }
            return out;
        };
    }

    private static String read(URL url) {
        try (InputStream in = url.openStream()) {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            in.transferTo(bytes);
            return bytes.toString(StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + url, e);
        }
    }
}
