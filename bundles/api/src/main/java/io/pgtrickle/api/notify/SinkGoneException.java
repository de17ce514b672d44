package io.pgtrickle.api.notify;

/**
 * Thrown by a {@link NotificationSink} whose destination is gone for good (an HTTP endpoint that
 * answered 410 Gone): the sink is disabled, its pending notifications stay in the outbox, and an
 * operator re-enables it with {@code pgtrickle.enable_sink(sink_id)}.
 */
public class SinkGoneException extends Exception {

    private static final long serialVersionUID = 1L;

    public SinkGoneException(String message) {
        super(message);
    }
}
