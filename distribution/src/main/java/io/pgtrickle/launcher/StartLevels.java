package io.pgtrickle.launcher;

import java.util.Map;
import java.util.Set;
import org.osgi.framework.Bundle;
import org.osgi.framework.BundleContext;
import org.osgi.framework.Constants;
import org.osgi.framework.Version;
import org.osgi.framework.startlevel.BundleStartLevel;

/**
 * Logging starts before everything else. Two slf4j lines live side by side: 1.7 for our bundles and
 * 2 for Jetty. Started together, the resolver may wire slf4j-simple 1.7 (whose import has no upper
 * bound) to slf4j-api 2, and every logger of ours then fails with a loader constraint violation. And
 * slf4j 2 looks for its provider once, through SPI Fly: a first logger made before slf4j-simple 2 is
 * registered falls back to a silent no-op logger for good. So slf4j 1.7 resolves first (level 1),
 * then SPI Fly and slf4j 2 (level 2), then the rest (level 3, also the level of bundles hot-deployed
 * later).
 */
final class StartLevels {

    static final int LOGGING_1 = 1;
    static final int LOGGING_2 = 2;
    static final int BUNDLES = 3;

    private static final Set<String> SLF4J = Set.of("slf4j.api", "slf4j.simple");
    private static final Set<String> SERVICE_LOADER = Set.of("org.apache.aries.spifly.dynamic.bundle", "org.objectweb.asm",
            "org.objectweb.asm.commons", "org.objectweb.asm.tree", "org.objectweb.asm.tree.analysis", "org.objectweb.asm.util");

    private StartLevels() {
    }

    /** Framework properties: where the framework ends up, and the level of every bundle not placed below. */
    static Map<String, String> frameworkProperties() {
        return Map.of(Constants.FRAMEWORK_BEGINNING_STARTLEVEL, Integer.toString(BUNDLES), "felix.startlevel.bundle",
                Integer.toString(BUNDLES));
    }

    /** Places the installed logging bundles; call after the bundles are installed, before the framework starts. */
    static void apply(BundleContext context) {
        for (Bundle bundle : context.getBundles()) {
            if (bundle.getBundleId() == 0) {
                continue;
            }
            int level = level(bundle.getSymbolicName(), bundle.getVersion());
            bundle.adapt(BundleStartLevel.class).setStartLevel(level);
        }
    }

    static int level(String symbolicName, Version version) {
        if (SLF4J.contains(symbolicName)) {
            return version.getMajor() < 2 ? LOGGING_1 : LOGGING_2;
        }
        return SERVICE_LOADER.contains(symbolicName) ? LOGGING_2 : BUNDLES;
    }
}
