package io.pgtrickle.catalog;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The order units are applied in, without a database (Liferay tests its upgrade graph the same way). */
class UnitOrderTest {

    private static UnitScripts unit(String name, String... requires) {
        return new UnitScripts(name, "1.0.0", List.of(requires), List.of(), List.of());
    }

    private static List<String> order(UnitScripts... units) {
        Map<String, UnitScripts> byName = new LinkedHashMap<>();
        for (UnitScripts u : units) {
            byName.put(u.unit(), u);
        }
        return ClasspathUnits.order(byName).stream().map(UnitScripts::unit).toList();
    }

    @Test
    void coreFirstThenEachAfterWhatItRequiresTiesByName() {
        assertEquals(List.of(UnitScripts.CORE, "io.pgtrickle.refresh", "io.pgtrickle.evolution", "io.pgtrickle.notify"),
                order(unit("io.pgtrickle.notify", "io.pgtrickle.refresh"), unit("io.pgtrickle.evolution", "io.pgtrickle.refresh"),
                        unit("io.pgtrickle.refresh"), unit(UnitScripts.CORE)));
    }

    @Test
    void aMissingRequirementOrACycleIsNamed() {
        IllegalStateException missing = assertThrows(IllegalStateException.class,
                () -> order(unit(UnitScripts.CORE), unit("io.pgtrickle.notify", "io.pgtrickle.refresh")));
        assertTrue(missing.getMessage().contains("io.pgtrickle.refresh") && missing.getMessage().contains("not installed"), missing.getMessage());
        IllegalStateException cycle = assertThrows(IllegalStateException.class,
                () -> order(unit(UnitScripts.CORE), unit("a", "b"), unit("b", "a")));
        assertTrue(cycle.getMessage().contains("cycle"), cycle.getMessage());
    }

    @Test
    void theCatalogOnItsOwnClassPathIsTheCoreUnitWithItsShippedMigrations() {
        List<UnitScripts> found = ClasspathUnits.find(UnitOrderTest.class.getClassLoader());
        assertEquals(List.of(UnitScripts.CORE), found.stream().map(UnitScripts::unit).toList());
        assertEquals(Migration.shipped().size(), found.get(0).migrations().size());
    }
}
