package io.pgtrickle.launcher;

/** The command line of {@code bin/pgtrickle}. */
record Options(boolean headless, boolean help) {

    static final String USAGE = String.join(System.lineSeparator(),
            "usage: pgtrickle [--headless] [--help]",
            "  --headless  no Gogo console; stop with Ctrl-C or SIGTERM (implied when stdin/stdout is not a terminal)",
            "  --help      print this text",
            "Settings come from -D options in JAVA_OPTS, PGTRICKLE_* environment variables and etc/pgtrickle.properties.");

    /** @throws IllegalArgumentException naming the first argument that is not understood */
    static Options parse(String... args) {
        boolean headless = false;
        boolean help = false;
        for (String arg : args) {
            switch (arg) {
                case "--headless" -> headless = true;
                case "--help", "-h" -> help = true;
                default -> throw new IllegalArgumentException("unknown argument '" + arg + "'");
            }
        }
        return new Options(headless, help);
    }
}
