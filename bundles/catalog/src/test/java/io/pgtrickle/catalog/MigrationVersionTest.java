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
    void shippedMigrationsEndAtTheBundleRelease() {
        List<Migration> shipped = Migration.shipped();
        assertEquals("0.31.0", shipped.get(0).version().toString());
        assertEquals("0.33.0", shipped.get(shipped.size() - 1).version().release());
    }
}
