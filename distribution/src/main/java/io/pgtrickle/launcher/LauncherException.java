package io.pgtrickle.launcher;

/**
 * A startup problem the operator can fix (bad home, unreadable file, busy port...). {@link Main} prints
 * the message as a single line and exits with status 1, so the message must say what is wrong and
 * what to change, and must never contain a secret.
 */
final class LauncherException extends Exception {

    private static final long serialVersionUID = 1L;

    LauncherException(String message) {
        super(oneLine(message));
    }

    LauncherException(String message, Throwable cause) {
        super(oneLine(message), cause);
    }

    /** Messages from libraries sometimes span lines; the operator gets one line. */
    static String oneLine(String message) {
        return message == null ? "" : message.strip().replaceAll("\\s*\\R\\s*", "; ");
    }
}
