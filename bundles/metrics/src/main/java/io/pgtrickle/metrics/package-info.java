/** The Prometheus endpoint. No exported API: the format is Prometheus' text format 0.0.4. */
package io.pgtrickle.metrics;
