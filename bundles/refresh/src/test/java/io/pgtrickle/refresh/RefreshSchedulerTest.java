package io.pgtrickle.refresh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.refresh.RefreshEvent;
import java.lang.reflect.Proxy;
import java.sql.SQLException;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import javax.sql.DataSource;
import org.junit.jupiter.api.Test;

/**
 * The DS shell driven by hand, as SCR would: whiteboard properties become listener order, the
 * configuration becomes the engine's settings, and {@code refresh} is the RefreshService.
 */
class RefreshSchedulerTest {

    private static RefreshScheduler.Config config(long intervalMs, int workers, int maxErrors) {
        return config(intervalMs, workers, maxErrors, EngineSettings.DEFAULT_WAKE_INTERVAL_MS);
    }

    private static RefreshScheduler.Config config(long intervalMs, int workers, int maxErrors, long wakeMs) {
        return (RefreshScheduler.Config) Proxy.newProxyInstance(RefreshSchedulerTest.class.getClassLoader(),
                new Class<?>[] {RefreshScheduler.Config.class}, (proxy, method, args) -> {
                    switch (method.getName()) {
                        case "schedulerIntervalMs": return intervalMs;
                        case "workers": return workers;
                        case "maxConsecutiveErrors": return maxErrors;
                        case "notifyCoalesceMs": return EngineSettings.DEFAULT_NOTIFY_COALESCE_MS;
                        case "wakeIntervalMs": return wakeMs;
                        default: throw new UnsupportedOperationException(method.getName());
                    }
                });
    }

    private static Catalog catalog(DataSource ds) {
        return new Catalog() {
            @Override
            public String version() {
                return "0.33.0";
            }

            @Override
            public String migrationVersion() {
                return "0.33.0";
            }

            @Override
            public DataSource dataSource() {
                return ds;
            }
        };
    }

    @Test
    void whiteboardOrderConfigurationAndManualRefresh() throws Exception {
        try (RefreshDatabase db = new RefreshDatabase("refresh_component")) {
            db.exec("CREATE TABLE src (id int PRIMARY KEY)",
                    "SELECT pgtrickle.create_stream_table('st', 'SELECT id FROM src', '1h')",
                    "INSERT INTO src VALUES (1), (2)");
            List<String> calls = new CopyOnWriteArrayList<>();
            RefreshScheduler component = new RefreshScheduler();
            component.catalog = catalog(db.dataSource());
            component.addListener((e, c) -> calls.add("ranked 5"), Map.of("service.id", 11L, "service.ranking", 5));
            component.addListener((e, c) -> calls.add("unranked"), Map.of("service.id", 10L));
            // OSGi: a ranking that is not an Integer counts as 0; the earlier registration goes first
            component.addListener((e, c) -> calls.add("string ranking"), Map.of("service.id", 12L, "service.ranking", "99"));
            component.activate(config(1000, 1, 3));
            try {
                long id = component.refresh("st");
                assertEquals(List.of("ranked 5", "unranked", "string ranking"), calls);
                assertEquals("MANUAL", db.queryString("SELECT initiated_by FROM pgtrickle.pgt_refresh_history WHERE refresh_id = ?", id));
                assertEquals(0, db.difference("st"));

                calls.clear();
                component.updatedListener((e, c) -> { }, Map.of("service.id", 10L, "service.ranking", 9));
                component.removeListener((RefreshEvent e, java.sql.Connection c) -> { }, Map.of("service.id", 11L));
                component.refresh("st");
                assertEquals(List.of("string ranking"), calls, "10 re-registered as a silent listener, 11 gone");
            } finally {
                component.deactivate();
            }
            assertThrows(SQLException.class, () -> component.refresh("st"), "a deactivated component refreshes nothing");
        }
    }

    @Test
    void invalidConfigurationIsRefusedAtActivation() {
        RefreshScheduler component = new RefreshScheduler();
        component.catalog = catalog(null);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> component.activate(config(1000, 0, 3)));
        assertEquals("workers must be at least 1, not 0", e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> component.activate(config(1000, 1, 3, -1)));
        assertEquals("wakeIntervalMs must be at least 0, not -1", e.getMessage());
    }
}
