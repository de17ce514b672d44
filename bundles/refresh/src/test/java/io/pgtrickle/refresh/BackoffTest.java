package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

class BackoffTest {

    private static final long S = TimeUnit.SECONDS.toNanos(1);

    @Test
    void delaysDoubleFromOneSecondUpToSixty() {
        List<Long> seconds = List.of(1L, 2L, 4L, 8L, 16L, 32L, 60L, 60L);
        for (int failures = 1; failures <= seconds.size(); failures++) {
            assertEquals(seconds.get(failures - 1) * S, Backoff.delayNanos(failures), "after " + failures + " failures");
        }
        assertEquals(60 * S, Backoff.delayNanos(Integer.MAX_VALUE), "no overflow for long failure streaks");
    }

    @Test
    void aStreamTableWaitsOutItsDelayAndSuccessResetsIt() {
        Backoff b = new Backoff();
        long t = 1_000 * S;
        assertTrue(b.ready(7, t));
        assertEquals(S, b.failed(7, t));
        assertFalse(b.ready(7, t + S - 1));
        assertTrue(b.ready(7, t + S));
        assertTrue(b.ready(8, t), "other stream tables are not held back");

        assertEquals(2 * S, b.failed(7, t + S));
        assertFalse(b.ready(7, t + 3 * S - 1));
        assertTrue(b.ready(7, t + 3 * S));

        b.succeeded(7);
        assertTrue(b.ready(7, t + 3 * S));
        assertEquals(S, b.failed(7, t + 3 * S), "a success starts the next streak at the base delay");
    }

    @Test
    void forgetsStreamTablesThatAreNoLongerDueOnceTheirDelayIsOver() {
        Backoff b = new Backoff();
        long t = 0;
        b.failed(1, t);
        b.failed(2, t);
        b.forgetAllBut(Set.of(2L), t);
        assertEquals(2, b.size(), "a pause that is not over yet is kept");
        b.forgetAllBut(Set.of(2L), t + S);
        assertEquals(1, b.size());
        assertEquals(2 * S, b.failed(2, t + S), "a stream table still due keeps its streak");
        assertEquals(S, b.failed(1, t + S), "a forgotten one starts again at the base delay");
    }
}
