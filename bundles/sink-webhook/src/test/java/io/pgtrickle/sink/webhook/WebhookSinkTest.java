package io.pgtrickle.sink.webhook;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.sun.net.httpserver.Headers;
import com.sun.net.httpserver.HttpServer;
import io.pgtrickle.api.notify.Notification;
import io.pgtrickle.api.notify.NotificationSink;
import io.pgtrickle.api.notify.SinkGoneException;
import java.io.IOException;
import java.io.OutputStream;
import java.lang.reflect.Proxy;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Dictionary;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.osgi.framework.BundleContext;
import org.osgi.framework.ServiceRegistration;

/**
 * The component driven by hand, as SCR would, against a real HTTP server on the loopback interface.
 */
class WebhookSinkTest {

    /** What the test server received. */
    record Received(Headers headers, byte[] body) {
        String header(String name) {
            return headers.getFirst(name);
        }
    }

    private final List<Received> received = new CopyOnWriteArrayList<>();
    private volatile int status = 204;
    private volatile String answer = "";
    private HttpServer server;
    private final List<WebhookSink> sinks = new ArrayList<>();

    @BeforeEach
    void startServer() throws IOException {
        server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
        server.createContext("/hooks", exchange -> {
            byte[] body = exchange.getRequestBody().readAllBytes();
            received.add(new Received(exchange.getRequestHeaders(), body));
            byte[] out = answer.getBytes(StandardCharsets.UTF_8);
            exchange.sendResponseHeaders(status, out.length == 0 ? -1 : out.length);
            try (OutputStream o = exchange.getResponseBody()) {
                o.write(out);
            }
        });
        server.start();
    }

    @AfterEach
    void stop() {
        sinks.forEach(WebhookSink::deactivate);
        server.stop(0);
    }

    private String url() {
        return "http://127.0.0.1:" + server.getAddress().getPort() + "/hooks";
    }

    /** The configuration SCR would pass: the given values, else the annotation's defaults. */
    static WebhookSink.Config config(Map<String, Object> values) {
        return (WebhookSink.Config) Proxy.newProxyInstance(WebhookSinkTest.class.getClassLoader(),
                new Class<?>[] {WebhookSink.Config.class}, (proxy, method, args) -> {
                    if (method.getDeclaringClass() == Object.class) {
                        return method.getName().equals("toString") ? "Config" : method.invoke(values, args);
                    }
                    return values.containsKey(method.getName()) ? values.get(method.getName()) : method.getDefaultValue();
                });
    }

    private static Map<String, Object> values(Object... keysAndValues) {
        Map<String, Object> m = new HashMap<>();
        for (int i = 0; i < keysAndValues.length; i += 2) {
            m.put((String) keysAndValues[i], keysAndValues[i + 1]);
        }
        return m;
    }

    /** A BundleContext that records the one registration. */
    static final class Registry {
        Dictionary<String, ?> properties;
        Object service;
        boolean unregistered;

        @SuppressWarnings("unchecked")
        BundleContext context() {
            return (BundleContext) Proxy.newProxyInstance(getClass().getClassLoader(), new Class<?>[] {BundleContext.class},
                    (proxy, method, args) -> {
                        if (!method.getName().equals("registerService")) {
                            throw new UnsupportedOperationException(method.getName());
                        }
                        service = args[1];
                        properties = (Dictionary<String, ?>) args[2];
                        return Proxy.newProxyInstance(getClass().getClassLoader(), new Class<?>[] {ServiceRegistration.class},
                                (p, m, a) -> {
                                    if (m.getName().equals("unregister")) {
                                        unregistered = true;
                                        return null;
                                    }
                                    throw new UnsupportedOperationException(m.getName());
                                });
                    });
        }
    }

    private WebhookSink activate(Map<String, Object> values) {
        return activate(values, null);
    }

    private WebhookSink activate(Map<String, Object> values, Registry registry) {
        WebhookSink sink = new WebhookSink();
        sink.activate(registry == null ? null : registry.context(), config(values), Map.of());
        sinks.add(sink);
        return sink;
    }

    private static Notification notification(String id, int attempt) {
        return new Notification(id, "webhook:orders", "public.order_totals", "order_totals_changed", 42, 41, 2, 3, 1,
                "{\"stream_table\":\"public.order_totals\",\"refresh_id\":42,\"note\":\"caf\u00e9\"}", Instant.now(), attempt);
    }

    private static String newSecret() {
        byte[] key = new byte[32];
        new SecureRandom().nextBytes(key);
        return "whsec_" + Base64.getEncoder().encodeToString(key);
    }

    /** The receiver's side, written from the Standard Webhooks spec, not from the sink's code. */
    private static boolean verify(String secret, Received r) throws Exception {
        byte[] key = Base64.getDecoder().decode(secret.substring("whsec_".length()));
        String signedContent = r.header("webhook-id") + "." + r.header("webhook-timestamp") + "."
                + new String(r.body(), StandardCharsets.UTF_8);
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(key, "HmacSHA256"));
        String expected = Base64.getEncoder().encodeToString(mac.doFinal(signedContent.getBytes(StandardCharsets.UTF_8)));
        for (String signature : r.header("webhook-signature").split(" ")) {
            String[] versioned = signature.split(",", 2);
            if (versioned[0].equals("v1") && MessageDigest.isEqual(versioned[1].getBytes(StandardCharsets.US_ASCII),
                    expected.getBytes(StandardCharsets.US_ASCII))) {
                return true;
            }
        }
        return false;
    }

    @Test
    void signedPostWithStandardHeadersCustomHeadersAndServiceProperties() throws Exception {
        String secret = newSecret();
        Registry registry = new Registry();
        WebhookSink sink = activate(values("name", "orders", "url", url() + "?token=query-secret", "secret", secret,
                "channels", new String[] {"order_totals_changed, refunds"}, "maxAttempts", 5, "timeoutMs", 3000,
                "headers", new String[] {"Authorization: Bearer header-secret", "X-Env:  test "}), registry);

        Notification n = notification("pgt-17", 1);
        long before = Instant.now().getEpochSecond();
        sink.deliver(n);
        long after = Instant.now().getEpochSecond();

        assertEquals(1, received.size());
        Received r = received.get(0);
        assertArrayEquals(n.payload().getBytes(StandardCharsets.UTF_8), r.body(), "the payload, byte for byte");
        assertEquals("application/json", r.header("Content-Type"));
        assertEquals("pgt-17", r.header("webhook-id"));
        long timestamp = Long.parseLong(r.header("webhook-timestamp"));
        assertTrue(timestamp >= before && timestamp <= after, "seconds since the epoch, of this attempt");
        assertTrue(r.header("webhook-signature").startsWith("v1,"));
        assertTrue(verify(secret, r), "signature verifies with the receiver's algorithm");
        assertFalse(verify(newSecret(), r), "and not with another key");
        assertEquals("Bearer header-secret", r.header("Authorization"));
        assertEquals("test", r.header("X-Env"));
        assertNull(r.header("Upgrade"), "plain HTTP/1.1: no h2c upgrade asked for with each request");
        assertNull(r.header("HTTP2-Settings"));

        assertSame(sink, registry.service);
        assertEquals("webhook", registry.properties.get("pgtrickle.sink.type"));
        assertEquals("orders", registry.properties.get("pgtrickle.sink.name"));
        assertArrayEquals(new String[] {"order_totals_changed", "refunds"}, (String[]) registry.properties.get("pgtrickle.sink.channels"));
        assertEquals(5, registry.properties.get("pgtrickle.sink.maxAttempts"));
        assertEquals(3000, registry.properties.get("pgtrickle.sink.timeoutMs"));
        for (String key : List.of("url", "secret", "headers", "name", "channels")) {
            assertNull(registry.properties.get(key), "no configuration property leaks into the registry: " + key);
        }
        String everything = registry.properties.toString() + sink;
        assertNoSecrets(everything, secret, "query-secret", "header-secret");
        assertEquals("webhook:orders -> http://127.0.0.1:" + server.getAddress().getPort() + "/hooks", sink.toString());

        sink.deactivate();
        sinks.remove(sink);
        assertTrue(registry.unregistered);
    }

    private static void assertNoSecrets(String text, String... secrets) {
        for (String s : secrets) {
            assertFalse(text.contains(s), () -> "leaks a secret: " + text);
            if (s.startsWith("whsec_")) {
                assertFalse(text.contains(s.substring(6)), () -> "leaks the key: " + text);
            }
        }
    }

    @Test
    void retriesKeepTheIdAndSignTheirOwnTimestamp() throws Exception {
        String secret = newSecret();
        WebhookSink sink = activate(values("name", "orders", "url", url(), "secret", secret));
        sink.deliver(notification("pgt-99", 1));
        Thread.sleep(1100); // a new second, so the second attempt has another timestamp
        sink.deliver(notification("pgt-99", 2));

        assertEquals(2, received.size());
        Received first = received.get(0);
        Received second = received.get(1);
        assertEquals("pgt-99", first.header("webhook-id"));
        assertEquals(first.header("webhook-id"), second.header("webhook-id"), "the receiver's idempotency key");
        assertTrue(Long.parseLong(second.header("webhook-timestamp")) >= Long.parseLong(first.header("webhook-timestamp")));
        assertTrue(verify(secret, first));
        assertTrue(verify(secret, second));
    }

    @Test
    void unsignedWithoutSecret() throws Exception {
        WebhookSink sink = activate(values("name", "plain", "url", url()));
        sink.deliver(notification("pgt-1", 1));
        assertNull(received.get(0).header("webhook-signature"));
        assertEquals("pgt-1", received.get(0).header("webhook-id"));
        assertNotNull(received.get(0).header("webhook-timestamp"));
    }

    @Test
    void serverErrorIsRetriedWithStatusAndAShortBody() {
        WebhookSink sink = activate(values("name", "orders", "url", url()));
        status = 500;
        answer = "boom\n" + "x".repeat(5000);
        Exception e = assertThrows(Exception.class, () -> sink.deliver(notification("pgt-2", 1)));
        assertFalse(e instanceof SinkGoneException);
        assertTrue(e.getMessage().contains("HTTP 500"), e.getMessage());
        assertTrue(e.getMessage().contains("webhook:orders"), e.getMessage());
        assertTrue(e.getMessage().contains("boom x"), "body on one line: " + e.getMessage());
        assertFalse(e.getMessage().contains("x".repeat(200)), "at most 200 characters of the body");
    }

    @Test
    void redirectIsAFailure() {
        WebhookSink sink = activate(values("name", "orders", "url", url()));
        status = 301;
        Exception e = assertThrows(Exception.class, () -> sink.deliver(notification("pgt-3", 1)));
        assertTrue(e.getMessage().contains("HTTP 301"), e.getMessage());
    }

    @Test
    void goneDisablesTheSink() {
        WebhookSink sink = activate(values("name", "orders", "url", url()));
        status = 410;
        SinkGoneException e = assertThrows(SinkGoneException.class, () -> sink.deliver(notification("pgt-4", 1)));
        assertTrue(e.getMessage().contains("410"), e.getMessage());
        assertTrue(e.getMessage().contains("orders"), e.getMessage());
        assertTrue(e.getMessage().contains("pgtrickle.enable_sink('webhook:orders')"), e.getMessage());
    }

    @Test
    void silentServerTimesOut() throws Exception {
        // accepts connections (the backlog) but never answers
        try (ServerSocket silent = new ServerSocket(0, 50, InetAddress.getLoopbackAddress())) {
            WebhookSink sink = activate(values("name", "slow", "url", "http://127.0.0.1:" + silent.getLocalPort() + "/",
                    "timeoutMs", 300));
            Exception e = assertThrows(Exception.class, () -> sink.deliver(notification("pgt-5", 1)));
            assertTrue(e.getMessage().contains("webhook:slow"), e.getMessage());
        }
    }

    @Test
    void refusedConnectionIsAFailure() throws Exception {
        int port;
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            port = s.getLocalPort();
        }
        WebhookSink sink = activate(values("name", "down", "url", "http://127.0.0.1:" + port + "/"));
        Exception e = assertThrows(IOException.class, () -> sink.deliver(notification("pgt-6", 1)));
        assertTrue(e.getMessage().contains("webhook:down"), e.getMessage());
    }

    private static String refused(Map<String, Object> values) {
        WebhookSink sink = new WebhookSink();
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> sink.activate(null, config(values), Map.of("felix.fileinstall.filename", "file:/etc/x.cfg")));
        assertEquals("webhook sink (not active)", sink.toString());
        return e.getMessage();
    }

    @Test
    void invalidConfigurationsAreRefusedClearlyWithoutSecrets() {
        String secret = newSecret();
        String m = refused(values("name", "orders", "url", "ftp://example.com/x", "secret", secret));
        assertTrue(m.contains("'orders'") && m.contains("http:// or https://") && m.contains("ftp"), m);
        assertTrue(m.contains("file:/etc/x.cfg"), "names the configuration file: " + m);
        assertNoSecrets(m, secret);

        m = refused(values("name", "orders", "url", "https:///hooks", "secret", secret));
        assertTrue(m.contains("no host"), m);

        m = refused(values("name", "orders", "url", "mailto:ops@example.com"));
        assertTrue(m.contains("http:// or https://"), m);

        m = refused(values("name", "orders", "url", "https://ops:pa55word@example.com/hooks", "secret", secret));
        assertTrue(m.contains("user info"), m);
        assertNoSecrets(m, "pa55word", secret);

        m = refused(values("name", "orders", "url", "https://exa mple.com/?token=t0ken"));
        assertTrue(m.contains("not a valid URI"), m);
        assertNoSecrets(m, "t0ken");

        m = refused(values("name", "orders", "url", url(), "secret", "whsec_not*base64!"));
        assertTrue(m.contains("secret") && m.contains("base64"), m);
        assertNoSecrets(m, "not*base64!");

        m = refused(values("name", "orders", "url", url(), "secret", "s3cr3t-without-prefix"));
        assertTrue(m.contains("whsec_"), m);
        assertNoSecrets(m, "s3cr3t-without-prefix");

        m = refused(values("name", "orders", "url", url(), "secret", secret, "headers",
                new String[] {"X-Ok: 1", "webhook-signature: v1,forged-value"}));
        assertTrue(m.contains("webhook-signature") && m.contains("cannot be configured"), m);
        assertNoSecrets(m, secret, "forged-value");

        m = refused(values("name", "orders", "url", url(), "headers", new String[] {"content-type: text/plain"}));
        assertTrue(m.contains("content-type"), m);

        m = refused(values("name", "orders", "url", url(), "headers", new String[] {"Authorization Bearer t0ken"}));
        assertTrue(m.contains("header 1") && m.contains("Name: value"), m);
        assertNoSecrets(m, "t0ken");

        m = refused(values("name", "orders", "url", url(), "headers", new String[] {"Bad Name: x"}));
        assertTrue(m.contains("invalid name"), m);

        m = refused(values("url", url()));
        assertTrue(m.contains("name is required"), m);

        m = refused(values("name", "no spaces please", "url", url()));
        assertTrue(m.contains("not valid"), m);

        m = refused(values("name", "orders"));
        assertTrue(m.contains("url is required"), m);

        m = refused(values("name", "orders", "url", url(), "channels", new String[] {" , "}));
        assertTrue(m.contains("channels"), m);

        m = refused(values("name", "orders", "url", url(), "timeoutMs", 0));
        assertTrue(m.contains("timeoutMs"), m);
    }

    @Test
    void secretNeverInToStringOrFailures() throws Exception {
        String secret = newSecret();
        WebhookSink sink = activate(values("name", "orders", "url", url() + "?sig=q-secret", "secret", secret,
                "headers", new String[] {"Authorization: Bearer h-secret"}));
        status = 503;
        answer = "unavailable";
        Exception e = assertThrows(Exception.class, () -> sink.deliver(notification("pgt-7", 1)));
        assertNoSecrets(e.getMessage() + " " + sink, secret, "q-secret", "h-secret");
        status = 410;
        e = assertThrows(SinkGoneException.class, () -> sink.deliver(notification("pgt-7", 2)));
        assertNoSecrets(e.getMessage(), secret, "q-secret", "h-secret");
        assertInstanceOf(NotificationSink.class, sink);
    }

    @Test
    void bodyTextIsOneShortLine() {
        assertEquals("a b c", WebhookSink.bodyText(" a\r\n b\tc "));
        assertEquals(203, WebhookSink.bodyText("y".repeat(1000)).length());
        assertEquals("", WebhookSink.bodyText(null));
    }
}
