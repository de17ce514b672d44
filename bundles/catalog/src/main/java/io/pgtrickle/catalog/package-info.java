/**
 * The schema extender and the core catalog: the migrator that applies every bundle's database part
 * (its unit), and the core unit itself, {@code db/schema} (the catalog's tables and, before 0.33.0.2,
 * the whole SQL surface, kept as released because databases hold their checksums).
 */
@Header(name = "Pgtrickle-Schema", value = "db")
package io.pgtrickle.catalog;

import org.osgi.annotation.bundle.Header;
