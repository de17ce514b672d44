package io.pgtrickle.sink.log;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.pgtrickle.api.notify.Notification;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.lang.annotation.Annotation;
import java.lang.reflect.Proxy;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.slf4j.Logger;

class LogSinkTest {

    private static Notification notification(String streamTable, String channel, int attempt) {
        return new Notification("pgt-12", "log:log", streamTable, channel, 17, 15, 3, 5, 2,
                "{\"stream_table\":\"public.totals\"}", Instant.parse("2026-11-25T10:00:00Z"), attempt);
    }

    private static final Notification TOTALS = notification("public.totals", "orders", 1);

    @Test
    void formatsOneStructuredLine() {
        assertEquals("pgtrickle notification id=pgt-12 sink=log:log stream_table=public.totals channel=orders "
                + "refresh_id=17 first_refresh_id=15 refreshes=3 inserted=5 deleted=2", LogSink.format(TOTALS));
    }

    @Test
    void quotesOnlyValuesThatNeedIt() {
        String line = LogSink.format(notification("public.\"my table\"", "orders eu", 1));
        assertEquals("pgtrickle notification id=pgt-12 sink=log:log stream_table=\"public.\\\"my table\\\"\" "
                + "channel=\"orders eu\" refresh_id=17 first_refresh_id=15 refreshes=3 inserted=5 deleted=2", line);
    }

    @Test
    void lineBreaksAreEscapedSoItStaysOneLine() {
        String line = LogSink.format(notification("public.totals", "a\nb", 1));
        assertTrue(line.contains(" channel=\"a\\nb\" "), line);
        assertEquals(-1, line.indexOf('\n'));
    }

    @Test
    void redeliveryShowsTheAttempt() {
        assertTrue(LogSink.format(notification("public.totals", "orders", 3)).endsWith(" deleted=2 attempt=3"));
    }

    @Test
    void defaultsToInfo() {
        Recorder recorder = new Recorder();
        LogSink sink = new LogSink(recorder.logger());
        sink.deliver(TOTALS);
        assertEquals(List.of("info:" + LogSink.format(TOTALS)), recorder.calls);
    }

    @Test
    void logsAtTheConfiguredLevel() {
        for (String level : List.of("INFO", "DEBUG", "WARN", "debug", " warn ")) {
            Recorder recorder = new Recorder();
            LogSink sink = new LogSink(recorder.logger());
            sink.configure(config(level));
            sink.deliver(TOTALS);
            assertEquals(List.of(level.trim().toLowerCase() + ":" + LogSink.format(TOTALS)), recorder.calls, level);
        }
    }

    @Test
    void anUnknownLevelIsInfoWithAWarning() {
        Recorder recorder = new Recorder();
        LogSink sink = new LogSink(recorder.logger());
        sink.configure(config("TRACE"));
        assertEquals(LogSink.Level.INFO, sink.level());
        assertEquals(1, recorder.calls.size());
        assertTrue(recorder.calls.get(0).startsWith("warn:"), recorder.calls.get(0));
        recorder.calls.clear();
        sink.deliver(TOTALS);
        assertEquals(List.of("info:" + LogSink.format(TOTALS)), recorder.calls);
    }

    @Test
    void aDisabledLevelLogsNothing() {
        Recorder recorder = new Recorder();
        recorder.enabled = false;
        LogSink sink = new LogSink(recorder.logger());
        sink.configure(config("DEBUG"));
        sink.deliver(TOTALS);
        assertEquals(List.of(), recorder.calls);
    }

    /** Through the real binding: slf4j-simple writes the line to System.err; DEBUG is off by default. */
    @Test
    void slf4jSimpleWritesTheLine() {
        PrintStream err = System.err;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        System.setErr(new PrintStream(out, true, StandardCharsets.UTF_8));
        try {
            LogSink sink = new LogSink();
            sink.configure(config("INFO"));
            sink.deliver(TOTALS);
            sink.configure(config("DEBUG"));
            sink.deliver(notification("public.hidden", "orders", 1));
        } finally {
            System.setErr(err);
        }
        String written = out.toString(StandardCharsets.UTF_8);
        assertTrue(written.contains("INFO io.pgtrickle.sink.log.LogSink - " + LogSink.format(TOTALS)), written);
        assertEquals(1, written.lines().count(), written);
    }

    private static LogSink.Config config(String level) {
        return new LogSink.Config() {
            @Override
            public Class<? extends Annotation> annotationType() {
                return LogSink.Config.class;
            }

            @Override
            public String[] pgtrickle_sink_channels() {
                return new String[] {"*"};
            }

            @Override
            public String level() {
                return level;
            }
        };
    }

    /** An slf4j Logger recording {@code level:message} for each info/debug/warn call. */
    private static final class Recorder {
        final List<String> calls = new ArrayList<>();
        boolean enabled = true;

        Logger logger() {
            return (Logger) Proxy.newProxyInstance(Logger.class.getClassLoader(), new Class<?>[] {Logger.class},
                    (proxy, method, args) -> {
                        String name = method.getName();
                        if (name.startsWith("is") && name.endsWith("Enabled")) {
                            return enabled;
                        }
                        if (List.of("info", "debug", "warn").contains(name)) {
                            calls.add(name + ":" + args[0]);
                            return null;
                        }
                        if (name.equals("getName")) {
                            return "recorder";
                        }
                        throw new UnsupportedOperationException(name);
                    });
        }
    }
}
