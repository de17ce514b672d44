package io.pgtrickle.refresh.plan;

import java.util.ArrayList;
import java.util.List;
import net.sf.jsqlparser.expression.AnalyticExpression;
import net.sf.jsqlparser.expression.AnalyticType;
import net.sf.jsqlparser.expression.ExpressionVisitorAdapter;
import net.sf.jsqlparser.statement.select.PlainSelect;
import net.sf.jsqlparser.statement.select.SelectItem;

/**
 * {@code SELECT DISTINCT ON (k) ... ORDER BY k, ...}: the first row of each k by the ORDER BY. Like a
 * window's partition, a key's row depends only on the rows of that key, so a change touches only
 * the keys of the rows it changes (the query's FROM and WHERE with the keys as its select list,
 * through the usual terms; a row whose key changed touches both). Those keys are recomputed, the
 * query's WHERE restricted to them and its DISTINCT ON and ORDER BY kept, and their stored rows
 * replaced. Each DISTINCT ON expression must be a result column, to find the stored rows. Which row
 * is first is the ORDER BY's to decide: when it leaves a tie, PostgreSQL picks one, and so may the
 * stream table, another one.
 */
final class DistinctOn extends KeyedRecompute {

    private DistinctOn(String query, PlainSelect ps, List<String> keys) throws PlanRefusedException {
        super(query, ps, keys, "the DISTINCT ON expression");
    }

    @Override
    boolean keepsOrder() {
        return true;
    }

    /** The DISTINCT ON of a plain SELECT, or null when it has none. */
    static DistinctOn of(String query) throws PlanRefusedException {
        PlainSelect ps = parse(query);
        if (ps == null || ps.getDistinct() == null || ps.getDistinct().getOnSelectItems() == null) {
            return null;
        }
        boolean[] windows = {false};
        ExpressionVisitorAdapter<Void> finder = new ExpressionVisitorAdapter<>() {
            @Override
            public <S> Void visit(AnalyticExpression a, S context) {
                windows[0] |= a.getType() != AnalyticType.FILTER_ONLY;
                return super.visit(a, context);
            }
        };
        ps.getSelectItems().forEach(i -> i.getExpression().accept(finder, null));
        if (ps.getGroupBy() != null || ps.getHaving() != null || windows[0]
                || ps.getSelectItems().stream().anyMatch(i -> DeltaPlanner.aggregates(i.getExpression()))) {
            throw new PlanRefusedException("the query uses DISTINCT ON over GROUP BY, aggregates or window functions");
        }
        if (ps.getLimit() != null || ps.getOffset() != null || ps.getFetch() != null) {
            throw new PlanRefusedException("the query uses ORDER BY ... LIMIT over DISTINCT ON");
        }
        List<String> keys = new ArrayList<>();
        for (SelectItem<?> on : ps.getDistinct().getOnSelectItems()) {
            keys.add(unwrapped(on.getExpression()).toString());
        }
        return new DistinctOn(query, ps, keys);
    }
}
