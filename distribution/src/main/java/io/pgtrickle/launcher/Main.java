package io.pgtrickle.launcher;

import java.io.PrintStream;

/**
 * Entry point of {@code bin/pgtrickle}. Exit status: 0 after a normal stop (Gogo's {@code stop 0},
 * {@code exit}, Ctrl-D), 1 when startup fails (one line on stderr says why), 2 for a bad command line.
 * On SIGTERM or Ctrl-C the JVM's own convention applies: 143 or 130, after a clean shutdown.
 */
public final class Main {

    private Main() {
    }

    public static void main(String[] args) {
        System.exit(run(args, System.out, System.err));
    }

    static int run(String[] args, PrintStream out, PrintStream err) {
        Options options;
        try {
            options = Options.parse(args);
        } catch (IllegalArgumentException e) {
            err.println("pgtrickle: error: " + e.getMessage());
            err.println(Options.USAGE);
            return 2;
        }
        if (options.help()) {
            out.println(Options.USAGE);
            return 0;
        }
        try {
            return new Launcher(options, out, err).run();
        } catch (LauncherException e) {
            err.println("pgtrickle: error: " + e.getMessage());
            return 1;
        } catch (RuntimeException | LinkageError e) {
            // a bug or a broken lib/, not an operator mistake: keep the stack trace
            err.println("pgtrickle: error: unexpected failure: " + e);
            e.printStackTrace(err);
            return 1;
        }
    }
}
