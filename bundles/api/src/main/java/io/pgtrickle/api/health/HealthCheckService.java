package io.pgtrickle.api.health;

import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;
import org.osgi.service.component.annotations.ComponentPropertyType;

/**
 * Registers a {@link HealthCheck} with its name (service property {@value #NAME}), as Felix Health
 * Checks' {@code @HealthCheckService} does.
 */
@ComponentPropertyType
@Retention(RetentionPolicy.CLASS)
@Target(ElementType.TYPE)
public @interface HealthCheckService {

    String PREFIX_ = "hc.";

    /** Service property: the check's name, unique among the checks. */
    String NAME = "hc.name";

    /** The check's name as {@code /health} reports it. */
    String name();
}
