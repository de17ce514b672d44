package io.pgtrickle.datasource;

import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;
import io.pgtrickle.api.jdbc.PgTrickleDataSource;
import io.pgtrickle.api.jdbc.Redaction;
import java.sql.Connection;
import java.sql.SQLException;
import java.util.Hashtable;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import javax.sql.DataSource;
import org.osgi.annotation.bundle.Capability;
import org.osgi.framework.BundleContext;
import org.osgi.framework.ServiceRegistration;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.ConfigurationPolicy;
import org.osgi.service.component.annotations.Deactivate;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.jdbc.DataSourceFactory;
import org.osgi.service.metatype.annotations.AttributeDefinition;
import org.osgi.service.metatype.annotations.AttributeType;
import org.osgi.service.metatype.annotations.Designate;
import org.osgi.service.metatype.annotations.ObjectClassDefinition;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The platform's connection pool. It is built from pgjdbc's {@link DataSourceFactory} (so the driver
 * is found through the service registry, not the class path) and published as a {@link DataSource}
 * service only once a connection succeeds. Until then a background thread retries with exponential
 * backoff, logging one error that names the URL (never the password) and staying quiet after that:
 * a database that is down when the container starts is normal, not a crash.
 *
 * <p>A configuration change (ConfigAdmin PID {@value #PID}) re-creates the component, so a corrected
 * URL or password takes effect without a restart.
 */
// Registered by hand (only once the database answers), so bnd cannot see it: declare it, or resolvers
// that enforce service requirements (Karaf's) refuse bundles that reference the DataSource.
@Capability(namespace = "osgi.service", attribute = "objectClass:List<String>=javax.sql.DataSource", uses = DataSource.class)
@Component(configurationPid = PooledDataSource.PID, configurationPolicy = ConfigurationPolicy.REQUIRE, immediate = true)
@Designate(ocd = PooledDataSource.Config.class)
public class PooledDataSource {

    static final String PID = "io.pgtrickle.datasource";

    private static final Logger LOG = LoggerFactory.getLogger(PooledDataSource.class);

    @ObjectClassDefinition(name = "pgtrickle database connection",
            description = "The PostgreSQL database whose stream tables this container maintains.")
    public @interface Config {
        @AttributeDefinition(description = "JDBC URL, jdbc:postgresql://host:port/database")
        String url();

        @AttributeDefinition(description = "Database user")
        String user() default "postgres";

        @AttributeDefinition(type = AttributeType.PASSWORD, description = "Password of the user (never logged)")
        String password() default "";

        @AttributeDefinition(min = "1", description = "Most pooled connections")
        int maxPoolSize() default 8;

        @AttributeDefinition(min = "1", description = "Seconds to wait for one connection attempt")
        int connectTimeoutSeconds() default 10;

        @AttributeDefinition(min = "1", description = "Longest pause between reconnection attempts while the database is unreachable, in seconds")
        int maxRetryDelaySeconds() default 30;
    }

    @Reference(target = "(osgi.jdbc.driver.class=org.postgresql.Driver)")
    private DataSourceFactory driver;

    private volatile HikariDataSource pool;
    private volatile ServiceRegistration<DataSource> registration;
    private Thread connector;
    private String safeUrl;

    @Activate
    void activate(BundleContext context, Config config) throws SQLException {
        JdbcUrls.requirePostgresUrl(config.url());
        safeUrl = Redaction.jdbcUrl(config.url());
        Properties props = new Properties();
        props.setProperty(DataSourceFactory.JDBC_URL, config.url());
        props.setProperty(DataSourceFactory.JDBC_USER, config.user());
        if (!config.password().isEmpty()) {
            props.setProperty(DataSourceFactory.JDBC_PASSWORD, config.password());
        }
        DataSource unpooled = driver.createDataSource(props);

        HikariConfig hikari = new HikariConfig();
        hikari.setPoolName("pgtrickle");
        hikari.setDataSource(unpooled);
        hikari.setMaximumPoolSize(config.maxPoolSize());
        hikari.setMinimumIdle(Math.min(2, config.maxPoolSize()));
        hikari.setConnectionTimeout(TimeUnit.SECONDS.toMillis(config.connectTimeoutSeconds()));
        // Do not fail (or block) activation on an unreachable database; the connector thread waits for it.
        hikari.setInitializationFailTimeout(-1);
        pool = new HikariDataSource(hikari);

        connector = new Thread(() -> connect(context, config), "pgtrickle-datasource-connect");
        connector.setDaemon(true);
        connector.start();
    }

    private void connect(BundleContext context, Config config) {
        long delayMillis = 250;
        long maxDelayMillis = TimeUnit.SECONDS.toMillis(config.maxRetryDelaySeconds());
        boolean reported = false;
        while (!Thread.currentThread().isInterrupted()) {
            try (Connection c = pool.getConnection()) {
                if (c.isValid(config.connectTimeoutSeconds())) {
                    publish(context, config);
                    LOG.info("connected to {} as {}{}", safeUrl, config.user(), reported ? " (database reachable again)" : "");
                    return;
                }
            } catch (SQLException e) {
                if (!reported) {
                    LOG.error("cannot connect to {} as {}: {} (retrying with backoff up to {}s; fix PID {} or the database)",
                            safeUrl, config.user(), rootCause(e), config.maxRetryDelaySeconds(), PID);
                    reported = true;
                } else {
                    LOG.debug("still cannot connect to {}: {}", safeUrl, rootCause(e));
                }
            } catch (RuntimeException e) {
                if (pool.isClosed()) {
                    return; // deactivated while connecting
                }
                throw e;
            }
            try {
                Thread.sleep(delayMillis);
            } catch (InterruptedException e) {
                return;
            }
            delayMillis = Math.min(delayMillis * 2, maxDelayMillis);
        }
    }

    /** Hikari wraps the driver's error ("password authentication failed ...") in a pool timeout. */
    static String rootCause(Throwable e) {
        Throwable root = e;
        while (root.getCause() != null && root.getCause() != root) {
            root = root.getCause();
        }
        return root == e ? e.getMessage() : root.getMessage() + " (" + e.getMessage() + ")";
    }

    private synchronized void publish(BundleContext context, Config config) {
        if (pool.isClosed()) {
            return;
        }
        Hashtable<String, Object> properties = new Hashtable<>();
        properties.put(PgTrickleDataSource.NAME_PROPERTY, PgTrickleDataSource.DEFAULT_NAME);
        properties.put(PgTrickleDataSource.URL_PROPERTY, safeUrl);
        properties.put("user", config.user());
        registration = context.registerService(DataSource.class, pool, properties);
    }

    @Deactivate
    synchronized void deactivate() throws InterruptedException {
        if (connector != null) {
            connector.interrupt();
        }
        if (registration != null) {
            registration.unregister();
            registration = null;
        }
        pool.close();
        if (connector != null) {
            connector.join(TimeUnit.SECONDS.toMillis(10));
        }
    }
}
