package io.pgtrickle.api.jdbc;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

class RedactionTest {

    @Test
    void plainUrlIsUnchanged() {
        assertEquals("jdbc:postgresql://db:5432/app?ssl=true", Redaction.jdbcUrl("jdbc:postgresql://db:5432/app?ssl=true"));
    }

    @Test
    void passwordParametersAreMasked() {
        assertEquals("jdbc:postgresql://db/app?user=bob&password=********&ssl=true",
                Redaction.jdbcUrl("jdbc:postgresql://db/app?user=bob&password=s3cret&ssl=true"));
        assertEquals("jdbc:postgresql://db/app?PASSWORD=********",
                Redaction.jdbcUrl("jdbc:postgresql://db/app?PASSWORD=s3cret"));
        assertEquals("jdbc:postgresql://db/app?sslpassword=********&password=********",
                Redaction.jdbcUrl("jdbc:postgresql://db/app?sslpassword=k3y&password=s3cret"));
    }

    @Test
    void userInfoPasswordIsMasked() {
        assertEquals("jdbc:postgresql://bob:********@db:5432/app", Redaction.jdbcUrl("jdbc:postgresql://bob:s3cret@db:5432/app"));
    }

    @Test
    void everySecretParameterIsMaskedAndTheRestKept() {
        assertEquals("jdbc:postgresql://db:5432/app?user=u&password=********&sslpassword=********&ssl=true",
                Redaction.jdbcUrl("jdbc:postgresql://db:5432/app?user=u&password=s3cret&sslpassword=k3y&ssl=true"));
    }

    @Test
    void nullStaysNull() {
        assertEquals(null, Redaction.jdbcUrl(null));
    }

    @Test
    void aParameterMerelyEndingInPasswordIsKept() {
        assertEquals("jdbc:postgresql://db/app?nopassword=x", Redaction.jdbcUrl("jdbc:postgresql://db/app?nopassword=x"));
    }
}
