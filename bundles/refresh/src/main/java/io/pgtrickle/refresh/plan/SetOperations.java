package io.pgtrickle.refresh.plan;

import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import net.sf.jsqlparser.expression.Expression;
import net.sf.jsqlparser.statement.select.ExceptOp;
import net.sf.jsqlparser.statement.select.IntersectOp;
import net.sf.jsqlparser.statement.select.ParenthesedSelect;
import net.sf.jsqlparser.statement.select.PlainSelect;
import net.sf.jsqlparser.statement.select.Select;
import net.sf.jsqlparser.statement.select.SelectItem;
import net.sf.jsqlparser.statement.select.SetOperation;
import net.sf.jsqlparser.statement.select.SetOperationList;
import net.sf.jsqlparser.statement.select.UnionOp;

/**
 * UNION, INTERSECT and EXCEPT, with or without ALL (a query of only UNION ALL is the ROWS
 * strategy's). The copies of a row in the result are a function of its copies in each branch
 * (UNION ALL a + b, UNION [a + b > 0], INTERSECT ALL least(a, b), INTERSECT [a > 0 and b > 0],
 * EXCEPT ALL greatest(a - b, 0), EXCEPT [a > 0 and b = 0], nested as the query nests them).
 *
 * <p>Where every result column prints the same for equal values, those counts are kept per row
 * ({@link #counted}): a state table of each row's copies per branch (by the hash of its values,
 * cast to the result's types, so a branch's {@code 1} and another's {@code 1.0} of a numeric
 * column are the same row, as the set operation itself compares them), adjusted by the branches'
 * change terms; a row's copies in the result change by the function of its new counts less that of
 * its old ones. A refresh then reads the changes only, where recomputing the rows they touch reads
 * every branch whole: no index finds a row by the hash of its values (a UNION of two filters over
 * 1M rows took as long as REFRESH MATERIALIZED VIEW).
 *
 * <p>Otherwise (a column whose equal values print differently, a branch with a subquery in WHERE),
 * a row is touched only by changes of branch rows equal to it: the branches' change terms, over a
 * UNION ALL of the branches, give the touched rows' hashes, and the query restricted to those rows
 * (in every branch, where PostgreSQL would not push a condition with a subquery down itself)
 * recomputes them, so that the copies printed are the ones PostgreSQL's set operation picks.
 */
final class SetOperations {

    private final String query;
    private final List<String> types;

    private SetOperations(String query, List<String> types) {
        this.query = query;
        this.types = types;
    }

    /** The set operation in {@code query}, or null when it is none or only UNION ALL. */
    static SetOperations of(String query, List<String> types) throws PlanRefusedException {
        Select select = parse(query);
        if (!(select instanceof SetOperationList union) || select.getWithItemsList() != null && !select.getWithItemsList().isEmpty()) {
            return null;
        }
        if (onlyUnionAll(union)) {
            return null;
        }
        for (PlainSelect b : branches(union)) {
            if (b.getGroupBy() != null || b.getDistinct() != null || b.getHaving() != null || b.getLimit() != null
                    || b.getOffset() != null || b.getFetch() != null || b.getWindowDefinitions() != null
                    || b.getSelectItems().stream().anyMatch(i -> DeltaPlanner.aggregates(i.getExpression()))) {
                throw new PlanRefusedException("a branch of UNION, INTERSECT or EXCEPT aggregates, uses DISTINCT or LIMIT");
            }
            if (b.getSelectItems().size() != types.size()) {
                throw new PlanRefusedException("a branch of the set operation has " + b.getSelectItems().size()
                        + " result columns but the stream table has " + types.size());
            }
        }
        return new SetOperations(query, types);
    }

    /**
     * The plan that keeps each row's count per branch (see the class comment), or null where it
     * does not apply: a result column whose equal values print differently (which of them a set
     * operation prints is the one it meets first), no state table, or a branch with a subquery in
     * WHERE or without a table.
     */
    DeltaPlanner.Plan counted(DeltaPlanner.Target to, Source.Lookup sources, boolean consolidate) throws PlanRefusedException {
        if (to.stateTable() == null || to.identical().contains(false)) {
            return null;
        }
        String union = keysQuery();
        DeltaPlanner.Parsed shape = DeltaPlanner.parse(union, sources);
        for (DeltaPlanner.Branch b : shape.branches()) {
            if (!b.sublinks.isEmpty() || b.occurrences.isEmpty()) {
                return null;
            }
        }
        int n = shape.branches().size();
        int m = types.size();
        String multiplicityNew = multiplicity(parse(query), new int[1], i -> "s.c" + i);
        String multiplicityOld = multiplicity(parse(query), new int[1], i -> "s.o" + i);
        List<String> values = IntStream.range(0, m).mapToObj(k -> "k" + k).toList();
        List<String> counts = IntStream.range(0, n).mapToObj(i -> "c" + i).toList();

        // per change term, each row's hash, values and the copies it adds to or takes from its branch
        DeltaPlanner.Deltas deltas = new DeltaPlanner.Deltas(shape, consolidate);
        List<String> termColumns = new ArrayList<>(List.of("h"));
        termColumns.addAll(values);
        termColumns.addAll(counts);
        List<String> terms = new ArrayList<>();
        for (int bi = 0; bi < n; bi++) {
            for (DeltaPlanner.Term t : shape.branches().get(bi).changeTerms()) {
                DeltaPlanner.Branch b = DeltaPlanner.parse(union, sources).branches().get(bi);
                List<String> row = b.select.getSelectItems().stream().map(i -> i.getExpression().toString()).toList();
                List<SelectItem<?>> items = new ArrayList<>();
                items.add(SelectItem.from(DeltaPlanner.parseExpression("hash_record_extended(ROW(" + String.join(", ", row) + "), 0)")));
                for (String v : row) {
                    items.add(SelectItem.from(DeltaPlanner.parseExpression(v)));
                }
                for (int j = 0; j < n; j++) {
                    items.add(SelectItem.from(DeltaPlanner.parseExpression(j == bi ? "(" + b.weight(t) + ")" : "0")));
                }
                b.select.setSelectItems(items);
                terms.add(DeltaPlanner.leg(b.render(t, deltas), termColumns, b.pending(t, deltas, null)));
            }
        }

        // a FULL refresh refills the counts from the branches
        List<String> refillBranches = new ArrayList<>();
        for (int bi = 0; bi < n; bi++) {
            DeltaPlanner.Branch b = DeltaPlanner.parse(union, sources).branches().get(bi);
            for (int j = 0; j < n; j++) {
                b.select.addSelectItems(SelectItem.from(DeltaPlanner.parseExpression(j == bi ? "1" : "0")));
            }
            refillBranches.add(b.select.toString());
        }
        String stateSql = "SELECT hash_record_extended(ROW(" + DeltaPlanner.prefixed("u.", values) + "), 0) AS h, "
                + counts.stream().map(c -> "sum(u." + c + ")::bigint AS " + c).collect(Collectors.joining(", "))
                + " FROM (" + String.join(" UNION ALL ", refillBranches) + ") u(" + String.join(", ", values) + ", "
                + String.join(", ", counts) + ") GROUP BY 1";
        String state = to.stateTable();
        String ddl = "CREATE TABLE " + state + " (h bigint PRIMARY KEY, "
                + counts.stream().map(c -> c + " bigint NOT NULL").collect(Collectors.joining(", ")) + ")";

        List<String> stateColumns = new ArrayList<>(List.of("h"));
        stateColumns.addAll(counts);
        String delta = """
                WITH %1$s,
                __pgt_trunc AS MATERIALIZED (SELECT %2$s AS t),
                __pgt_dg AS MATERIALIZED (
                    SELECT t.h, %3$s, %4$s FROM (%5$s) t GROUP BY t.h),
                __pgt_state_old AS MATERIALIZED (
                    SELECT a.* FROM __pgt_dg d CROSS JOIN LATERAL (SELECT a.* FROM %6$s a WHERE a.h = d.h OFFSET 0) a),
                __pgt_state_new AS MATERIALIZED (
                    SELECT d.h, %7$s, %8$s, %9$s, o.h IS NOT NULL AS __pgt_existed
                      FROM __pgt_dg d LEFT JOIN __pgt_state_old o ON o.h = d.h),
                %10$s,
                __pgt_delta AS MATERIALIZED (
                    SELECT %11$s, (%12$s - %13$s)::bigint AS __pgt_w FROM __pgt_state_new s WHERE %12$s <> %13$s),
                %14$s""".formatted(deltas.definitions(), DeltaPlanner.truncated(shape),
                values.stream().map(v -> "(array_agg(t." + v + "))[1] AS " + v).collect(Collectors.joining(", ")),
                counts.stream().map(c -> "sum(t." + c + ") AS " + c).collect(Collectors.joining(", ")),
                Legs.union(terms), state,
                DeltaPlanner.prefixed("d.", values),
                counts.stream().map(c -> "coalesce(o." + c + ", 0) AS o" + c.substring(1)).collect(Collectors.joining(", ")),
                counts.stream().map(c -> "coalesce(o." + c + ", 0) + d." + c + " AS " + c).collect(Collectors.joining(", ")),
                RunningTotals.stateWrites(state, stateColumns, counts.stream().map(c -> "s." + c + " = 0").collect(Collectors.joining(" AND "))),
                IntStream.range(0, m).mapToObj(k -> "s.k" + k + " AS " + to.columns().get(k)).collect(Collectors.joining(", ")),
                multiplicityNew, multiplicityOld,
                DeltaPlanner.applyRows(to.name(), to.columns(), true, to.rowKey()));
        DeltaPlanner.Plan plan = new DeltaPlanner.Plan(DeltaPlanner.Strategy.RUNNING_TOTALS, delta,
                to.rowKey().isEmpty() ? to.columns() : to.rowKey(), ddl, stateSql);
        return to.rowKey().isEmpty() ? plan : plan.keyed();
    }

    /**
     * A row's copies in the result of {@code s}, as SQL over its copies in each plain SELECT
     * ({@code count}, numbered in the order {@link #branches} lists them, {@code next} the next
     * number). PostgreSQL prints nested operations in parentheses; INTERSECT binds tighter than
     * UNION and EXCEPT where a list has both.
     */
    private static String multiplicity(Select s, int[] next, java.util.function.IntFunction<String> count) throws PlanRefusedException {
        while (s instanceof ParenthesedSelect p) {
            s = p.getSelect();
        }
        if (s instanceof PlainSelect) {
            return count.apply(next[0]++);
        }
        SetOperationList list = (SetOperationList) s;
        List<String> operands = new ArrayList<>(List.of(multiplicity(list.getSelects().get(0), next, count)));
        List<SetOperation> operations = new ArrayList<>();
        for (int i = 1; i < list.getSelects().size(); i++) {
            SetOperation op = list.getOperations().get(i - 1);
            String right = multiplicity(list.getSelects().get(i), next, count);
            if (op instanceof IntersectOp) {
                operands.set(operands.size() - 1, combined(op, operands.get(operands.size() - 1), right));
            } else {
                operations.add(op);
                operands.add(right);
            }
        }
        String result = operands.get(0);
        for (int i = 0; i < operations.size(); i++) {
            result = combined(operations.get(i), result, operands.get(i + 1));
        }
        return result;
    }

    private static String combined(SetOperation op, String a, String b) throws PlanRefusedException {
        if (op instanceof UnionOp u) {
            return u.isAll() ? "(" + a + " + " + b + ")" : "(CASE WHEN " + a + " + " + b + " > 0 THEN 1 ELSE 0 END)";
        }
        if (op instanceof IntersectOp i) {
            return i.isAll() ? "least(" + a + ", " + b + ")" : "(CASE WHEN " + a + " > 0 AND " + b + " > 0 THEN 1 ELSE 0 END)";
        }
        if (op instanceof ExceptOp e) {
            return e.isAll() ? "greatest(" + a + " - " + b + ", 0)" : "(CASE WHEN " + a + " > 0 AND " + b + " = 0 THEN 1 ELSE 0 END)";
        }
        throw new PlanRefusedException("the set operation " + op + " is not UNION, INTERSECT or EXCEPT");
    }

    /** The branches as one UNION ALL, each row its values cast to the result's types: the rows the terms read. */
    String keysQuery() throws PlanRefusedException {
        List<String> out = new ArrayList<>();
        for (PlainSelect b : branches((SetOperationList) parse(query))) {
            List<SelectItem<?>> items = new ArrayList<>();
            for (Expression e : casts(b)) {
                items.add(SelectItem.from(e));
            }
            b.setSelectItems(items);
            b.setOrderByElements(null);
            out.add(b.toString());
        }
        return String.join(" UNION ALL ", out);
    }

    /** The query with every branch restricted to the rows whose hash is in CTE {@code keys} (column h). */
    String restricted(String keys) throws PlanRefusedException {
        SetOperationList union = (SetOperationList) parse(query);
        union.setOrderByElements(null);
        for (PlainSelect b : branches(union)) {
            String only = "hash_record_extended(ROW(" + casts(b).stream().map(Object::toString).collect(Collectors.joining(", "))
                    + "), 0) IN (SELECT " + keys + ".h FROM " + keys + ")";
            b.setWhere(DeltaPlanner.parseExpression(b.getWhere() == null ? only : "(" + b.getWhere() + ") AND " + only));
        }
        return union.toString();
    }

    private List<Expression> casts(PlainSelect b) throws PlanRefusedException {
        List<Expression> casts = new ArrayList<>();
        for (int i : IntStream.range(0, types.size()).toArray()) {
            casts.add(DeltaPlanner.parseExpression("CAST((" + b.getSelectItems().get(i).getExpression() + ") AS " + types.get(i) + ")"));
        }
        return casts;
    }

    /** Whether every operation, nested ones included, is UNION ALL: (A INTERSECT B) UNION ALL C is not. */
    private static boolean onlyUnionAll(SetOperationList union) {
        if (!union.getOperations().stream().allMatch(op -> op instanceof UnionOp u && u.isAll())) {
            return false;
        }
        for (Select s : union.getSelects()) {
            Select inner = s;
            while (inner instanceof ParenthesedSelect p) {
                inner = p.getSelect();
            }
            if (inner instanceof SetOperationList nested && !onlyUnionAll(nested)) {
                return false;
            }
        }
        return true;
    }

    /** The plain SELECTs of a set operation, nested ones included, in order. */
    private static List<PlainSelect> branches(SetOperationList union) throws PlanRefusedException {
        List<PlainSelect> out = new ArrayList<>();
        for (Select s : union.getSelects()) {
            Select inner = s;
            while (inner instanceof ParenthesedSelect p) {
                if (p.getOrderByElements() != null || p.getLimit() != null || p.getOffset() != null) {
                    throw new PlanRefusedException("a branch of UNION, INTERSECT or EXCEPT aggregates, uses DISTINCT or LIMIT");
                }
                inner = p.getSelect();
            }
            if (inner instanceof SetOperationList nested) {
                if (nested.getLimit() != null || nested.getOffset() != null || nested.getFetch() != null) {
                    throw new PlanRefusedException("a branch of UNION, INTERSECT or EXCEPT aggregates, uses DISTINCT or LIMIT");
                }
                out.addAll(branches(nested));
            } else if (inner instanceof PlainSelect ps) {
                out.add(ps);
            } else {
                throw new PlanRefusedException("a branch of the set operation is not a plain SELECT");
            }
        }
        return out;
    }

    private static Select parse(String query) {
        return DeltaPlanner.select(query);
    }
}
