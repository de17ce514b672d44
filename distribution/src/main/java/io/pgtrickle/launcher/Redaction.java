package io.pgtrickle.launcher;

import java.util.regex.Pattern;

/** Keeps passwords out of what the launcher prints. */
final class Redaction {

    static final String MASK = "********";

    // pgjdbc accepts password=... (and sslpassword=...) as URL parameters; any case, after ? or &
    private static final Pattern PASSWORD_PARAMETER = Pattern.compile("(?i)([?&](?:ssl)?password=)[^&]*");
    // user:password@ in the authority, in case a URL written for another client is pasted in
    private static final Pattern USER_INFO = Pattern.compile("//([^/@:]*):[^/@]*@");

    private Redaction() {
    }

    static String jdbcUrl(String url) {
        String masked = PASSWORD_PARAMETER.matcher(url).replaceAll("$1" + MASK);
        return USER_INFO.matcher(masked).replaceAll("//$1:" + MASK + "@");
    }
}
