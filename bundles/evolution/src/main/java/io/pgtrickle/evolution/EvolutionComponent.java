package io.pgtrickle.evolution;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.schema.SchemaUnit;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Deactivate;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.metatype.annotations.AttributeDefinition;
import org.osgi.service.metatype.annotations.Designate;
import org.osgi.service.metatype.annotations.ObjectClassDefinition;

/**
 * The evolution bundle as a DS component: while a catalog of at least 0.33.0 is available, runs an
 * {@link EvolutionRunner} on its data source. Stopping the bundle (or the container) mid-build
 * cancels the step in progress; its transaction rolls back and the next runner, here or in another
 * container, does it again.
 */
@Component(service = {}, configurationPid = EvolutionComponent.PID, immediate = true)
@Designate(ocd = EvolutionComponent.Config.class)
public class EvolutionComponent {

    static final String PID = "io.pgtrickle.evolution";

    @ObjectClassDefinition(name = "pgtrickle shadow evolution",
            description = "Builds, catches up and swaps in the shadow stream tables of pgtrickle.alter_query(..., shadow_build => true). "
                    + "The evolution itself is tuned in PostgreSQL: pg_trickle.shadow_refresh_throttle_ms, "
                    + "pg_trickle.shadow_convergence_timeout, pg_trickle.shadow_swap_lock_timeout_ms.")
    public @interface Config {
        @AttributeDefinition(min = "50", description = "Milliseconds between two looks for evolutions that were started or are due")
        long pollIntervalMs() default 1_000;
    }

    @Reference(target = "(" + Catalog.VERSION_PROPERTY + ">=0.33.0)")
    Catalog catalog;

    /** This bundle's SQL, in place at this bundle's version: without it there is nothing to run. */
    @Reference(target = "(" + SchemaUnit.UNIT_PROPERTY + "=io.pgtrickle.evolution)")
    SchemaUnit schemaUnit;

    private EvolutionRunner runner;

    @Activate
    void activate(Config config) {
        runner = new EvolutionRunner(catalog.dataSource(), Math.max(50, config.pollIntervalMs()));
        runner.start();
    }

    @Deactivate
    void deactivate() {
        runner.close();
    }
}
