package io.pgtrickle.refresh.plan;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import io.pgtrickle.testing.MigratedDatabase;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The range a clock's move sweeps ({@link TemporalFilters#flipRange}) holds exactly the values whose
 * verdict differs between the old and the new clock, bounds included or not as each operator
 * needs: checked by PostgreSQL over every value, old and new clock of a small domain, where equal
 * values are common (dates: CURRENT_DATE moves by whole days).
 */
class TemporalFiltersRangeTest {

    @Test
    void theRangeIsExactlyTheValuesWhoseVerdictFlips() throws Exception {
        try (MigratedDatabase db = new MigratedDatabase("temporal_range", c -> { })) {
            for (String op : List.of(">", ">=", "<", "<=")) {
                for (boolean clockLeft : List.of(false, true)) {
                    String condition = clockLeft ? "(SELECT 1) " + op + " x" : "x " + op + " (SELECT 1)";
                    String range = TemporalFilters.flipRange(DeltaPlanner.parseExpression(condition), "o", "n");
                    String verdict = clockLeft ? "o " + op + " x" : "x " + op + " o";
                    String verdictNew = clockLeft ? "n " + op + " x" : "x " + op + " n";
                    long wrong = db.queryLong("SELECT count(*) FROM generate_series(-3, 3) x, generate_series(-3, 3) o, generate_series(-3, 3) n"
                            + " WHERE ((" + verdict + ") <> (" + verdictNew + ")) IS DISTINCT FROM (" + range + ")");
                    assertEquals(0, wrong, condition + ": " + range);
                }
            }
            assertNull(TemporalFilters.flipRange(DeltaPlanner.parseExpression("x = (SELECT 1)"), "o", "n"), "no range for =");
        }
    }
}
