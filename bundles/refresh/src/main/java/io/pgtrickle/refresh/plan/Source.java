package io.pgtrickle.refresh.plan;

import java.util.List;

/**
 * A captured relation a stream table reads.
 *
 * @param name      the relation, schema-qualified and quoted as SQL text
 * @param buffer    its change buffer, schema-qualified and quoted as SQL text
 * @param columns   the columns the buffer mirrors, quoted, in table order
 * @param types     their types as {@code format_type} prints them, with type modifiers ({@code numeric(12,2)})
 * @param identical per column, whether two equal values always print the same: true for integers,
 *                  false for numeric ({@code 1.0 = 1.00}), intervals ({@code '1 day' = '24 hours'}),
 *                  floats ({@code 0 = -0}), jsonb, text under a nondeterministic collation
 * @param rows      PostgreSQL's estimate of its rows when the plan was made, or -1 when it has none;
 *                  it only decides which tables a plan reads by index (see DeltaPlanner.Term)
 * @param uniqueKeys the columns (quoted, as in {@code columns}) of each of its unique indexes without
 *                  predicate or expression: rows equal in one of these are one row. They only decide
 *                  which changes a plan may join unconsolidated (see {@link UniqueJoins})
 */
public record Source(String name, String buffer, List<String> columns, List<String> types, List<Boolean> identical, double rows,
        List<List<String>> uniqueKeys) {

    public Source {
        columns = List.copyOf(columns);
        types = List.copyOf(types);
        identical = List.copyOf(identical);
        uniqueKeys = uniqueKeys.stream().map(List::copyOf).toList();
    }

    public Source(String name, String buffer, List<String> columns, List<String> types, List<Boolean> identical, double rows) {
        this(name, buffer, columns, types, identical, rows, List.of());
    }

    public Source(String name, String buffer, List<String> columns, List<String> types, List<Boolean> identical) {
        this(name, buffer, columns, types, identical, -1);
    }

    /** Looks sources up by the name the query text uses. */
    @FunctionalInterface
    public interface Lookup {
        Source find(String tableName) throws PlanRefusedException;
    }
}
