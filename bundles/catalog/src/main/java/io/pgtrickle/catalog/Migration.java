package io.pgtrickle.catalog;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;

/** One catalog migration script, with the checksum that pins its text once applied. */
record Migration(MigrationVersion version, String description, String sql, String checksum) {

    private static final String ROOT = "io/pgtrickle/catalog/migrations/";

    static Migration of(String version, String description, String sql) {
        return new Migration(MigrationVersion.parse(version), description, sql, checksum(sql));
    }

    /**
     * The migrations this bundle ships, oldest first, as listed in {@code migrations/index.txt}; the
     * scripts of consecutive lines with the same version are joined into one migration.
     */
    static List<Migration> shipped() {
        ClassLoader loader = Migration.class.getClassLoader();
        List<Migration> result = new ArrayList<>();
        for (String line : read(loader, ROOT + "index.txt").split("\n")) {
            line = line.strip();
            if (line.isEmpty() || line.startsWith("#")) {
                continue;
            }
            String[] fields = line.split("\\s+", 3);
            if (fields.length < 3) {
                throw new IllegalStateException("malformed line in migrations/index.txt: " + line);
            }
            Migration m = of(fields[0], fields[2], read(loader, ROOT + fields[1]));
            Migration previous = result.isEmpty() ? null : result.get(result.size() - 1);
            if (previous != null && previous.version().equals(m.version())) {
                // another script of the same version: one migration, one transaction, one checksum
                result.set(result.size() - 1, of(m.version().toString(), previous.description() + "; " + m.description(),
                        previous.sql() + m.sql()));
                continue;
            }
            if (previous != null && previous.version().compareTo(m.version()) > 0) {
                throw new IllegalStateException("migrations/index.txt is not in ascending version order at " + m.version());
            }
            result.add(m);
        }
        return List.copyOf(result);
    }

    private static String read(ClassLoader loader, String resource) {
        try (InputStream in = loader.getResourceAsStream(resource)) {
            if (in == null) {
                throw new IllegalStateException("missing bundle resource " + resource);
            }
            StringBuilder sb = new StringBuilder();
            try (BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8))) {
                for (String l; (l = r.readLine()) != null; ) {
                    sb.append(l).append('\n');
                }
            }
            return sb.toString();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read bundle resource " + resource, e);
        }
    }

    /** SHA-256 over the text with line endings normalised, so a CRLF checkout does not look tampered. */
    static String checksum(String sql) {
        try {
            MessageDigest digest = MessageDigest.getInstance("SHA-256");
            return HexFormat.of().formatHex(digest.digest(sql.replace("\r\n", "\n").getBytes(StandardCharsets.UTF_8)));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("the JVM has no SHA-256", e);
        }
    }
}
