package io.pgtrickle.catalog;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;

/** One catalog migration script, with the checksum that pins its text once applied. */
record Migration(MigrationVersion version, String description, String sql, String checksum) {

    static Migration of(String version, String description, String sql) {
        return new Migration(MigrationVersion.parse(version), description, sql, checksum(sql));
    }

    /** The core unit's migrations, oldest first, from this bundle's {@code db/schema} folder. */
    static List<Migration> shipped() {
        return UnitScripts.migrations(UnitScripts.CORE, ClasspathUnits.ownFolder(Migration.class).scripts("schema"));
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
