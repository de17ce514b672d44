package io.pgtrickle.health;

import org.osgi.service.metatype.annotations.AttributeDefinition;
import org.osgi.service.metatype.annotations.ObjectClassDefinition;

/** The thresholds of pgtrickle's checks, one configuration (PID {@value #PID}) shared by them. */
@ObjectClassDefinition(name = "pgtrickle health", description = "Thresholds of the checks served at /health.")
public @interface HealthConfig {

    String PID = "io.pgtrickle.health";

    @AttributeDefinition(min = "1", description = "The scheduler is failing when a stream table has been due for longer than this many seconds")
    long schedulerMaxOverdueSeconds() default 60;

    @AttributeDefinition(min = "1", description = "The outbox is stuck when a notification has waited for delivery longer than this many seconds")
    long outboxMaxAgeSeconds() default 300;
}
