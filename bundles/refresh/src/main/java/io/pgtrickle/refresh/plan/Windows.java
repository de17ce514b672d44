package io.pgtrickle.refresh.plan;

import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;
import net.sf.jsqlparser.JSQLParserException;
import net.sf.jsqlparser.expression.AnalyticExpression;
import net.sf.jsqlparser.expression.AnalyticType;
import net.sf.jsqlparser.expression.Expression;
import net.sf.jsqlparser.expression.ExpressionVisitorAdapter;
import net.sf.jsqlparser.expression.operators.relational.ParenthesedExpressionList;
import net.sf.jsqlparser.parser.CCJSqlParserUtil;
import net.sf.jsqlparser.schema.Column;
import net.sf.jsqlparser.statement.select.PlainSelect;
import net.sf.jsqlparser.statement.select.SelectItem;

/**
 * Window functions with PARTITION BY: a window function reads only its row's partition, so a
 * change touches only the partitions of the rows it changes. The partition keys the changes
 * touch (the query's FROM and WHERE with the keys as its select list, through the usual terms)
 * are recomputed: the query with its WHERE restricted to those partitions (a WHERE runs before
 * the windows, and whole partitions pass it or not, so their rows come out as in the whole
 * query), and their stored rows replaced copy by copy. With several windows the key is the
 * PARTITION BY expressions they all share; each must be a result column, to find the stored rows.
 */
final class Windows {

    private final String query;
    private final List<String> keys;
    private final List<Integer> keyPositions;

    private Windows(String query, List<String> keys, List<Integer> keyPositions) {
        this.query = query;
        this.keys = keys;
        this.keyPositions = keyPositions;
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
        // PostgreSQL prints PARTITION BY (dept % 2) where the select list has dept % 2
        List<String> outputs = ps.getSelectItems().stream().map(i -> unwrapped(i.getExpression()).toString()).toList();
        List<Integer> positions = new ArrayList<>();
        List<String> keys = new ArrayList<>();
        for (String key : common) {
            int at = outputs.indexOf(key);
            if (at < 0) {
                at = sameColumn(key, ps);
            }
            if (at < 0) {
                throw new PlanRefusedException("the PARTITION BY expression " + key + " is not in the select list");
            }
            positions.add(at);
            keys.add(outputs.get(at));
        }
        return new Windows(query, keys, positions);
    }

    /** The query's rows' partition keys, one per row: its FROM and WHERE, without the windows. */
    String keysQuery() throws PlanRefusedException {
        PlainSelect ps = parse(query);
        List<SelectItem<?>> items = new ArrayList<>();
        for (String k : keys) {
            items.add(SelectItem.from(DeltaPlanner.parseExpression(k)));
        }
        ps.setSelectItems(items);
        ps.setOrderByElements(null);
        return ps.toString();
    }

    /** The query restricted to the partitions whose key hash is in CTE {@code touched} (column h). */
    String restricted(String touched) throws PlanRefusedException {
        PlainSelect ps = parse(query);
        String only = "hash_record_extended(ROW(" + String.join(", ", keys) + "), 0) IN (SELECT " + touched + ".h FROM " + touched + ")";
        ps.setWhere(DeltaPlanner.parseExpression(ps.getWhere() == null ? only : "(" + ps.getWhere() + ") AND " + only));
        ps.setOrderByElements(null);
        return ps.toString();
    }

    /** The stream table's columns that hold the partition key. */
    List<String> keyColumns(List<String> columns) {
        return keyPositions.stream().map(columns::get).collect(Collectors.toList());
    }

    /**
     * The position of the one select item that is the column a bare PARTITION BY column names:
     * after a subquery is inlined, its columns in the select list are qualified and those inside
     * OVER may not be (a bare name there is unambiguous, or PostgreSQL would have refused it).
     */
    static int sameColumn(String key, PlainSelect ps) {
        Expression k;
        try {
            k = CCJSqlParserUtil.parseExpression(key);
        } catch (JSQLParserException e) {
            return -1;
        }
        if (!(k instanceof Column bare) || bare.getTable() != null && bare.getTable().getName() != null) {
            return -1;
        }
        int found = -1;
        for (int i = 0; i < ps.getSelectItems().size(); i++) {
            if (ps.getSelectItems().get(i).getExpression() instanceof Column c
                    && QueryInliner.norm(c.getColumnName()).equals(QueryInliner.norm(bare.getColumnName()))) {
                if (found >= 0) {
                    return -1;
                }
                found = i;
            }
        }
        return found;
    }

    static Expression unwrapped(Expression e) {
        while (e instanceof ParenthesedExpressionList<?> p && p.size() == 1) {
            e = (Expression) p.get(0);
        }
        return e;
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

    private static PlainSelect parse(String query) {
        return DeltaPlanner.select(query) instanceof PlainSelect ps ? ps : null;
    }
}
