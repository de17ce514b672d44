/**
 * Notification sinks: how the refreshes that changed a stream table reach places other than
 * PostgreSQL's {@code NOTIFY} (webhooks, logs, message brokers, your own code).
 *
 * <p>Register a {@link io.pgtrickle.api.notify.NotificationSink} as an OSGi service with the
 * {@link io.pgtrickle.api.notify.NotificationSinkType} component property type. The notify bundle owns
 * the whiteboard: it registers each sink in the catalog ({@code pgtrickle.pgt_sinks}), so that every
 * notification on one of the sink's channels is written to a durable outbox in the refresh
 * transaction, and it delivers the outbox to the sink at least once, in refresh order per stream
 * table, with retries and a dead-letter table.
 */
@Export
@Version("1.0.0")
package io.pgtrickle.api.notify;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
