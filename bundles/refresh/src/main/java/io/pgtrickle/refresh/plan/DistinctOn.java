package io.pgtrickle.refresh.plan;

import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;
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
final class DistinctOn {

    private final String query;
    private final List<String> keys;
    private final List<Integer> keyPositions;

    private DistinctOn(String query, List<String> keys, List<Integer> keyPositions) {
        this.query = query;
        this.keys = keys;
        this.keyPositions = keyPositions;
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
        List<String> outputs = ps.getSelectItems().stream().map(i -> Windows.unwrapped(i.getExpression()).toString()).toList();
        List<Integer> positions = new ArrayList<>();
        List<String> keys = new ArrayList<>();
        for (SelectItem<?> on : ps.getDistinct().getOnSelectItems()) {
            String key = Windows.unwrapped(on.getExpression()).toString();
            int at = outputs.indexOf(key);
            if (at < 0) {
                at = Windows.sameColumn(key, ps);
            }
            if (at < 0) {
                throw new PlanRefusedException("the DISTINCT ON expression " + key + " is not in the select list");
            }
            if (!positions.contains(at)) {
                positions.add(at);
                keys.add(outputs.get(at));
            }
        }
        return new DistinctOn(query, keys, positions);
    }

    /** The query's rows' keys, one per row: its FROM and WHERE, without DISTINCT ON and ORDER BY. */
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

    /** The query restricted to the keys whose hash is in CTE {@code touched} (column h); its ORDER BY picks the rows. */
    String restricted(String touched) throws PlanRefusedException {
        PlainSelect ps = parse(query);
        String only = "hash_record_extended(ROW(" + String.join(", ", keys) + "), 0) IN (SELECT " + touched + ".h FROM " + touched + ")";
        ps.setWhere(DeltaPlanner.parseExpression(ps.getWhere() == null ? only : "(" + ps.getWhere() + ") AND " + only));
        return ps.toString();
    }

    /** The stream table's columns that hold the key. */
    List<String> keyColumns(List<String> columns) {
        return keyPositions.stream().map(columns::get).collect(Collectors.toList());
    }

    private static PlainSelect parse(String query) {
        return DeltaPlanner.select(query) instanceof PlainSelect ps ? ps : null;
    }
}
