package io.pgtrickle.http.events;

import jakarta.servlet.http.HttpServletRequest;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.List;

/**
 * Bearer tokens and the PostgreSQL roles they stand for, from entries {@code role:token}. A token is
 * compared in constant time against every entry, so the answer's timing tells nothing about how
 * much of a guess was right. Tokens are never logged, nor put in an exception message.
 */
final class Tokens {

    private record Entry(String role, byte[] token) {
    }

    private final List<Entry> entries;

    private Tokens(List<Entry> entries) {
        this.entries = entries;
    }

    /**
     * @throws IllegalArgumentException naming the entry by position (never by content) when one has
     *                                  no role or no token
     */
    static Tokens parse(String[] config) {
        List<Entry> entries = new ArrayList<>();
        if (config != null) {
            for (int i = 0; i < config.length; i++) {
                String entry = config[i] == null ? "" : config[i].trim();
                if (entry.isEmpty()) {
                    continue;
                }
                int colon = entry.indexOf(':');
                if (colon <= 0 || colon == entry.length() - 1) {
                    throw new IllegalArgumentException("tokens entry " + (i + 1) + " is not role:token");
                }
                entries.add(new Entry(entry.substring(0, colon).trim(), entry.substring(colon + 1).trim().getBytes(StandardCharsets.UTF_8)));
            }
        }
        return new Tokens(List.copyOf(entries));
    }

    int size() {
        return entries.size();
    }

    /**
     * The role of a request's token, from {@code Authorization: Bearer}, else from {@code access_token}
     * (EventSource cannot send headers); null when there is none or it is not configured.
     */
    String role(HttpServletRequest request) {
        String header = request.getHeader("Authorization");
        return role(header != null && header.regionMatches(true, 0, "Bearer ", 0, 7) ? header.substring(7).trim()
                : request.getParameter("access_token"));
    }

    /** The role of a token, or null. */
    String role(String token) {
        if (token == null || token.isEmpty()) {
            return null;
        }
        byte[] given = token.getBytes(StandardCharsets.UTF_8);
        String found = null;
        for (Entry e : entries) {
            if (MessageDigest.isEqual(e.token(), given) && found == null) {
                found = e.role();
            }
        }
        return found;
    }
}
