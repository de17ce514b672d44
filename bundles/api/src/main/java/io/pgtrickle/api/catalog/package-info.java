/**
 * The pgtrickle catalog as a service: bundles that need the {@code pgtrickle} schema reference
 * {@link io.pgtrickle.api.catalog.Catalog} and are not activated before the catalog is migrated.
 */
@Export
@Version("1.0.0")
package io.pgtrickle.api.catalog;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
