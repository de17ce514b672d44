package io.pgtrickle.refresh.plan;

import java.util.ArrayList;
import java.util.List;
import net.sf.jsqlparser.expression.AnalyticExpression;
import net.sf.jsqlparser.expression.AnalyticType;
import net.sf.jsqlparser.expression.Expression;
import net.sf.jsqlparser.expression.ExpressionVisitorAdapter;
import net.sf.jsqlparser.statement.select.PlainSelect;

/**
 * Window functions with PARTITION BY: a window function reads only its row's partition, so a
 * change touches only the partitions of the rows it changes, which are recomputed (see
 * {@link KeyedRecompute}). With several windows the key is the PARTITION BY expressions they all
 * share.
 */
final class Windows extends KeyedRecompute {

    private Windows(String query, PlainSelect ps, List<String> keys) throws PlanRefusedException {
        super(query, ps, keys, "the PARTITION BY expression");
    }

    @Override
    boolean keepsOrder() {
        return false;
    }

    /** The windows of a plain SELECT, or null when it calls no window function. */
    static Windows of(String query) throws PlanRefusedException {
        PlainSelect ps = parse(query);
        if (ps == null) {
            return null;
        }
        List<AnalyticExpression> windows = new ArrayList<>();
        ExpressionVisitorAdapter<Void> finder = new ExpressionVisitorAdapter<>() {
            @Override
            public <S> Void visit(AnalyticExpression a, S context) {
                if (a.getType() != AnalyticType.FILTER_ONLY) {
                    windows.add(a);
                }
                return super.visit(a, context);
            }
        };
        ps.getSelectItems().forEach(i -> i.getExpression().accept(finder, null));
        if (windows.isEmpty()) {
            return null;
        }
        if (ps.getGroupBy() != null || ps.getDistinct() != null || ps.getHaving() != null || ps.getWindowDefinitions() != null
                || ps.getSelectItems().stream().anyMatch(i -> aggregatesOutsideWindows(i.getExpression()))) {
            throw new PlanRefusedException("the query uses window functions over GROUP BY, DISTINCT, aggregates or a named WINDOW");
        }
        List<String> common = null;
        for (AnalyticExpression w : windows) {
            if (w.getWindowName() != null || w.getPartitionExpressionList() == null || w.getPartitionExpressionList().isEmpty()) {
                throw new PlanRefusedException("the query uses a window function without PARTITION BY");
            }
            List<String> mine = new ArrayList<>();
            for (Object e : w.getPartitionExpressionList()) {
                mine.add(unwrapped((Expression) e).toString());
            }
            if (common == null) {
                common = mine;
            } else {
                common.retainAll(mine);
            }
        }
        if (common.isEmpty()) {
            throw new PlanRefusedException("the query's window functions share no PARTITION BY expression");
        }
        return new Windows(query, ps, common);
    }

    /** An aggregate call that is not itself a window function (count(*) OVER (...) is one). */
    private static boolean aggregatesOutsideWindows(Expression e) {
        boolean[] found = {false};
        e.accept(new ExpressionVisitorAdapter<Void>() {
            @Override
            public <S> Void visit(AnalyticExpression a, S context) {
                return null; // its own arguments are the window's
            }

            @Override
            public <S> Void visit(net.sf.jsqlparser.expression.Function f, S context) {
                if (DeltaPlanner.aggregates(f)) {
                    found[0] = true;
                }
                return null;
            }
        }, null);
        return found[0];
    }
}
