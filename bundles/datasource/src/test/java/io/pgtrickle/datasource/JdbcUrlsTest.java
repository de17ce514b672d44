package io.pgtrickle.datasource;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class JdbcUrlsTest {

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
