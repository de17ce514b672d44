package io.pgtrickle.metrics;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.metrics.MetricSource;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Map;
import java.util.concurrent.ConcurrentSkipListMap;
import org.osgi.framework.Constants;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.component.annotations.ReferenceCardinality;
import org.osgi.service.component.annotations.ReferencePolicy;
import org.osgi.service.component.annotations.ReferencePolicyOption;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One scrape: the catalog's figures ({@link CatalogFigures}), then every {@link MetricSource}'s (the
 * container's own: scheduler, deliveries, SSE clients), in the order the sources registered. The one
 * owner of the {@link MetricSource} whiteboard; {@code /metrics} and {@code pgtrickle:metrics} both
 * ask it.
 */
@Component(service = MetricsCollector.class)
public class MetricsCollector {

    private static final Logger LOG = LoggerFactory.getLogger(MetricsCollector.class);

    /** Why there are no figures now (the catalog is not there, or cannot be read). */
    static final class Unavailable extends Exception {
        private static final long serialVersionUID = 1L;

        Unavailable(String message) {
            super(message);
        }
    }

    @Reference(cardinality = ReferenceCardinality.OPTIONAL, policy = ReferencePolicy.DYNAMIC)
    volatile Catalog catalog;

    /** By service id: the order they registered in, so that a scrape's families come in a stable order. */
    private final Map<Long, MetricSource> sources = new ConcurrentSkipListMap<>();

    @Reference(service = MetricSource.class, cardinality = ReferenceCardinality.MULTIPLE, policy = ReferencePolicy.DYNAMIC,
            policyOption = ReferencePolicyOption.GREEDY, unbind = "removeSource")
    void addSource(MetricSource source, Map<String, Object> properties) {
        sources.put((Long) properties.get(Constants.SERVICE_ID), source);
    }

    void removeSource(MetricSource source, Map<String, Object> properties) {
        sources.remove((Long) properties.get(Constants.SERVICE_ID));
    }

    /** Every figure in the Prometheus text format 0.0.4. */
    String scrape() throws Unavailable {
        Catalog c = catalog;
        if (c == null) {
            throw new Unavailable("the catalog is not migrated (yet)");
        }
        TextFormat out = new TextFormat();
        try (Connection connection = c.dataSource().getConnection()) {
            // one snapshot for all catalog figures, so that they agree with one another
            connection.setAutoCommit(false);
            connection.setReadOnly(true);
            connection.setTransactionIsolation(Connection.TRANSACTION_REPEATABLE_READ);
            try (Statement s = connection.createStatement()) {
                s.setQueryTimeout(10);
                CatalogFigures.write(s, out);
            } finally {
                connection.rollback();
            }
        } catch (SQLException e) {
            throw new Unavailable("cannot read the catalog: " + e.getMessage());
        }
        for (MetricSource source : sources.values()) {
            SourceWriter writer = new SourceWriter(out);
            try {
                source.collect(writer);
                writer.commit();
            } catch (Exception | LinkageError e) {
                LOG.warn("metrics: {} failed, its figures are left out of this scrape: {}", source.getClass().getName(), e.toString());
            }
        }
        return out.toString();
    }
}
