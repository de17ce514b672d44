package io.pgtrickle.datasource;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class JdbcUrlsTest {

    @Test
    void passwordsInUrlParametersAreRedacted() {
        String url = "jdbc:postgresql://db:5432/app?user=u&password=s3cret&sslpassword=k3y&ssl=true";
        String safe = JdbcUrls.redact(url);
        assertFalse(safe.contains("s3cret"), safe);
        assertFalse(safe.contains("k3y"), safe);
        assertEquals("jdbc:postgresql://db:5432/app?user=u&password=********&sslpassword=********&ssl=true", safe);
    }

    @Test
    void urlsWithoutSecretsAreUnchanged() {
        assertEquals("jdbc:postgresql://db/app", JdbcUrls.redact("jdbc:postgresql://db/app"));
    }

    @Test
    void nonPostgresUrlIsRefusedWithTheUrlInTheMessage() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> JdbcUrls.requirePostgresUrl("jdbc:mysql://db/app?password=x"));
        assertTrue(e.getMessage().contains("jdbc:mysql://db/app"), e.getMessage());
        assertFalse(e.getMessage().contains("password=x"), e.getMessage());
    }

    @Test
    void missingUrlSaysWhichSettingToSet() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> JdbcUrls.requirePostgresUrl(" "));
        assertTrue(e.getMessage().contains("PGTRICKLE_JDBC_URL"), e.getMessage());
    }
}
