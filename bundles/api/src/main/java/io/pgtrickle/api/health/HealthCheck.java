package io.pgtrickle.api.health;

import org.osgi.annotation.versioning.ConsumerType;

/**
 * One named health check. Register it with {@link HealthCheckService}, e.g.
 * {@code @Component @HealthCheckService(name = "database") public class DatabaseCheck implements HealthCheck}.
 * The health bundle runs every registered check for each request, in parallel and with a time limit,
 * so a check may block (on the database, say), but should set its own timeouts too.
 */
@ConsumerType
public interface HealthCheck {

    /** The check's verdict now. An exception counts as {@link Status#CRITICAL} with its message. */
    Result execute();

    /** How healthy. Any {@link #CRITICAL} makes {@code /health} answer 503. */
    enum Status {
        OK, WARN, CRITICAL
    }

    /** A verdict and a line for an operator (never a secret). */
    record Result(Status status, String message) {

        public static Result ok(String message) {
            return new Result(Status.OK, message);
        }

        public static Result critical(String message) {
            return new Result(Status.CRITICAL, message);
        }
    }
}
