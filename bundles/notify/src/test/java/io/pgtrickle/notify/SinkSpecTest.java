package io.pgtrickle.notify;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import io.pgtrickle.api.notify.NotificationSinkType;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class SinkSpecTest {

    @Test
    void defaults() {
        SinkSpec spec = SinkSpec.of(Map.of(NotificationSinkType.TYPE, "log"));
        assertEquals(new SinkSpec("log:log", List.of("*"), 10, 10_000), spec);
    }

    @Test
    void readsNameChannelsAndLimits() {
        assertEquals(new SinkSpec("webhook:orders", List.of("order_events", "payments"), 3, 500),
                SinkSpec.of(Map.of(NotificationSinkType.TYPE, "webhook", NotificationSinkType.NAME, "orders",
                        NotificationSinkType.CHANNELS, new String[] {"order_events", "payments"},
                        NotificationSinkType.MAX_ATTEMPTS, 3, NotificationSinkType.TIMEOUT_MS, "500")));
        assertEquals(List.of("a", "b"), SinkSpec.of(Map.of(NotificationSinkType.TYPE, "t", NotificationSinkType.CHANNELS, "a, b")).channels());
        assertEquals(List.of("*"), SinkSpec.of(Map.of(NotificationSinkType.TYPE, "t", NotificationSinkType.CHANNELS, new String[0])).channels());
    }

    @Test
    void badLimitsFallBackToTheDefaults() {
        SinkSpec spec = SinkSpec.of(Map.of(NotificationSinkType.TYPE, "t", NotificationSinkType.MAX_ATTEMPTS, 0,
                NotificationSinkType.TIMEOUT_MS, "soon"));
        assertEquals(10, spec.maxAttempts());
        assertEquals(10_000, spec.timeoutMs());
    }

    @Test
    void noTypeNoSink() {
        assertNull(SinkSpec.of(Map.of(NotificationSinkType.NAME, "x")));
        assertNull(SinkSpec.of(Map.of(NotificationSinkType.TYPE, " ")));
    }
}
