package io.pgtrickle.api.notify;

import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;
import org.osgi.service.component.annotations.ComponentPropertyType;

/**
 * Registers a {@link NotificationSink} with its type, e.g.
 * {@code @Component @NotificationSinkType(type = "webhook") public class WebhookSink implements NotificationSink}.
 * Produces the service properties {@code pgtrickle.sink.type}; the sink's configuration (or
 * component properties) may add {@code pgtrickle.sink.name}, {@code pgtrickle.sink.channels},
 * {@code pgtrickle.sink.maxAttempts} and {@code pgtrickle.sink.timeoutMs} (see the constants).
 */
@ComponentPropertyType
@Retention(RetentionPolicy.CLASS)
@Target(ElementType.TYPE)
public @interface NotificationSinkType {

    String PREFIX_ = "pgtrickle.sink.";

    /** Service property: the sink's type ({@code webhook}, {@code log}, ...). */
    String TYPE = "pgtrickle.sink.type";
    /** Service property: the instance's name, unique per type (default: the type); the sink id is {@code type:name}. */
    String NAME = "pgtrickle.sink.name";
    /** Service property: the subscription channels it receives ({@code *}, the default, for all). */
    String CHANNELS = "pgtrickle.sink.channels";
    /** Service property: deliveries tried before a notification becomes a dead letter (default 10). */
    String MAX_ATTEMPTS = "pgtrickle.sink.maxAttempts";
    /** Service property: milliseconds one delivery may take (default 10000). */
    String TIMEOUT_MS = "pgtrickle.sink.timeoutMs";

    /** The sink's type. */
    String type();
}
