package io.pgtrickle.refresh.plan;

import io.pgtrickle.refresh.plan.DeltaPlanner.Branch;
import io.pgtrickle.refresh.plan.DeltaPlanner.Occurrence;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import net.sf.jsqlparser.expression.Expression;
import net.sf.jsqlparser.expression.operators.relational.EqualsTo;
import net.sf.jsqlparser.schema.Column;
import net.sf.jsqlparser.statement.select.Join;

/**
 * Which source's changes a sum may join unconsolidated. Consolidating (a GROUP BY over every column
 * read, and the text forms of those that print differently) nets out an update's delete and
 * insert that agree, which sums do anyway; it is there for joins, through which a row updated
 * back and forth would multiply before it cancels. Not through a join that finds at most one row
 * of the other table per changed row: the other table's unique key, every column of it equated to
 * a column of the changed table (or of one already so reached). Then each change joins about one
 * row of every table (of the other tables' changes, consolidated, at most two per key; of their
 * old states at most three), and consolidating cost more than it saved: on the engine benchmark's
 * agg (orders joined with customers by its key, summed per region), 58.6 against 36.6 ms at 1%
 * changed, 275 against 139 at 10%.
 *
 * <p>One source at most, whose occurrence is its only one: two sources unconsolidated would join
 * their changes with each other's, a row updated a thousand times in each meeting two thousand rows.
 * What this decides is cost only: sums are the same whether the changes are consolidated or not.
 */
final class UniqueJoins {

    private UniqueJoins() {
    }

    /**
     * The buffer of the one source of {@code shape} whose changes its terms may join
     * unconsolidated (the largest such, by the estimate the plan was made with), or none: a shape
     * with subqueries, outer or special joins, or a table without a unique key its joins use.
     */
    static Set<String> unconsolidated(Branch shape) {
        if (!shape.sublinks.isEmpty()) {
            return Set.of();
        }
        List<Expression> conditions = new ArrayList<>(shape.plain);
        if (shape.select.getJoins() != null) {
            for (Join j : shape.select.getJoins()) {
                if (QueryInliner.innerOn(j)) {
                    j.getOnExpressions().forEach(on -> conditions.addAll(Sublinks.conjuncts(on)));
                } else if (!QueryInliner.crossOrComma(j)) {
                    return Set.of();
                }
            }
        }
        List<Column[]> equated = new ArrayList<>();
        for (Expression c : conditions) {
            if (Sublinks.unparen(c) instanceof EqualsTo eq && Sublinks.unparen(eq.getLeftExpression()) instanceof Column l
                    && Sublinks.unparen(eq.getRightExpression()) instanceof Column r && l.getTable() != null && r.getTable() != null) {
                equated.add(new Column[] {l, r});
                equated.add(new Column[] {r, l});
            }
        }
        List<Occurrence> occurrences = shape.occurrences;
        return occurrences.stream()
                .filter(o -> occurrences.stream().filter(p -> p.source.buffer().equals(o.source.buffer())).count() == 1)
                .sorted(Comparator.comparingDouble((Occurrence o) -> o.source.rows() < 0 ? Double.MAX_VALUE : o.source.rows()).reversed())
                .filter(o -> reachesAll(o, occurrences, equated))
                .map(o -> o.source.buffer())
                .findFirst().map(Set::of).orElse(Set.of());
    }

    /** Whether every occurrence is found from {@code start} by unique keys, each equated to occurrences found before. */
    private static boolean reachesAll(Occurrence start, List<Occurrence> occurrences, List<Column[]> equated) {
        Set<String> reached = new HashSet<>(Set.of(start.alias));
        boolean grew = true;
        while (grew) {
            grew = false;
            for (Occurrence o : occurrences) {
                if (!reached.contains(o.alias) && o.source.uniqueKeys().stream().anyMatch(key -> key.stream().allMatch(
                        k -> equated.stream().anyMatch(e -> e[0].getTable().getName().equals(o.alias) && e[0].getColumnName().equals(k)
                                && reached.contains(e[1].getTable().getName()))))) {
                    reached.add(o.alias);
                    grew = true;
                }
            }
        }
        return occurrences.stream().allMatch(o -> reached.contains(o.alias));
    }
}
