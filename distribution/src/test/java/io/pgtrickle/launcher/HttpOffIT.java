package io.pgtrickle.launcher;

import static io.pgtrickle.launcher.ExistingDatabaseIT.STARTUP;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.net.ConnectException;
import java.net.URI;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.util.Map;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** pgtrickle.http.enabled=false: the platform runs, and nothing listens on the HTTP port. */
class HttpOffIT {

    @Test
    void enabledFalseServesNoHttp(@TempDir Path tmp) throws Exception {
        Path home = Distribution.copyTo(tmp.resolve("pgtrickle"));
        int httpPort = Distribution.freePort();
        try (PgTrickleProcess pgtrickle = PgTrickleProcess.startReady(home, Distribution.freePort(),
                Map.of("PGTRICKLE_HTTP_ENABLED", "false", "PGTRICKLE_HTTP_PORT", Integer.toString(httpPort)))) {
            pgtrickle.awaitLine(Pattern.quote("pgtrickle: HTTP off (pgtrickle.http.port=0 or pgtrickle.http.enabled=false)"), STARTUP);
            HttpRequest request = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + httpPort + "/pgtrickle/events")).build();
            assertThrows(ConnectException.class, () -> java.net.http.HttpClient.newHttpClient().send(request, HttpResponse.BodyHandlers.discarding()));
        }
    }
}
