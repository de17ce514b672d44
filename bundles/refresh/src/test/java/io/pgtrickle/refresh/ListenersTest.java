package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.pgtrickle.api.refresh.RefreshListener;
import java.util.List;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

class ListenersTest {

    private static RefreshListener listener() {
        return (event, connection) -> { };
    }

    private static List<Long> order(Listeners l) {
        return l.snapshot().stream().map(Listeners.Entry::key).collect(Collectors.toList());
    }

    @Test
    void highestRankingFirstThenRegistrationOrder() {
        Listeners l = new Listeners();
        l.put(listener(), 0, 5);
        l.put(listener(), 10, 9);
        l.put(listener(), 0, 3);
        l.put(listener(), -1, 1);
        assertEquals(List.of(9L, 3L, 5L, 1L), order(l));
    }

    @Test
    void reRankingMovesAListenerAndRemovalDropsIt() {
        Listeners l = new Listeners();
        l.put(listener(), 0, 1);
        l.put(listener(), 0, 2);
        List<Listeners.Entry> before = l.snapshot();
        l.put(listener(), 5, 2);
        assertEquals(List.of(2L, 1L), order(l));
        assertEquals(List.of(1L, 2L), before.stream().map(Listeners.Entry::key).collect(Collectors.toList()),
                "a snapshot taken earlier (a running refresh) is not changed");
        l.remove(2);
        assertEquals(List.of(1L), order(l));
        l.remove(42);
        assertEquals(List.of(1L), order(l));
    }
}
