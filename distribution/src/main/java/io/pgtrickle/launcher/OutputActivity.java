package io.pgtrickle.launcher;

import java.io.FilterOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.Charset;
import java.util.function.LongSupplier;

/**
 * A stream in front of {@code System.out} that notes when it was last written to. The bundles log to
 * {@code System.out} (slf4j-simple looks it up at every line), at moments the launcher cannot know in
 * advance: a sink registering, a webhook endpoint starting. The console opens once this has been quiet for
 * a moment, so that its prompt is the last thing on the screen.
 */
final class OutputActivity extends FilterOutputStream {

    private final LongSupplier nanoClock;
    private volatile long lastWrite;

    OutputActivity(OutputStream target, LongSupplier nanoClock) {
        super(target);
        this.nanoClock = nanoClock;
        this.lastWrite = nanoClock.getAsLong();
    }

    /** Puts a tracking stream in place of {@code System.out} and returns the tracker. */
    static OutputActivity installOnSystemOut() {
        OutputActivity activity = new OutputActivity(System.out, System::nanoTime);
        System.setOut(new PrintStream(activity, true, Charset.defaultCharset()));
        return activity;
    }

    @Override
    public void write(int b) throws IOException {
        lastWrite = nanoClock.getAsLong();
        out.write(b);
    }

    @Override
    public void write(byte[] b, int off, int len) throws IOException {
        // FilterOutputStream would write byte by byte
        lastWrite = nanoClock.getAsLong();
        out.write(b, off, len);
    }

    /** Nanoseconds since the last write (or since creation). */
    long quietNanos() {
        return nanoClock.getAsLong() - lastWrite;
    }
}
