package io.pgtrickle.api.schema;

import org.osgi.annotation.versioning.ProviderType;

/**
 * The database part of one bundle (a unit), in place: its migrations and code are applied to the
 * platform's database at the version of the bundle now installed.
 *
 * <p>A bundle that carries a database part (manifest header {@code Pgtrickle-Schema}) is tracked by
 * the catalog bundle, which applies that part and then registers one of these for it. A component
 * that needs its bundle's SQL references its own unit, so it is not activated before that SQL is in
 * place, nor after it failed to apply:
 * {@code @Reference(target = "(schema.unit=io.pgtrickle.notify)")}. The part is applied once the
 * bundle is resolved; the service goes away when the bundle is updated, unresolved or uninstalled,
 * and comes back once the updated bundle's part is applied. The database part itself stays
 * (stopping or uninstalling a bundle never drops its tables or functions).
 */
@ProviderType
public interface SchemaUnit {

    /** Service property: the unit's name, its bundle's symbolic name. */
    String UNIT_PROPERTY = "schema.unit";

    /**
     * Service property: the unit's newest applied migration, as an {@code org.osgi.framework.Version}
     * ({@code 0.0.0} for a unit made of repeatable code only).
     */
    String VERSION_PROPERTY = "schema.version";

    /** Service property: the version of the bundle whose part is applied. */
    String BUNDLE_VERSION_PROPERTY = "schema.bundle.version";

    /** The unit's name, its bundle's symbolic name, e.g. {@code io.pgtrickle.notify}. */
    String unit();

    /** The unit's newest applied migration, e.g. {@code 0.33.0.2}; empty for repeatable code only. */
    String schemaVersion();

    /** The bundle version whose database part this is. */
    String bundleVersion();
}
