package io.pgtrickle.api.notify;

import org.osgi.annotation.versioning.ConsumerType;

/**
 * Receives the notifications of the subscription channels it is registered for. Implement it,
 * register it as a service with {@link NotificationSinkType} (its type, name and channels), and the
 * notify bundle delivers to it.
 *
 * <p>Contract:
 * <ul>
 *   <li>Returning normally means delivered: the notification is removed from the outbox.</li>
 *   <li>Throwing means not delivered: it is retried later, with exponential backoff and jitter, up to
 *       the sink's {@code maxAttempts}; then it goes to the dead letters ({@code
 *       pgtrickle.list_dead_letters()}, {@code pgtrickle.replay_dead_letters(...)}).
 *       {@link SinkGoneException} disables the sink instead (e.g. HTTP 410 Gone).</li>
 *   <li>Delivery is at least once: after a crash or a timeout a notification may come again, with the
 *       same {@link Notification#id()}; receivers de-duplicate on it.</li>
 *   <li>Calls for one stream table come one at a time, in refresh order; calls for different stream
 *       tables may run at the same time on different threads.</li>
 *   <li>A call that takes longer than the sink's {@code timeoutMs} counts as failed; the thread is
 *       interrupted. A slow or hanging sink delays only its own deliveries, never a refresh or another
 *       sink.</li>
 * </ul>
 */
@ConsumerType
public interface NotificationSink {

    void deliver(Notification notification) throws Exception;
}
