package io.pgtrickle.sink.webhook;

import io.pgtrickle.api.notify.Notification;
import io.pgtrickle.api.notify.NotificationSink;
import io.pgtrickle.api.notify.NotificationSinkType;
import io.pgtrickle.api.notify.SinkGoneException;
import java.io.IOException;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.time.Duration;
import java.time.Instant;
import java.util.Base64;
import java.util.Hashtable;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import org.osgi.annotation.bundle.Capability;
import org.osgi.framework.BundleContext;
import org.osgi.framework.Constants;
import org.osgi.framework.ServiceRegistration;
import org.osgi.service.component.annotations.Activate;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.ConfigurationPolicy;
import org.osgi.service.component.annotations.Deactivate;
import org.osgi.service.metatype.annotations.AttributeDefinition;
import org.osgi.service.metatype.annotations.AttributeType;
import org.osgi.service.metatype.annotations.Designate;
import org.osgi.service.metatype.annotations.ObjectClassDefinition;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One webhook endpoint as a {@link NotificationSink}: each notification is one signed POST
 * (<a href="https://www.standardwebhooks.com/">Standard Webhooks</a>: {@code webhook-id},
 * {@code webhook-timestamp}, {@code webhook-signature}) of its JSON payload. One factory configuration
 * (PID {@value #PID}) per endpoint; the notify bundle owns retries, ordering and dead letters.
 *
 * <p>The service is registered by hand in {@link #activate}, with exactly the {@code pgtrickle.sink.*}
 * properties: DS would otherwise copy every public configuration property (url, secret, headers) into
 * the service registry, where anyone can read them.
 */
// Registered by hand, so bnd cannot see it: declare it for resolvers that enforce service requirements.
@Capability(namespace = "osgi.service", attribute = "objectClass:List<String>=io.pgtrickle.api.notify.NotificationSink",
        uses = NotificationSink.class)
@Component(service = {}, configurationPid = WebhookSink.PID, configurationPolicy = ConfigurationPolicy.REQUIRE, immediate = true)
@Designate(ocd = WebhookSink.Config.class, factory = true)
public class WebhookSink implements NotificationSink {

    static final String PID = "io.pgtrickle.sink.webhook";
    static final String TYPE = "webhook";

    private static final Logger LOG = LoggerFactory.getLogger(WebhookSink.class);
    private static final int BODY_IN_MESSAGE = 200;

    @ObjectClassDefinition(name = "pgtrickle webhook endpoint",
            description = "POSTs the notifications of subscription channels to one HTTP endpoint, signed as Standard "
                    + "Webhooks. One factory configuration per endpoint, e.g. etc/io.pgtrickle.sink.webhook-orders.cfg.")
    public @interface Config {
        @AttributeDefinition(description = "Name of the endpoint, unique among webhooks (letters, digits, '_', '.', '-'); "
                + "the sink id is webhook:<name>, as in pgtrickle.enable_sink('webhook:<name>')")
        String name();

        @AttributeDefinition(name = "URL", description = "http:// or https:// URL the notifications are POSTed to (no user:password@; "
                + "put credentials in a header)")
        String url();

        @AttributeDefinition(description = "Subscription channels whose notifications go to this endpoint; * for all")
        String[] channels() default "*";

        @AttributeDefinition(type = AttributeType.PASSWORD, required = false,
                description = "Signing secret, whsec_<base64 key> (Standard Webhooks); empty sends unsigned requests. Never logged")
        String secret() default "";

        @AttributeDefinition(name = "Timeout (ms)", min = "1", description = "Milliseconds to connect and get the answer of one delivery")
        int timeoutMs() default 10000;

        @AttributeDefinition(min = "1", description = "Deliveries tried before a notification becomes a dead letter")
        int maxAttempts() default 10;

        @AttributeDefinition(required = false, description = "Extra request headers, 'Name: value' each (e.g. "
                + "Authorization: Bearer ...); webhook-* and Content-Type are the sink's. Values are never logged")
        String[] headers() default {};
    }

    private volatile Endpoint endpoint;
    private volatile HttpClient client;
    private ServiceRegistration<NotificationSink> registration;

    @Activate
    void activate(BundleContext context, Config config, Map<String, Object> properties) {
        Endpoint e = Endpoint.of(config, origin(properties));
        client = HttpClient.newBuilder()
                // Plain http gets HTTP/1.1: left at its default (HTTP/2) the JDK client asks every
                // request on a cleartext connection to upgrade to h2c, which a server that refuses
                // once refuses every time; on loopback that costs a third of the throughput
                // (docs/benchmarks/subscriptions.md). https keeps HTTP/2, negotiated by TLS ALPN.
                .version("https".equalsIgnoreCase(e.uri().getScheme()) ? HttpClient.Version.HTTP_2 : HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofMillis(e.timeoutMs()))
                .followRedirects(HttpClient.Redirect.NEVER) // a redirect is a failure (Standard Webhooks)
                .build();
        endpoint = e;
        if (context != null) {
            Hashtable<String, Object> service = new Hashtable<>();
            service.put(NotificationSinkType.TYPE, TYPE);
            service.put(NotificationSinkType.NAME, e.name());
            service.put(NotificationSinkType.CHANNELS, e.channels().clone());
            service.put(NotificationSinkType.MAX_ATTEMPTS, e.maxAttempts());
            service.put(NotificationSinkType.TIMEOUT_MS, e.timeoutMs());
            service.put(Constants.SERVICE_DESCRIPTION, e.toString());
            registration = context.registerService(NotificationSink.class, this, service);
        }
        LOG.info("webhook sink {} ready", e.describe());
    }

    /** Where the configuration came from, for messages: the .cfg file or the PID. */
    private static String origin(Map<String, Object> properties) {
        if (properties == null) {
            return null;
        }
        Object file = properties.get("felix.fileinstall.filename");
        Object pid = properties.get(Constants.SERVICE_PID);
        return file != null ? file.toString() : pid != null ? "configuration " + pid : null;
    }

    @Deactivate
    void deactivate() {
        if (registration != null) {
            try {
                registration.unregister();
            } catch (IllegalStateException alreadyGone) {
                // the bundle is stopping
            }
            registration = null;
        }
        Endpoint e = endpoint;
        client = null; // Java 17's HttpClient has no close(); its threads end once it is unreachable
        if (e != null) {
            LOG.info("webhook sink {} stopped", e);
        }
    }

    @Override
    public void deliver(Notification notification) throws Exception {
        Endpoint e = endpoint;
        HttpClient c = client;
        if (e == null || c == null) {
            throw new IllegalStateException("webhook sink is not active");
        }
        byte[] body = notification.payload().getBytes(StandardCharsets.UTF_8);
        String timestamp = Long.toString(Instant.now().getEpochSecond());
        HttpRequest.Builder request = HttpRequest.newBuilder(e.uri())
                .timeout(Duration.ofMillis(e.timeoutMs()))
                .POST(HttpRequest.BodyPublishers.ofByteArray(body));
        String[] headers = e.headers();
        for (int i = 0; i < headers.length; i += 2) {
            request.header(headers[i], headers[i + 1]);
        }
        request.header("Content-Type", "application/json")
                .header("webhook-id", notification.id())
                .header("webhook-timestamp", timestamp);
        if (e.key() != null) {
            request.header("webhook-signature", sign(e.key(), notification.id(), timestamp, body));
        }

        HttpResponse<String> response = send(e, c, request.build());
        int status = response.statusCode();
        if (status >= 200 && status < 300) {
            LOG.debug("webhook sink {}: delivered {} (attempt {}), HTTP {}", e, notification.id(), notification.attempt(), status);
            return;
        }
        if (status == 410) {
            LOG.warn("webhook sink {} answered 410 Gone for {}: the sink is disabled until pgtrickle.enable_sink('{}')",
                    e, notification.id(), e.sinkId());
            throw new SinkGoneException(e + ": HTTP 410 Gone; endpoint '" + e.name()
                    + "' is disabled until pgtrickle.enable_sink('" + e.sinkId() + "')");
        }
        String detail = status >= 300 && status < 400 ? " (redirects are not followed: configure the final URL)" : "";
        String text = bodyText(response.body());
        throw new IOException(e + ": HTTP " + status + detail + (text.isEmpty() ? "" : ": " + text));
    }

    private static HttpResponse<String> send(Endpoint e, HttpClient c, HttpRequest request)
            throws IOException, InterruptedException {
        // the request timeout covers the answer's headers; the bound here covers the whole exchange
        CompletableFuture<HttpResponse<String>> exchange = c.sendAsync(request, info -> new BoundedBody(4 * BODY_IN_MESSAGE));
        try {
            return exchange.get(e.timeoutMs(), TimeUnit.MILLISECONDS);
        } catch (TimeoutException timeout) {
            exchange.cancel(true);
            throw new IOException(e + ": no complete answer within " + e.timeoutMs() + " ms");
        } catch (InterruptedException interrupted) {
            exchange.cancel(true); // the notify bundle gave up on this delivery
            throw interrupted;
        } catch (ExecutionException failed) {
            Throwable cause = failed.getCause() == null ? failed : failed.getCause();
            String why = cause instanceof java.net.http.HttpTimeoutException
                    ? "no answer within " + e.timeoutMs() + " ms"
                    : cause.getClass().getSimpleName() + (cause.getMessage() == null ? "" : ": " + cause.getMessage());
            throw new IOException(e + ": " + why, cause);
        }
    }

    /** {@code v1,<base64 HMAC-SHA256(key, id.timestamp.body)>}, over the exact bytes sent. */
    static String sign(byte[] key, String id, String timestamp, byte[] body) throws GeneralSecurityException {
        Mac mac = Mac.getInstance("HmacSHA256"); // per call: Mac is not thread safe, deliveries may run in parallel
        mac.init(new SecretKeySpec(key, "HmacSHA256"));
        mac.update((id + "." + timestamp + ".").getBytes(StandardCharsets.UTF_8));
        return "v1," + Base64.getEncoder().encodeToString(mac.doFinal(body));
    }

    /** At most {@value #BODY_IN_MESSAGE} characters of the answer, on one line. */
    static String bodyText(String body) {
        if (body == null) {
            return "";
        }
        String line = body.replaceAll("[\\p{Cntrl}\\s]+", " ").strip();
        return line.length() <= BODY_IN_MESSAGE ? line : line.substring(0, BODY_IN_MESSAGE) + "...";
    }

    @Override
    public String toString() {
        Endpoint e = endpoint;
        return e == null ? "webhook sink (not active)" : e.toString();
    }
}
