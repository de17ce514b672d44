/**
 * Service properties under which the platform publishes its pooled {@link javax.sql.DataSource}, and
 * {@link io.pgtrickle.api.jdbc.Redaction} for printing JDBC URLs without their passwords.
 */
@Export
@Version("1.0.0")
package io.pgtrickle.api.jdbc;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
