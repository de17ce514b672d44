package io.pgtrickle.notify;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.metrics.MetricSource;
import io.pgtrickle.api.metrics.MetricWriter;
import io.pgtrickle.api.metrics.MetricWriter.Type;
import io.pgtrickle.api.schema.SchemaUnit;
import io.pgtrickle.api.notify.NotificationSink;
import java.util.LinkedHashMap;
import java.util.Map;
import org.osgi.framework.Constants;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Deactivate;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.component.annotations.ReferenceCardinality;
import org.osgi.service.component.annotations.ReferencePolicy;
import org.osgi.service.component.annotations.ReferencePolicyOption;
import org.osgi.service.metatype.annotations.AttributeDefinition;
import org.osgi.service.metatype.annotations.Designate;
import org.osgi.service.metatype.annotations.ObjectClassDefinition;

/**
 * The notify bundle as a DS component: while a migrated {@link Catalog} is available, runs a
 * {@link NotificationDispatcher} on its data source, and is the one owner of the
 * {@link NotificationSink} whiteboard. Sinks bound before activation (or across a configuration
 * change, which re-creates the dispatcher) are kept here and handed to each new dispatcher. Writes
 * the deliveries per sink for {@code /metrics} (a {@link MetricSource}).
 */
@Component(service = MetricSource.class, configurationPid = NotifyComponent.PID, immediate = true)
@Designate(ocd = NotifyComponent.Config.class)
public class NotifyComponent implements MetricSource {

    static final String PID = "io.pgtrickle.notify";

    @ObjectClassDefinition(name = "pgtrickle notification sinks",
            description = "Delivers the durable outbox of the subscriptions to the registered notification sinks "
                    + "(webhooks, log, ...), at least once, in refresh order per stream table.")
    public @interface Config {
        @AttributeDefinition(min = "10", description = "Milliseconds between two looks for notifications due for an idle sink, "
                + "and for subscriptions' folded notifications whose coalescing window has closed")
        long pollIntervalMs() default 200;

        @AttributeDefinition(min = "1", description = "Notifications claimed at once for one sink (at most one per stream table)")
        int batchSize() default 50;

        @AttributeDefinition(min = "1", description = "Notifications of one sink delivered at once, each of another stream "
                + "table (a sink's calls run on this many threads; notifications of one stream table are always delivered one "
                + "after the other)")
        int parallelDeliveries() default DispatcherSettings.PARALLEL_DELIVERIES;

        @AttributeDefinition(min = "1000", description = "Milliseconds a claimed notification is reserved for this container; "
                + "after a crash another container delivers it once this has passed")
        int leaseMs() default 60_000;

        @AttributeDefinition(min = "0", description = "Milliseconds before the first retry of a failed delivery; "
                + "doubles with every further attempt, with 20% jitter")
        long retryBaseMs() default 1_000;

        @AttributeDefinition(min = "0", description = "Longest wait between two retries, in milliseconds")
        long retryMaxMs() default 300_000;
    }

    private final Map<Long, Bound> bound = new LinkedHashMap<>(); // guarded by this

    private record Bound(NotificationSink sink, Map<String, Object> properties) {
    }

    @Reference(target = "(" + Catalog.VERSION_PROPERTY + ">=0.33.0)")
    Catalog catalog;

    /** This bundle's SQL, in place at this bundle's version: without it there is nothing to run. */
    @Reference(target = "(" + SchemaUnit.UNIT_PROPERTY + "=io.pgtrickle.notify)")
    SchemaUnit schemaUnit;

    private NotificationDispatcher dispatcher; // guarded by this
    private TrailingNotifications trailing;

    @Reference(service = NotificationSink.class, cardinality = ReferenceCardinality.MULTIPLE,
            policy = ReferencePolicy.DYNAMIC, policyOption = ReferencePolicyOption.GREEDY, unbind = "removeSink",
            updated = "updatedSink")
    synchronized void addSink(NotificationSink sink, Map<String, Object> properties) {
        bound.put(serviceId(properties), new Bound(sink, properties));
        if (dispatcher != null) {
            dispatcher.add(sink, properties);
        }
    }

    synchronized void updatedSink(NotificationSink sink, Map<String, Object> properties) {
        addSink(sink, properties);
    }

    synchronized void removeSink(NotificationSink sink, Map<String, Object> properties) {
        bound.remove(serviceId(properties));
        if (dispatcher != null) {
            dispatcher.remove(properties);
        }
    }

    private static long serviceId(Map<String, Object> properties) {
        return (Long) properties.get(Constants.SERVICE_ID);
    }

    @Activate
    synchronized void activate(Config config) {
        long retryBase = Math.max(0, config.retryBaseMs());
        dispatcher = new NotificationDispatcher(catalog.dataSource(), new DispatcherSettings(Math.max(10, config.pollIntervalMs()),
                Math.max(1, config.batchSize()), Math.max(1_000, config.leaseMs()), retryBase,
                Math.max(retryBase, config.retryMaxMs()), Math.max(1, config.parallelDeliveries())));
        for (Bound b : bound.values()) {
            dispatcher.add(b.sink(), b.properties());
        }
        dispatcher.start();
        trailing = new TrailingNotifications(catalog.dataSource(), Math.max(10, config.pollIntervalMs()));
    }

    @Override
    public void collect(MetricWriter out) {
        NotificationDispatcher d;
        synchronized (this) {
            d = dispatcher;
        }
        Map<String, SinkFigures> sinks = d == null ? Map.of() : d.figures();
        out.family("pgtrickle_deliveries_total", Type.COUNTER,
                "Calls to a sink in this container by outcome: delivered, failed (retried or dead-lettered), gone (sink disabled)");
        sinks.forEach((sink, f) -> out.sample(Map.of("sink", sink, "outcome", "delivered"), f.delivered.sum())
                .sample(Map.of("sink", sink, "outcome", "failed"), f.failed.sum())
                .sample(Map.of("sink", sink, "outcome", "gone"), f.gone.sum()));
        out.family("pgtrickle_delivery_latency_seconds", Type.HISTOGRAM,
                "From a notification's creation (its refresh's transaction) to the sink accepting it, retries included");
        sinks.forEach((sink, f) -> out.histogram(Map.of("sink", sink), f.latency.snapshot()));
    }

    @Deactivate
    void deactivate() {
        NotificationDispatcher d;
        synchronized (this) {
            d = dispatcher;
            dispatcher = null;
        }
        trailing.close();
        d.close();
    }
}
