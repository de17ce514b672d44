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
        assertEquals(List.of("0.31.0", "0.32.0", "0.33.0", "0.33.0.1"), shipped.stream().map(m -> m.version().toString()).toList());
        Migration release = shipped.get(2);
        assertTrue(release.sql().contains("CREATE TABLE pgtrickle.pgt_subscriptions"), "first script of 0.33.0");
        assertTrue(release.sql().contains("CREATE FUNCTION pgtrickle.ensure_change_capture"), "second script of 0.33.0");
        assertTrue(release.description().contains("; change capture"), release.description());
    }

    @Test
    void shippedMigrationsEndAtTheBundleRelease() {
        List<Migration> shipped = Migration.shipped();
        assertEquals("0.31.0", shipped.get(0).version().toString());
        assertEquals("0.33.0", shipped.get(shipped.size() - 1).version().release());
    }
}
