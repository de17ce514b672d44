package io.pgtrickle.live.page;

import jakarta.servlet.Servlet;
import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.Map;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.servlet.whiteboard.propertytypes.HttpWhiteboardServletPattern;

/**
 * {@code GET /pgtrickle/}: the live page, three static files of this bundle ({@code /page/...}).
 *
 * <p>A servlet rather than a whiteboard resource, on purpose: Felix's whiteboard refuses the pattern
 * {@code /pgtrickle/} (no pattern may end in a slash), and a resource at {@code /pgtrickle/*} answers
 * {@code /pgtrickle/} with the bundle's empty directory entry and serves whatever else lies under its
 * prefix. This serves exactly the files below, with their charset, and with the headers a page that
 * holds a token should have. The events' own paths ({@code /pgtrickle/events},
 * {@code /pgtrickle/stream-tables}) are exact patterns, which the whiteboard prefers to this one.
 */
@Component(service = Servlet.class)
@HttpWhiteboardServletPattern(LivePageServlet.PATTERN)
public class LivePageServlet extends HttpServlet {

    private static final long serialVersionUID = 1L;

    static final String PATTERN = "/pgtrickle/*";

    /** Path after {@code /pgtrickle} to file and content type: nothing else is served. */
    static final Map<String, String[]> FILES = Map.of(
            "/", new String[] {"index.html", "text/html"},
            "/index.html", new String[] {"index.html", "text/html"},
            "/live.js", new String[] {"live.js", "text/javascript"},
            "/live.css", new String[] {"live.css", "text/css"});

    /**
     * Scripts, styles and connections from this origin only: an injected script could not run, nor send
     * the token elsewhere. No framing (clickjacking), no referrer.
     */
    static final String CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self';"
            + " base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

    @Override
    protected void doGet(HttpServletRequest request, HttpServletResponse response) throws IOException {
        String path = request.getPathInfo();
        if (path == null) {
            // /pgtrickle without the slash: the page's relative URLs need it
            response.sendRedirect(request.getRequestURI() + "/");
            return;
        }
        String[] file = FILES.get(path);
        byte[] body = file == null ? null : read(file[0]);
        if (body == null) {
            response.sendError(HttpServletResponse.SC_NOT_FOUND);
            return;
        }
        response.setContentType(file[1]);
        response.setCharacterEncoding("UTF-8");
        // a bundle update changes the page: browsers ask again each time (the files are a few kB)
        response.setHeader("Cache-Control", "no-cache");
        response.setHeader("Content-Security-Policy", CSP);
        response.setHeader("X-Content-Type-Options", "nosniff");
        response.setHeader("Referrer-Policy", "no-referrer");
        response.setContentLength(body.length);
        response.getOutputStream().write(body);
    }

    private static byte[] read(String name) {
        try (InputStream in = LivePageServlet.class.getResourceAsStream("/page/" + name)) {
            return in == null ? null : in.readAllBytes();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
