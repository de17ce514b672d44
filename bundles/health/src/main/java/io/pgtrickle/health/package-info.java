/** The health endpoint and pgtrickle's own checks. No exported API: the checks' SPI is {@code io.pgtrickle.api.health}. */
package io.pgtrickle.health;
