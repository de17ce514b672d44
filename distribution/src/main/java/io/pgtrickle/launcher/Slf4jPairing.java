package io.pgtrickle.launcher;

import java.util.Collection;
import org.osgi.framework.BundleContext;
import org.osgi.framework.hooks.resolver.ResolverHook;
import org.osgi.framework.hooks.resolver.ResolverHookFactory;
import org.osgi.framework.wiring.BundleCapability;
import org.osgi.framework.wiring.BundleRequirement;
import org.osgi.framework.wiring.BundleRevision;

/**
 * Keeps slf4j-simple 1.7 wired to slf4j-api 1.7. Its import of {@code org.slf4j} has no upper bound,
 * so with slf4j-api 2 installed too (for Jetty) the resolver may pick 2; slf4j-api 1.7, which our
 * bundles use, then finds a binding compiled against other classes, and every logger fails with a
 * loader constraint violation.
 */
final class Slf4jPairing implements ResolverHookFactory, ResolverHook {

    private static final String API = "slf4j.api";
    private static final String SIMPLE = "slf4j.simple";

    private Slf4jPairing() {
    }

    static void install(BundleContext systemContext) {
        systemContext.registerService(ResolverHookFactory.class, new Slf4jPairing(), null);
    }

    @Override
    public ResolverHook begin(Collection<BundleRevision> triggers) {
        return this;
    }

    @Override
    public void filterMatches(BundleRequirement requirement, Collection<BundleCapability> candidates) {
        BundleRevision requirer = requirement.getRevision();
        if (!SIMPLE.equals(requirer.getSymbolicName())) {
            return;
        }
        int major = requirer.getVersion().getMajor();
        candidates.removeIf(c -> API.equals(c.getRevision().getSymbolicName()) && c.getRevision().getVersion().getMajor() != major);
    }

    @Override
    public void filterResolvable(Collection<BundleRevision> candidates) {
    }

    @Override
    public void filterSingletonCollisions(BundleCapability singleton, Collection<BundleCapability> collisionCandidates) {
    }

    @Override
    public void end() {
    }
}
