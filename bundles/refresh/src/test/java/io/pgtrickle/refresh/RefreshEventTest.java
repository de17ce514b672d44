package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.api.refresh.RefreshEvent;
import io.pgtrickle.api.refresh.RefreshEvent.Action;
import io.pgtrickle.api.refresh.RefreshEvent.Initiator;
import org.junit.jupiter.api.Test;

/** The API's event type (tested here: the API bundle has no tests of its own). */
class RefreshEventTest {

    private static RefreshEvent.Builder complete() {
        return RefreshEvent.builder().refreshId(12).pgtId(3).streamTable("sales", "Order \"Totals\"")
                .action(Action.FULL).rowsInserted(4).rowsDeleted(2).initiatedBy(Initiator.SCHEDULER);
    }

    @Test
    void namesAndCounts() {
        RefreshEvent e = complete().build();
        assertEquals("sales.Order \"Totals\"", e.qualifiedName());
        assertEquals("\"sales\".\"Order \"\"Totals\"\"\"", e.quotedName());
        assertEquals(12, e.refreshId());
        assertEquals(3, e.pgtId());
        assertEquals(4, e.rowsInserted());
        assertEquals(2, e.rowsDeleted());
        assertFalse(e.isEmpty());
        assertTrue(complete().action(Action.NO_DATA).rowsInserted(0).rowsDeleted(0).build().isEmpty());
    }

    @Test
    void valueSemantics() {
        assertEquals(complete().build(), complete().build());
        assertEquals(complete().build().hashCode(), complete().build().hashCode());
        assertNotEquals(complete().build(), complete().rowsDeleted(3).build());
        assertTrue(complete().build().toString().contains("sales.Order"));
    }

    @Test
    void incompleteOrNegativeIsRefused() {
        assertThrows(NullPointerException.class, () -> RefreshEvent.builder().build());
        assertThrows(NullPointerException.class, () -> complete().action(null).build());
        assertThrows(NullPointerException.class, () -> complete().initiatedBy(null).build());
        assertThrows(NullPointerException.class, () -> complete().streamTable(null, "x").build());
        assertThrows(IllegalArgumentException.class, () -> complete().rowsInserted(-1).build());
        assertThrows(IllegalArgumentException.class, () -> complete().rowsDeleted(-1).build());
    }
}
