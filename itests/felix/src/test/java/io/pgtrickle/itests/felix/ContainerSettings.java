package io.pgtrickle.itests.felix;

/**
 * Names of the framework properties through which the driver hands values to the code running in
 * the framework. The native container shares the JVM, but the probe's classes are loaded afresh by
 * the framework, so static state set in the driver is not visible there.
 */
final class ContainerSettings {

    /** The version the Catalog must report: the project version, from the build. */
    static final String EXPECTED_VERSION = "pgtrickle.it.expected.version";
    static final String DB_URL = "pgtrickle.it.db.url";
    static final String DB_USER = "pgtrickle.it.db.user";
    /** Empty when the server needs no password. */
    static final String DB_PASSWORD = "pgtrickle.it.db.password";
    /** A password the server rejects for {@link #DB_USER}. */
    static final String DB_WRONG_PASSWORD = "pgtrickle.it.db.wrong.password";

    private ContainerSettings() {
    }
}
