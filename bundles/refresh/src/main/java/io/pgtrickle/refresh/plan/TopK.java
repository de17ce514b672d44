package io.pgtrickle.refresh.plan;

import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;
import net.sf.jsqlparser.expression.Expression;
import net.sf.jsqlparser.expression.LongValue;
import net.sf.jsqlparser.expression.operators.relational.ParenthesedExpressionList;
import net.sf.jsqlparser.schema.Column;
import net.sf.jsqlparser.statement.select.OrderByElement;
import net.sf.jsqlparser.statement.select.ParenthesedSelect;
import net.sf.jsqlparser.statement.select.PlainSelect;
import net.sf.jsqlparser.statement.select.Select;
import net.sf.jsqlparser.statement.select.SelectItem;
import net.sf.jsqlparser.statement.select.SetOperationList;

/**
 * {@code SELECT ... ORDER BY o1, o2, ... LIMIT k}: the stream table holds the first k rows of the
 * query's result, and nothing else. The query without ORDER BY and LIMIT ({@link #inner()}) is
 * planned as usual (ROWS, GROUPS or RUNNING_TOTALS); this class writes the end of its statement
 * ({@link DeltaPlanner.Apply}), which keeps the top k instead of the whole result.
 *
 * <p>Per refresh, the candidates are the stored rows the change leaves in place (ROWS: the stored
 * copies less the deleted copies, counted per row text; GROUPS and RUNNING_TOTALS: the stored rows
 * of groups the change does not touch) plus the new rows (inserted copies; the new rows of the
 * touched groups). The rows of the result outside the stored top k are not known, but they all sort
 * at or after the old k-th stored row. So the first k candidates are the answer when the stored
 * table had fewer than k rows (then nothing was unknown), or when there are at least k candidates
 * and the k-th sorts at or before the old k-th (PostgreSQL orders the two rows, by the query's ORDER
 * BY). Otherwise the statement recomputes the query, ORDER BY and LIMIT included: a branch of the
 * same statement that runs only then (deleting a row of the top k, or moving it down, can). Either
 * way only the difference between the stored rows and the new top k is written, as multisets of
 * row texts, with exact counts.
 *
 * <p>Ties at the boundary: the query's own result is then not determined either (any of the tied
 * rows may be among the first k), and any choice among them is correct.
 */
final class TopK implements DeltaPlanner.Apply {

    /** The query, ORDER BY and LIMIT included: what the recomputation runs. */
    private final String query;
    /** The query without ORDER BY and LIMIT, as the engine's parser prints it. */
    private final String inner;
    private final long k;
    /** Per ORDER BY item: the result column it sorts by (0-based), and its direction and NULLS placement. */
    private final List<Integer> columns;
    private final List<String> directions;

    private TopK(String query, String inner, long k, List<Integer> columns, List<String> directions) {
        this.query = query;
        this.inner = inner;
        this.k = k;
        this.columns = columns;
        this.directions = directions;
    }

    /**
     * The TopK of a normalised query, or null when it has no LIMIT (or LIMIT ALL). Refuses OFFSET,
     * FETCH, a LIMIT that is not an integer literal, and ORDER BY items that are not result columns.
     */
    static TopK of(String query) throws PlanRefusedException {
        Select select = DeltaPlanner.select(query); // null: the planner says why with its own reason
        if (select == null) {
            return null;
        }
        if (select.getOffset() != null || select.getLimit() != null && select.getLimit().getOffset() != null) {
            throw new PlanRefusedException("the query uses OFFSET");
        }
        if (select.getFetch() != null) {
            throw new PlanRefusedException("the query uses FETCH FIRST");
        }
        if (select.getLimit() == null || select.getLimit().isLimitAll()) {
            return null;
        }
        Expression count = select.getLimit().getRowCount();
        if (!(count instanceof LongValue value) || value.getValue() < 0) {
            throw new PlanRefusedException("the query's LIMIT is not a non-negative integer literal: " + count);
        }
        List<OrderByElement> order = select.getOrderByElements();
        if (order == null || order.isEmpty()) {
            throw new PlanRefusedException("the query uses LIMIT without ORDER BY");
        }
        // the result columns: of the SELECT, or of the first branch of a UNION ALL
        Select first = select;
        while (first instanceof SetOperationList union) {
            first = union.getSelects().get(0);
            while (first instanceof ParenthesedSelect p) {
                first = p.getSelect();
            }
        }
        if (!(first instanceof PlainSelect plain)) {
            throw new PlanRefusedException("the query's form is not maintained differentially: " + first.getClass().getSimpleName());
        }
        boolean setOperation = select instanceof SetOperationList;
        List<SelectItem<?>> items = plain.getSelectItems();
        List<Integer> at = new ArrayList<>();
        List<String> directions = new ArrayList<>();
        for (OrderByElement o : order) {
            int column = column(o.getExpression(), items, setOperation);
            if (column < 0) {
                throw new PlanRefusedException("the ORDER BY item " + o.getExpression() + " is not a result column");
            }
            at.add(column);
            directions.add((o.isAsc() ? "" : " DESC") + (o.getNullOrdering() == null ? ""
                    : o.getNullOrdering() == OrderByElement.NullOrdering.NULLS_FIRST ? " NULLS FIRST" : " NULLS LAST"));
        }
        select.setOrderByElements(null);
        select.setLimit(null);
        return new TopK(query, select.toString(), value.getValue(), at, directions);
    }

    /**
     * The result column an ORDER BY item sorts by, or -1: a position; a bare name that is one
     * result column's name (PostgreSQL reads an output name first); an expression that is the
     * expression of a result column (normalised text prints ORDER BY items as expressions, those
     * other than column references in parentheses).
     */
    private static int column(Expression e, List<SelectItem<?>> items, boolean setOperation) {
        while (e instanceof ParenthesedExpressionList<?> p && p.size() == 1) {
            e = p.get(0);
        }
        if (e instanceof LongValue position) {
            long p = position.getValue();
            return p >= 1 && p <= items.size() ? (int) p - 1 : -1;
        }
        if (e instanceof Column c && c.getTable() == null) {
            List<Integer> named = new ArrayList<>();
            for (int i = 0; i < items.size(); i++) {
                SelectItem<?> item = items.get(i);
                String name = item.getAlias() != null ? item.getAlias().getName()
                        : item.getExpression() instanceof Column ic ? ic.getColumnName() : null;
                if (name != null && QueryInliner.norm(name).equals(QueryInliner.norm(c.getColumnName()))) {
                    named.add(i);
                }
            }
            // several columns of that name: PostgreSQL takes it only if they are one expression
            if (named.size() == 1 || setOperation) {
                return named.size() == 1 ? named.get(0) : -1;
            }
        }
        if (setOperation) {
            return -1;
        }
        String text = e.toString();
        for (int i = 0; i < items.size(); i++) {
            Expression item = items.get(i).getExpression();
            while (item instanceof ParenthesedExpressionList<?> p && p.size() == 1) {
                item = p.get(0);
            }
            if (item.toString().equals(text)) {
                return i;
            }
        }
        return -1;
    }

    /** The query without ORDER BY and LIMIT, for the strategy that maintains it. */
    String inner() {
        return inner;
    }

    /** The ORDER BY over result columns read through {@code prefix}. */
    private String orderBy(String prefix, List<String> names) {
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < columns.size(); i++) {
            out.append(i == 0 ? "" : ", ").append(prefix).append(names.get(columns.get(i))).append(directions.get(i));
        }
        return out.toString();
    }

    // ---------------------------------------------------------------- the end of the statement

    @Override
    public String rows(String target, List<String> columns, boolean identical, List<String> rowKey) {
        String d = DeltaPlanner.prefixed("d.", columns);
        // the stored copies less the deleted ones (a deleted copy outside the top k is simply not
        // among them), plus the inserted copies
        String candidates = """
                __pgt_gone AS MATERIALIZED (
                    SELECT ROW(%1$s)::text AS __pgt_key, sum(-d.__pgt_w) AS __pgt_n
                      FROM __pgt_delta d WHERE d.__pgt_w < 0 GROUP BY 1),
                __pgt_cand AS MATERIALIZED (
                    SELECT %2$s FROM __pgt_stored o LEFT JOIN __pgt_gone g ON g.__pgt_key = o.__pgt_key
                     WHERE o.__pgt_n > coalesce(g.__pgt_n, 0)
                    UNION ALL
                    SELECT %1$s FROM __pgt_delta d CROSS JOIN LATERAL generate_series(1, d.__pgt_w) WHERE d.__pgt_w > 0),
                """.formatted(d, DeltaPlanner.prefixed("o.", columns));
        return apply(target, columns, candidates);
    }

    @Override
    public String groups(String target, List<String> columns, List<String> keyColumns, String touched) {
        // the stored rows of the groups the change does not touch, plus the new rows of those it does
        String candidates = """
                __pgt_cand AS MATERIALIZED (
                    SELECT %1$s FROM __pgt_stored o
                     WHERE NOT EXISTS (SELECT FROM %3$s t WHERE t.h = hash_record_extended(ROW(%4$s), 0))
                    UNION ALL
                    SELECT %2$s FROM __pgt_new n),
                """.formatted(DeltaPlanner.prefixed("o.", columns), DeltaPlanner.prefixed("n.", columns), touched,
                DeltaPlanner.prefixed("o.", keyColumns));
        return apply(target, columns, candidates);
    }

    /**
     * The stored rows (CTE __pgt_stored: their ctid, text, copy number per text, and columns), the
     * candidates' first k (__pgt_top), whether those are the answer (__pgt_ok), the new top k
     * (__pgt_result: those, or the recomputed query), and the writes of the difference.
     */
    private String apply(String target, List<String> columns, String candidates) {
        String cols = String.join(", ", columns);
        String s = DeltaPlanner.prefixed("s.", columns);
        String r = DeltaPlanner.prefixed("r.", columns);
        String ok = k == 0 ? "true" : """
                (SELECT count(*) FROM __pgt_stored) < %1$d
                        OR (SELECT count(*) FROM __pgt_top) >= %1$d AND (
                            SELECT x.__pgt_which FROM (
                                (SELECT 0 AS __pgt_which, %2$s FROM __pgt_top t ORDER BY %3$s OFFSET %4$d LIMIT 1)
                                UNION ALL
                                (SELECT 1, %5$s FROM __pgt_stored o ORDER BY %6$s OFFSET %4$d LIMIT 1)) x
                             ORDER BY %7$s, x.__pgt_which LIMIT 1) = 0""".formatted(k,
                DeltaPlanner.prefixed("t.", columns), orderBy("t.", columns), k - 1, DeltaPlanner.prefixed("o.", columns),
                orderBy("o.", columns), orderBy("x.", columns));
        return """
                __pgt_stored AS MATERIALIZED (
                    SELECT s.ctid AS __pgt_ctid, ROW(%1$s)::text AS __pgt_key,
                           row_number() OVER (PARTITION BY ROW(%1$s)::text) AS __pgt_n, %1$s
                      FROM %2$s s),
                %3$s
                __pgt_top AS MATERIALIZED (
                    SELECT %4$s FROM __pgt_cand c ORDER BY %5$s LIMIT %6$d),
                -- the rows outside the stored top k sort at or after its k-th: if the new k-th does
                -- not sort after that, none of them can be among the new top k
                __pgt_ok AS MATERIALIZED (
                    SELECT %7$s AS ok),
                __pgt_result AS MATERIALIZED (
                    SELECT %4$s FROM __pgt_top c WHERE (SELECT ok FROM __pgt_ok)
                    UNION ALL
                    SELECT %8$s FROM (%9$s) q(%10$s)
                     WHERE NOT (SELECT ok FROM __pgt_ok) AND NOT (SELECT t FROM __pgt_trunc)),
                __pgt_fresh AS MATERIALIZED (
                    SELECT ROW(%11$s)::text AS __pgt_key, row_number() OVER (PARTITION BY ROW(%11$s)::text) AS __pgt_n, %11$s
                      FROM __pgt_result r),
                %12$s""".formatted(s, target, candidates, DeltaPlanner.prefixed("c.", columns), orderBy("c.", columns), k, ok,
                DeltaPlanner.prefixed("q.", columns), query, cols, r,
                DeltaPlanner.copiesWritten(target, columns, "__pgt_stored", "__pgt_fresh"));
    }

    @Override
    public String toString() {
        return "TopK(" + k + ": " + java.util.stream.IntStream.range(0, columns.size())
                .mapToObj(i -> columns.get(i) + directions.get(i)).collect(Collectors.joining(", ")) + ")";
    }
}
