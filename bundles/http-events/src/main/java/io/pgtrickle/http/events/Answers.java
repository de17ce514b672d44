package io.pgtrickle.http.events;

import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.nio.charset.StandardCharsets;

/** The endpoints' answers other than the event stream itself: short text, and the list's JSON. */
final class Answers {

    private Answers() {
    }

    static void write(HttpServletResponse response, int status, String type, String body) throws IOException {
        response.setStatus(status);
        response.setContentType(type);
        response.setCharacterEncoding("UTF-8");
        response.getOutputStream().write(body.getBytes(StandardCharsets.UTF_8));
    }

    static void text(HttpServletResponse response, int status, String message) throws IOException {
        write(response, status, "text/plain", message + "\n");
    }

    /** 401 for a request without a configured token: both endpoints take the same tokens, the same ways. */
    static void unauthorized(HttpServletResponse response) throws IOException {
        response.setHeader("WWW-Authenticate", "Bearer realm=\"pgtrickle\"");
        text(response, HttpServletResponse.SC_UNAUTHORIZED, "a valid bearer token is needed "
                + "(Authorization: Bearer <token>, or ?access_token=<token>)");
    }
}
