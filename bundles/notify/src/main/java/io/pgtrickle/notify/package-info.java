/**
 * The notify bundle. Its database part (unit io.pgtrickle.notify) is in {@code db/}, applied by the
 * catalog bundle's schema extender; its components wait for that unit's
 * {@link io.pgtrickle.api.schema.SchemaUnit}.
 */
@Header(name = "Pgtrickle-Schema", value = "db;requires:=\"io.pgtrickle.refresh\"")
@Requirement(namespace = "osgi.extender", name = "pgtrickle.schema", version = "1.0.0")
package io.pgtrickle.notify;

import org.osgi.annotation.bundle.Header;
import org.osgi.annotation.bundle.Requirement;
