package io.pgtrickle.itests.felix;

import static io.pgtrickle.itests.felix.InFramework.SERVICE_TIMEOUT_MILLIS;
import static io.pgtrickle.itests.felix.InFramework.assertAllBundlesActive;
import static io.pgtrickle.itests.felix.InFramework.assertCatalogMigrated;
import static io.pgtrickle.itests.felix.InFramework.assertNoServiceFor;
import static io.pgtrickle.itests.felix.InFramework.awaitService;
import static io.pgtrickle.itests.felix.InFramework.componentConfigurations;
import static io.pgtrickle.itests.felix.InFramework.componentReport;
import static io.pgtrickle.itests.felix.InFramework.expectedVersion;
import static io.pgtrickle.itests.felix.InFramework.properties;
import static io.pgtrickle.itests.felix.InFramework.requiredSetting;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.fail;
import static org.ops4j.pax.exam.CoreOptions.frameworkProperty;
import static org.ops4j.pax.exam.CoreOptions.options;

import io.pgtrickle.api.catalog.Catalog;
import io.pgtrickle.api.jdbc.PgTrickleDataSource;
import io.pgtrickle.testing.TestDatabase;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import javax.sql.DataSource;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.ops4j.pax.exam.Configuration;
import org.ops4j.pax.exam.Option;
import org.ops4j.pax.exam.junit.PaxExam;
import org.ops4j.pax.exam.spi.reactors.ExamReactorStrategy;
import org.ops4j.pax.exam.spi.reactors.PerClass;
import org.osgi.framework.Bundle;
import org.osgi.service.cm.ConfigurationAdmin;

/**
 * A wrong password is an operator mistake the container must survive: nothing is published, every
 * bundle keeps running, and correcting the configuration brings the catalog up without a restart.
 * The database role here has a real password that the server checks (see
 * {@link FelixOptions#passwordRole}).
 */
@RunWith(PaxExam.class)
@ExamReactorStrategy(PerClass.class)
public class WrongPasswordIT {

    /** How long the broken configuration must publish nothing, once the component has it. */
    private static final long QUIET_MILLIS = TimeUnit.SECONDS.toMillis(3);

    @Configuration
    public Option[] configuration() {
        TestDatabase.Database db = FelixOptions.database("felix_badpw");
        String password = "right-" + UUID.randomUUID();
        String role = FelixOptions.passwordRole(db, password);
        return options(
                FelixOptions.platform(),
                frameworkProperty(ContainerSettings.DB_URL).value(db.url()),
                frameworkProperty(ContainerSettings.DB_USER).value(role),
                frameworkProperty(ContainerSettings.DB_PASSWORD).value(password),
                frameworkProperty(ContainerSettings.DB_WRONG_PASSWORD).value("wrong-" + UUID.randomUUID()));
    }

    @Test
    public void wrongPasswordPublishesNothingUntilCorrected() throws Exception {
        String url = requiredSetting(ContainerSettings.DB_URL);
        String user = requiredSetting(ContainerSettings.DB_USER);
        String wrong = requiredSetting(ContainerSettings.DB_WRONG_PASSWORD);
        ConfigurationAdmin configurationAdmin = awaitService(ConfigurationAdmin.class, null, SERVICE_TIMEOUT_MILLIS);
        org.osgi.service.cm.Configuration configuration = configurationAdmin.getConfiguration(FelixOptions.DATASOURCE_PID, "?");

        // A 1 s connection timeout (the pool's default is 10 s) makes the first attempt with the wrong
        // password fail, and the component log it, well inside the quiet period below.
        configuration.update(properties("url", url, "user", user, "password", wrong, "connectTimeoutSeconds", 1));
        awaitComponentConfiguredWith(wrong);
        assertNoServiceFor(DataSource.class, PgTrickleDataSource.DEFAULT_TARGET, QUIET_MILLIS);
        assertNoServiceFor(Catalog.class, null, 0);
        assertAllBundlesActive("io.pgtrickle.api", "io.pgtrickle.datasource", "io.pgtrickle.catalog");
        assertEquals("framework state", Bundle.ACTIVE, InFramework.context().getBundle(0).getState());

        // the same configuration, with only the password corrected
        configuration.update(properties("url", url, "user", user, "password", requiredSetting(ContainerSettings.DB_PASSWORD),
                "connectTimeoutSeconds", 1));
        Catalog catalog = awaitService(Catalog.class, null, SERVICE_TIMEOUT_MILLIS);
        assertEquals(expectedVersion(), catalog.version());
        DataSource dataSource = awaitService(DataSource.class, PgTrickleDataSource.DEFAULT_TARGET, SERVICE_TIMEOUT_MILLIS);
        assertCatalogMigrated(dataSource, catalog.migrationVersion());
    }

    /**
     * Waits (bounded) until SCR hands the datasource component a configuration with this password, so
     * the quiet period afterwards measures the component's reaction and not ConfigAdmin's delivery.
     */
    private static void awaitComponentConfiguredWith(String password) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(SERVICE_TIMEOUT_MILLIS);
        while (System.nanoTime() < deadline) {
            boolean delivered = componentConfigurations(FelixOptions.DATASOURCE_PID).stream()
                    .anyMatch(c -> password.equals(c.properties.get("password")));
            if (delivered) {
                return;
            }
            Thread.sleep(50);
        }
        fail("the datasource component never received the configuration\n" + componentReport());
    }
}
