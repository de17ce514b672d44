/**
 * Bundles' database parts as services: a component that needs its bundle's SQL references
 * {@link io.pgtrickle.api.schema.SchemaUnit} filtered on its unit.
 */
@Export
@Version("1.0.0")
package io.pgtrickle.api.schema;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
