package io.pgtrickle.notify;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

class BackoffTest {

    @Test
    void doublesPerAttemptUpToTheMaximum() {
        Backoff middle = new Backoff(1_000, 300_000, () -> 0.5);
        assertEquals(1_000, middle.delayMs(1));
        assertEquals(2_000, middle.delayMs(2));
        assertEquals(4_000, middle.delayMs(3));
        assertEquals(256_000, middle.delayMs(9));
        assertEquals(300_000, middle.delayMs(10));
        assertEquals(300_000, middle.delayMs(Integer.MAX_VALUE));
        assertEquals(1_000, middle.delayMs(0));
    }

    @Test
    void jitterSpreadsByTwentyPercent() {
        assertEquals(800, new Backoff(1_000, 300_000, () -> 0.0).delayMs(1));
        assertEquals(1_200, new Backoff(1_000, 300_000, () -> 1.0).delayMs(1));
        assertEquals(240_000, new Backoff(1_000, 300_000, () -> 0.0).delayMs(20));
    }
}
