package io.pgtrickle.api.jdbc;

import java.util.regex.Pattern;

/**
 * Keeps passwords out of logs and messages. The one implementation for every place that prints a
 * JDBC URL: the launcher, the data source bundle and whatever reports a connection later.
 */
public final class Redaction {

    public static final String MASK = "********";

    // pgjdbc accepts password=... (and sslpassword=...) as URL parameters; any case, after ? or &
    private static final Pattern PASSWORD_PARAMETER = Pattern.compile("(?i)([?&](?:ssl)?password=)[^&]*");
    // user:password@ in the authority, in case a URL written for another client is pasted in
    private static final Pattern USER_INFO = Pattern.compile("//([^/@:]*):[^/@]*@");

    private Redaction() {
    }

    /** The URL with every password in it replaced by {@value #MASK}; null stays null. */
    public static String jdbcUrl(String url) {
        if (url == null) {
            return null;
        }
        String masked = PASSWORD_PARAMETER.matcher(url).replaceAll("$1" + MASK);
        return USER_INFO.matcher(masked).replaceAll("//$1:" + MASK + "@");
    }
}
