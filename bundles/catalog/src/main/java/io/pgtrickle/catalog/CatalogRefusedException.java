package io.pgtrickle.catalog;

/**
 * The database's catalog is in a state this bundle must not touch: newer than the bundle, carrying a
 * migration whose text changed since it was applied, or a {@code pgtrickle} schema that our
 * migrations did not create. Retrying does not help; an operator has to act.
 */
public class CatalogRefusedException extends RuntimeException {

    private static final long serialVersionUID = 1L;

    CatalogRefusedException(String message) {
        super(message);
    }
}
