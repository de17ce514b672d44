/**
 * Health checks, in the shape of Apache Felix Health Checks: a check is a plain
 * {@link io.pgtrickle.api.health.HealthCheck} service registered with the
 * {@link io.pgtrickle.api.health.HealthCheckService} component property type; the health bundle owns
 * the whiteboard and serves every check's result at {@code /health}. Any bundle can add a check.
 */
@Export
@Version("1.0.0")
package io.pgtrickle.api.health;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
