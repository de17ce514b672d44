package io.pgtrickle.refresh.plan;

import java.util.List;

/**
 * A captured relation a stream table reads.
 *
 * @param name    the relation, schema-qualified and quoted as SQL text
 * @param buffer  its change buffer, schema-qualified and quoted as SQL text
 * @param columns the columns the buffer mirrors, quoted, in table order
 */
public record Source(String name, String buffer, List<String> columns) {

    public Source {
        columns = List.copyOf(columns);
    }

    /** Looks sources up by the name the query text uses. */
    @FunctionalInterface
    public interface Lookup {
        Source find(String tableName) throws PlanRefusedException;
    }
}
