package io.pgtrickle.sink.webhook;

import java.net.URI;
import java.net.URISyntaxException;
import java.net.http.HttpRequest;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * One webhook endpoint's configuration, checked: everything {@link WebhookSink} needs, or an
 * {@link IllegalArgumentException} that names the endpoint and the problem. Messages and
 * {@link #toString()} never contain the secret, URL user info or query, or custom header values
 * (an {@code Authorization} header is a secret too).
 *
 * @param name      the endpoint's name ({@code pgtrickle.sink.name})
 * @param uri       where to POST
 * @param safeUrl   {@code uri} without user info, query and fragment: the one form printed
 * @param channels  subscription channels, {@code *} for all
 * @param key       the HMAC key (decoded {@code whsec_} secret); null when unsigned
 * @param headers   extra headers, name and value alternating
 * @param timeoutMs connect and request timeout
 * @param maxAttempts deliveries before a dead letter
 */
record Endpoint(String name, URI uri, String safeUrl, String[] channels, byte[] key, String[] headers, int timeoutMs,
                int maxAttempts) {

    static final String SECRET_PREFIX = "whsec_";

    private static final Pattern NAME = Pattern.compile("[A-Za-z_][A-Za-z0-9_.-]{0,62}");
    // RFC 9110 token
    private static final Pattern TOKEN = Pattern.compile("[!#$%&'*+.^_`|~0-9A-Za-z-]+");
    // headers the sink owns (the Standard Webhooks ones and the body's type) or the JDK client refuses
    private static final Set<String> RESERVED = Set.of("content-type", "connection", "content-length", "expect", "host",
            "upgrade", "transfer-encoding");

    /** @throws IllegalArgumentException naming the endpoint and what is wrong with its configuration */
    static Endpoint of(WebhookSink.Config config, String origin) {
        String name = config.name() == null ? "" : config.name().trim();
        String where = origin == null ? "" : " (" + origin + ")";
        if (name.isEmpty()) {
            throw new IllegalArgumentException("webhook endpoint" + where + ": name is required");
        }
        if (!NAME.matcher(name).matches()) {
            throw new IllegalArgumentException("webhook endpoint" + where + ": name '" + shorten(name)
                    + "' is not valid; use up to 63 letters, digits, '_', '.' or '-', starting with a letter or '_'");
        }
        String prefix = "webhook endpoint '" + name + "'" + where + ": ";

        URI uri = uri(config.url(), prefix);
        String safeUrl = safeUrl(uri);
        if (config.timeoutMs() < 1) {
            throw new IllegalArgumentException(prefix + "timeoutMs must be at least 1, not " + config.timeoutMs());
        }
        if (config.maxAttempts() < 1) {
            throw new IllegalArgumentException(prefix + "maxAttempts must be at least 1, not " + config.maxAttempts());
        }
        return new Endpoint(name, uri, safeUrl, channels(config.channels(), prefix), key(config.secret(), prefix),
                headers(config.headers(), uri, prefix), config.timeoutMs(), config.maxAttempts());
    }

    private static URI uri(String url, String prefix) {
        if (url == null || url.isBlank()) {
            throw new IllegalArgumentException(prefix + "url is required (http:// or https://)");
        }
        URI uri;
        try {
            uri = new URI(url.trim());
        } catch (URISyntaxException e) {
            // the reason and index, not the input: it may hold credentials
            throw new IllegalArgumentException(prefix + "url is not a valid URI: " + e.getReason() + " at index " + e.getIndex());
        }
        String scheme = uri.getScheme() == null ? null : uri.getScheme().toLowerCase(Locale.ROOT);
        if (!"http".equals(scheme) && !"https".equals(scheme)) {
            throw new IllegalArgumentException(prefix + "url must be http:// or https://, not "
                    + (scheme == null ? "a relative URI" : shorten(scheme) + ":"));
        }
        if (uri.getRawUserInfo() != null) {
            throw new IllegalArgumentException(prefix + "url must not contain user info (user:password@); "
                    + "send credentials in a header instead, e.g. headers = Authorization: Basic ...");
        }
        if (uri.getHost() == null || uri.getHost().isEmpty()) {
            throw new IllegalArgumentException(prefix + "url " + safeUrl(uri) + " has no host name");
        }
        if (uri.getRawFragment() != null) {
            throw new IllegalArgumentException(prefix + "url " + safeUrl(uri) + " must not have a #fragment");
        }
        return uri;
    }

    /** scheme://host[:port]/path: no user info, query or fragment. */
    static String safeUrl(URI uri) {
        StringBuilder s = new StringBuilder();
        s.append(uri.getScheme() == null ? "" : uri.getScheme().toLowerCase(Locale.ROOT)).append("://");
        if (uri.getHost() != null) {
            s.append(uri.getHost());
        }
        if (uri.getPort() >= 0) {
            s.append(':').append(uri.getPort());
        }
        if (uri.getRawPath() != null) {
            s.append(uri.getRawPath());
        }
        return s.toString();
    }

    private static String[] channels(String[] configured, String prefix) {
        // a FileInstall .cfg gives one string: accept "orders, refunds" as well as a real array
        Set<String> channels = new LinkedHashSet<>();
        for (String entry : configured == null ? new String[0] : configured) {
            for (String channel : entry.split(",")) {
                if (!channel.isBlank()) {
                    channels.add(channel.trim());
                }
            }
        }
        if (channels.isEmpty()) {
            throw new IllegalArgumentException(prefix + "channels must name at least one subscription channel, or * for all");
        }
        return channels.toArray(String[]::new);
    }

    private static byte[] key(String secret, String prefix) {
        if (secret == null || secret.isBlank()) {
            return null;
        }
        String s = secret.trim();
        if (!s.startsWith(SECRET_PREFIX)) {
            throw new IllegalArgumentException(prefix + "secret must be " + SECRET_PREFIX
                    + "<base64 key> (Standard Webhooks), or empty to send unsigned requests");
        }
        byte[] key;
        try {
            key = Base64.getDecoder().decode(s.substring(SECRET_PREFIX.length()));
        } catch (IllegalArgumentException e) {
            // not e's message: it quotes the offending character
            throw new IllegalArgumentException(prefix + "secret is not " + SECRET_PREFIX
                    + " followed by valid base64 (standard alphabet, with padding)");
        }
        if (key.length == 0) {
            throw new IllegalArgumentException(prefix + "secret has an empty key after " + SECRET_PREFIX);
        }
        return key;
    }

    private static String[] headers(String[] configured, URI uri, String prefix) {
        List<String> headers = new ArrayList<>();
        int n = 0;
        for (String entry : configured == null ? new String[0] : configured) {
            n++;
            if (entry == null || entry.isBlank()) {
                continue;
            }
            int colon = entry.indexOf(':');
            if (colon < 0) {
                throw new IllegalArgumentException(prefix + "header " + n + " is not 'Name: value'");
            }
            String name = entry.substring(0, colon).trim();
            String value = entry.substring(colon + 1).trim();
            if (!TOKEN.matcher(name).matches()) {
                throw new IllegalArgumentException(prefix + "header " + n + " has an invalid name '" + shorten(name) + "'");
            }
            String lower = name.toLowerCase(Locale.ROOT);
            if (lower.startsWith("webhook-") || RESERVED.contains(lower)) {
                throw new IllegalArgumentException(prefix + "header " + name
                        + " is set by the webhook sink (webhook-*, Content-Type) or the HTTP client and cannot be configured");
            }
            if (value.chars().anyMatch(c -> c < 0x20 && c != '\t' || c == 0x7f)) {
                throw new IllegalArgumentException(prefix + "header " + name + " has control characters in its value");
            }
            try {
                HttpRequest.newBuilder(uri).header(name, value); // the JDK's own rules, checked now rather than per delivery
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException(prefix + "header " + name + " is refused by the HTTP client");
            }
            headers.add(name);
            headers.add(value);
        }
        return headers.toArray(String[]::new);
    }

    private static String shorten(String s) {
        return s.length() <= 64 ? s : s.substring(0, 64) + "...";
    }

    /** The sink id the notify bundle uses, {@code webhook:<name>}. */
    String sinkId() {
        return WebhookSink.TYPE + ":" + name;
    }

    @Override
    public String toString() {
        return sinkId() + " -> " + safeUrl;
    }

    String describe() {
        return toString() + " (channels " + String.join(", ", channels) + ", " + (key == null ? "unsigned" : "signed")
                + ", " + headers.length / 2 + " custom header(s), timeout " + timeoutMs + " ms, " + maxAttempts
                + " attempts)";
    }

    // arrays: compared by content, never printed (the key and header values are secrets)
    @Override
    public boolean equals(Object o) {
        return o instanceof Endpoint e && name.equals(e.name) && uri.equals(e.uri) && Arrays.equals(channels, e.channels)
                && Arrays.equals(key, e.key) && Arrays.equals(headers, e.headers) && timeoutMs == e.timeoutMs
                && maxAttempts == e.maxAttempts;
    }

    @Override
    public int hashCode() {
        return name.hashCode() * 31 + uri.hashCode();
    }
}
