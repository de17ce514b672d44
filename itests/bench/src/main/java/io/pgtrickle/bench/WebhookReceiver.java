package io.pgtrickle.bench;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The webhook receiver of {@link SubscriptionBenchmark} in its own process, as a real endpoint is:
 * an HTTP/1.1 server on loopback that answers every POST 200 with an empty body and keeps the
 * connection open, counting the requests per path. It verifies nothing it does not need to (no
 * signature check: a receiver's own cost is not the sink's), and reads only what HTTP/1.1 with a
 * {@code Content-Length} needs, which is what the JDK client sends; anything else is answered 400 and
 * the connection closed. A thread per connection: the sink keeps a handful of connections.
 *
 * <p>Started by the benchmark with the same {@code java} and class path. It prints {@code port N}
 * on its standard output once listening, and exits when its standard input closes (so it never
 * outlives the benchmark). {@code GET /_stats/<path>} answers {@code <count> <first> <last> <connections>}:
 * the requests to {@code /<path>} so far, the receiver's {@link System#nanoTime()} at the first and the
 * last (for a rate from the first to the last request on one clock), and the connections accepted so
 * far (kept alive, a client opens few).
 */
public final class WebhookReceiver {

    private static final byte[] OK = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] BAD = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .getBytes(StandardCharsets.US_ASCII);
    private static final String STATS = "/_stats";

    /** Requests to one path: count, first and last arrival. */
    private static final class Hits {
        private long count;
        private long first;
        private long last;

        synchronized void hit(long now) {
            if (count++ == 0) {
                first = now;
            }
            last = now;
        }

        synchronized String describe() {
            return count + " " + first + " " + last;
        }
    }

    private final Map<String, Hits> hits = new ConcurrentHashMap<>();
    private final java.util.concurrent.atomic.AtomicLong connections = new java.util.concurrent.atomic.AtomicLong();

    public static void main(String[] args) throws IOException {
        ServerSocket server = new ServerSocket(0, 200, InetAddress.getLoopbackAddress());
        System.out.println("port " + server.getLocalPort());
        System.out.flush();
        Thread parent = new Thread(() -> {
            try {
                while (System.in.read() >= 0) {
                    // nothing is sent; end of input means the benchmark is gone
                }
            } catch (IOException e) {
                // the same
            }
            System.exit(0);
        }, "parent");
        parent.setDaemon(true);
        parent.start();
        WebhookReceiver receiver = new WebhookReceiver();
        while (true) {
            Socket s = server.accept();
            receiver.connections.incrementAndGet();
            s.setTcpNoDelay(true);
            Thread t = new Thread(() -> receiver.serve(s), "connection");
            t.setDaemon(true);
            t.start();
        }
    }

    private void serve(Socket s) {
        try (s; InputStream in = new BufferedInputStream(s.getInputStream(), 8192);
             OutputStream out = new BufferedOutputStream(s.getOutputStream(), 1024)) {
            StringBuilder line = new StringBuilder();
            while (true) {
                String requestLine = line(in, line);
                if (requestLine == null) {
                    return; // the client closed the connection
                }
                long length = 0;
                boolean close = false;
                for (String h; !(h = line(in, line)).isEmpty(); ) {
                    int colon = h.indexOf(':');
                    String name = colon < 0 ? h : h.substring(0, colon).trim().toLowerCase(Locale.ROOT);
                    String value = colon < 0 ? "" : h.substring(colon + 1).trim();
                    if (name.equals("content-length")) {
                        length = Long.parseLong(value);
                    } else if (name.equals("transfer-encoding")) {
                        out.write(BAD);
                        out.flush();
                        return;
                    } else if (name.equals("connection")) {
                        close = value.equalsIgnoreCase("close");
                    }
                }
                for (long left = length; left > 0; ) {
                    long skipped = in.skip(left);
                    if (skipped <= 0) {
                        if (in.read() < 0) {
                            return;
                        }
                        skipped = 1;
                    }
                    left -= skipped;
                }
                String[] parts = requestLine.split(" ");
                String path = parts.length > 1 ? parts[1] : "";
                if (path.startsWith(STATS + "/")) {
                    Hits h = hits.get(path.substring(STATS.length()));
                    byte[] body = ((h == null ? "0 0 0" : h.describe()) + " " + connections.get()).getBytes(StandardCharsets.US_ASCII);
                    out.write(("HTTP/1.1 200 OK\r\nContent-Length: " + body.length + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
                    out.write(body);
                } else {
                    hits.computeIfAbsent(path, k -> new Hits()).hit(System.nanoTime());
                    out.write(OK);
                }
                out.flush();
                if (close) {
                    return;
                }
            }
        } catch (IOException | RuntimeException e) {
            // a broken connection ends only itself
        }
    }

    /** One CRLF-terminated header line without its end; null at the end of the stream before any byte. */
    private static String line(InputStream in, StringBuilder b) throws IOException {
        b.setLength(0);
        int c;
        while ((c = in.read()) >= 0) {
            if (c == '\n') {
                int n = b.length();
                if (n > 0 && b.charAt(n - 1) == '\r') {
                    b.setLength(n - 1);
                }
                return b.toString();
            }
            b.append((char) c);
        }
        if (b.length() == 0) {
            return null;
        }
        throw new IOException("connection closed inside a header");
    }
}
