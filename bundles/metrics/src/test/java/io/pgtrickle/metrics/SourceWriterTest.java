package io.pgtrickle.metrics;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.pgtrickle.api.metrics.Histogram;
import io.pgtrickle.api.metrics.MetricWriter.Type;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** What a MetricSource writes becomes the text format; a clash or a failure half-way adds nothing. */
class SourceWriterTest {

    @Test
    void countersGaugesAndHistogramsInTheTextFormat() {
        Histogram h = new Histogram(0.01, 0.1);
        h.observe(0.005);
        h.observe(0.01);
        h.observe(0.05);
        h.observe(3);
        TextFormat out = new TextFormat();
        SourceWriter w = new SourceWriter(out);
        w.family("pgtrickle_x_total", Type.COUNTER, "Xs").sample(Map.of("sink", "a\"b"), 2);
        w.family("pgtrickle_x_seconds", Type.HISTOGRAM, "X time").histogram(Map.of(), h.snapshot());
        assertEquals("", out.toString(), "nothing before the source is done");
        w.commit();
        assertEquals("""
                # HELP pgtrickle_x_total Xs
                # TYPE pgtrickle_x_total counter
                pgtrickle_x_total{sink="a\\"b"} 2
                # HELP pgtrickle_x_seconds X time
                # TYPE pgtrickle_x_seconds histogram
                pgtrickle_x_seconds_bucket{le="0.01"} 2
                pgtrickle_x_seconds_bucket{le="0.1"} 3
                pgtrickle_x_seconds_bucket{le="+Inf"} 4
                pgtrickle_x_seconds_sum 3.065
                pgtrickle_x_seconds_count 4
                """, out.toString());

        // a second source naming a family already written: that family is dropped, the rest kept
        SourceWriter again = new SourceWriter(out);
        again.family("pgtrickle_x_total", Type.COUNTER, "again").sample(Map.of(), 9);
        again.family("pgtrickle_y", Type.GAUGE, "Y").sample(Map.of(), 1);
        again.commit();
        assertEquals(1, out.toString().split("pgtrickle_x_total\\{").length - 1);
        assertEquals(true, out.toString().endsWith("# TYPE pgtrickle_y gauge\npgtrickle_y 1\n"));
    }

    @Test
    void misuseIsRefused() {
        SourceWriter w = new SourceWriter(new TextFormat());
        assertThrows(IllegalStateException.class, () -> w.sample(Map.of(), 1), "a sample before its family");
        assertThrows(IllegalArgumentException.class, () -> w.family("pgtrickle-x", Type.GAUGE, "bad name"));
        w.family("pgtrickle_g", Type.GAUGE, "G");
        assertThrows(IllegalStateException.class, () -> w.histogram(Map.of(), new Histogram(1).snapshot()));
        assertThrows(IllegalArgumentException.class, () -> w.sample(Map.of("bad-label", "v"), 1));
        assertThrows(IllegalArgumentException.class, () -> new Histogram(1, 1));
    }

    @Test
    void theCommandFiltersByFamilyName() {
        String text = "# HELP pgtrickle_a_total A\n# TYPE pgtrickle_a_total counter\npgtrickle_a_total 1\n"
                + "# HELP pgtrickle_sse_clients B\n# TYPE pgtrickle_sse_clients gauge\npgtrickle_sse_clients 3\n";
        assertEquals("# HELP pgtrickle_sse_clients B\n# TYPE pgtrickle_sse_clients gauge\npgtrickle_sse_clients 3\n",
                MetricsCommands.filter(text, "SSE"));
        assertEquals(text, MetricsCommands.filter(text, ""));
    }
}
