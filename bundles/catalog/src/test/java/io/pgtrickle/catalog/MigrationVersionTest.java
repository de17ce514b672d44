package io.pgtrickle.catalog;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

class MigrationVersionTest {

    @Test
    void ordersNumericallyNotLexically() {
        assertTrue(MigrationVersion.parse("0.9.0").compareTo(MigrationVersion.parse("0.10.0")) < 0);
        assertTrue(MigrationVersion.parse("0.33.0").compareTo(MigrationVersion.parse("0.33.0.1")) < 0);
        assertTrue(MigrationVersion.parse("0.33.0.2").compareTo(MigrationVersion.parse("0.34.0")) < 0);
    }

    @Test
    void printsReleasesWithoutAStep() {
        assertEquals("0.33.0", MigrationVersion.parse("0.33.0").toString());
        assertEquals("0.33.0.1", MigrationVersion.parse("0.33.0.1").toString());
        assertEquals("0.33.0", MigrationVersion.parse("0.33.0.1").release());
    }

    @Test
    void rejectsMalformedVersionsWithTheText() {
        for (String bad : List.of("0.33", "0.33.x", "1.2.3.4.5", "")) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> MigrationVersion.parse(bad));
            assertTrue(e.getMessage().contains("'" + bad + "'"), e.getMessage());
        }
    }

    @Test
    void scriptsOfOneVersionAreOneMigration() {
        List<Migration> shipped = Migration.shipped();
        assertEquals(List.of("0.31.0", "0.32.0", "0.33.0", "0.33.0.1", "0.33.0.2"), shipped.stream().map(m -> m.version().toString()).toList());
        Migration release = shipped.get(2);
        assertTrue(release.sql().contains("CREATE TABLE pgtrickle.pgt_subscriptions"), "first script of 0.33.0");
        assertTrue(release.sql().contains("CREATE FUNCTION pgtrickle.ensure_change_capture"), "second script of 0.33.0");
        assertTrue(release.description().contains("; capture"), release.description());
    }

    /**
     * The released migrations, now files named V&lt;version&gt;__&lt;n&gt;_&lt;what&gt;.sql joined in name order,
     * keep the checksums databases recorded when they were one index of release-named files: an
     * edit or a reordering would make every existing catalog refuse to start.
     */
    @Test
    void releasedMigrationsKeepTheChecksumsDatabasesHold() {
        List<Migration> shipped = Migration.shipped();
        assertEquals("70f3d37c73d6f6b2c8b65fe1fe44e3fd7140c609a72772039e9390a14be2e718", shipped.get(0).checksum());
        assertEquals("779fdcecc56ed02823ac2bd62d0fa3dd360a39ac50823225ff3b7bef2a53f9d3", shipped.get(1).checksum());
        assertEquals("ede1916b252407996db70da2f3c892fa2d14286784a4dd772952ffd4b8ab1bdb", shipped.get(2).checksum());
        assertEquals("0b97b3fbf87854e21f881f370d5d2dc4a6ab23f51ea3d32e74913f401853c470", shipped.get(3).checksum());
    }

    @Test
    void shippedMigrationsEndAtTheBundleRelease() {
        List<Migration> shipped = Migration.shipped();
        assertEquals("0.31.0", shipped.get(0).version().toString());
        assertEquals("0.33.0", shipped.get(shipped.size() - 1).version().release());
    }
}
