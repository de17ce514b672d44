package io.pgtrickle.refresh.plan;

import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;
import net.sf.jsqlparser.JSQLParserException;
import net.sf.jsqlparser.expression.Expression;
import net.sf.jsqlparser.expression.operators.relational.ParenthesedExpressionList;
import net.sf.jsqlparser.parser.CCJSqlParserUtil;
import net.sf.jsqlparser.schema.Column;
import net.sf.jsqlparser.statement.select.PlainSelect;
import net.sf.jsqlparser.statement.select.SelectItem;

/**
 * A query each of whose result rows depends only on the source rows that share its key: a window
 * function's PARTITION BY ({@link Windows}), DISTINCT ON's expressions ({@link DistinctOn}). A change
 * touches only the keys of the rows it changes; those keys are found by the query's FROM and WHERE
 * with the keys as its select list (through the usual terms), and recomputed by the query with its
 * WHERE restricted to them (a WHERE runs first, and a key's rows pass it or not together), whose
 * rows replace the stored rows of those keys. Each key must be a result column, to find them.
 */
abstract class KeyedRecompute {

    private final String query;
    private final List<String> keys = new ArrayList<>();
    private final List<Integer> keyPositions = new ArrayList<>();

    /**
     * @param wanted the key expressions as the query writes them
     * @param what   what they are, for the refusal ("the PARTITION BY expression")
     */
    KeyedRecompute(String query, PlainSelect ps, List<String> wanted, String what) throws PlanRefusedException {
        this.query = query;
        // PostgreSQL prints PARTITION BY (dept % 2) where the select list has dept % 2
        List<String> outputs = ps.getSelectItems().stream().map(i -> unwrapped(i.getExpression()).toString()).toList();
        for (String key : wanted) {
            int at = outputs.indexOf(key);
            if (at < 0) {
                at = sameColumn(key, ps);
            }
            if (at < 0) {
                throw new PlanRefusedException(what + " " + key + " is not in the select list");
            }
            if (!keyPositions.contains(at)) {
                keyPositions.add(at);
                keys.add(outputs.get(at));
            }
        }
    }

    /** Whether the recomputation keeps the query's ORDER BY (it picks DISTINCT ON's rows; a window's is its own). */
    abstract boolean keepsOrder();

    /** The query's rows' keys, one per row: its FROM and WHERE, without what computes per key. */
    String keysQuery() throws PlanRefusedException {
        PlainSelect ps = parse(query);
        List<SelectItem<?>> items = new ArrayList<>();
        for (String k : keys) {
            items.add(SelectItem.from(DeltaPlanner.parseExpression(k)));
        }
        ps.setSelectItems(items);
        ps.setDistinct(null);
        ps.setOrderByElements(null);
        return ps.toString();
    }

    /**
     * The query restricted to the keys in CTE {@code touched} (their hash h and values k0, k1, ...;
     * see DeltaPlanner.restrictedToKeys): a key's rows all pass it or none, so its window
     * partition, or its DISTINCT ON row, comes out as the whole query would have it.
     */
    String restricted(String touched) throws PlanRefusedException {
        return DeltaPlanner.restrictedToKeys(() -> {
            PlainSelect ps = parse(query);
            if (!keepsOrder()) {
                ps.setOrderByElements(null);
            }
            return ps;
        }, keys, touched);
    }

    /** The stream table's columns that hold the key. */
    List<String> keyColumns(List<String> columns) {
        return keyPositions.stream().map(columns::get).collect(Collectors.toList());
    }

    /**
     * The position of the one select item that is the column a bare key column names: after a
     * subquery is inlined, its columns in the select list are qualified and those inside OVER or
     * DISTINCT ON may not be (a bare name there is unambiguous, or PostgreSQL would have refused it).
     */
    private static int sameColumn(String key, PlainSelect ps) {
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

    static PlainSelect parse(String query) {
        return DeltaPlanner.select(query) instanceof PlainSelect ps ? ps : null;
    }
}
