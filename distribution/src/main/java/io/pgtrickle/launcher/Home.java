package io.pgtrickle.launcher;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The unpacked distribution: {@code bin/ lib/ bundle/ deploy/ etc/ data/}. Every path the launcher and
 * the framework use is derived from here, so the directory can be moved or copied as a whole.
 */
final class Home {

    /** Set by {@code bin/pgtrickle} to the directory above {@code bin/}. */
    static final String PROPERTY = "pgtrickle.home";

    private final Path root;

    private Home(Path root) {
        this.root = root;
    }

    static Home fromSystemProperty() throws LauncherException {
        return of(System.getProperty(PROPERTY));
    }

    static Home of(String value) throws LauncherException {
        if (value == null || value.isBlank()) {
            throw new LauncherException(PROPERTY + " is not set: start pgtrickle with bin/pgtrickle, or pass -D"
                    + PROPERTY + "=<the unpacked distribution>");
        }
        Path root = Path.of(value).toAbsolutePath().normalize();
        if (!Files.isDirectory(root)) {
            throw new LauncherException("pgtrickle home " + root + " does not exist or is not a directory");
        }
        Home home = new Home(root);
        if (!Files.isDirectory(home.bundles())) {
            throw new LauncherException("pgtrickle home " + root + " has no bundle/ directory: "
                    + PROPERTY + " must name an unpacked pgtrickle distribution");
        }
        return home;
    }

    Path root() {
        return root;
    }

    Path etc() {
        return root.resolve("etc");
    }

    Path bundles() {
        return root.resolve("bundle");
    }

    Path deploy() {
        return root.resolve("deploy");
    }

    Path data() {
        return root.resolve("data");
    }

    Path pgtrickleProperties() {
        return etc().resolve("pgtrickle.properties");
    }

    Path configProperties() {
        return etc().resolve("config.properties");
    }

    Path systemProperties() {
        return etc().resolve("system.properties");
    }

    /** Shown to the operator: paths below home are printed relative to it, which is shorter and stable. */
    String display(Path path) {
        Path absolute = path.toAbsolutePath().normalize();
        return absolute.startsWith(root) ? root.relativize(absolute).toString() : absolute.toString();
    }
}
