package io.pgtrickle.refresh.plan;

import io.pgtrickle.refresh.plan.DeltaPlanner.Branch;
import io.pgtrickle.refresh.plan.DeltaPlanner.Deltas;
import io.pgtrickle.refresh.plan.DeltaPlanner.Parsed;
import io.pgtrickle.refresh.plan.DeltaPlanner.Plan;
import io.pgtrickle.refresh.plan.DeltaPlanner.Strategy;
import io.pgtrickle.refresh.plan.DeltaPlanner.Target;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import net.sf.jsqlparser.expression.AnalyticExpression;
import net.sf.jsqlparser.expression.Expression;
import net.sf.jsqlparser.expression.ExpressionVisitorAdapter;
import net.sf.jsqlparser.expression.Function;
import net.sf.jsqlparser.expression.operators.relational.ExistsExpression;
import net.sf.jsqlparser.schema.Column;
import net.sf.jsqlparser.statement.select.SelectItem;

/**
 * Aggregating queries whose aggregates are all {@code count(*)}, {@code count(x)}, and {@code sum(x)}
 * and {@code avg(x)} of exact numbers (integer expressions, or numeric expressions whose scales
 * {@link ExactNumbers} can tell): each group's totals are kept in a state table and adjusted by the
 * changes' contributions, so a refresh reads only the changes and the rows they join with, never a
 * whole group. GROUPS instead recomputes every touched group from the sources, and with a handful of
 * groups every change touches all of them. Also without GROUP BY (one group, always one result
 * row), with result columns computed from aggregates ({@code 100.00 * sum(a) / sum(b)}), and with
 * HAVING, which is applied to the new totals of the touched groups: a group that crosses the
 * threshold appears or disappears.
 *
 * <p>Results print as a recomputation prints them. A numeric sum's scale is the largest of the
 * scales of the values in it, so a running total that once held 1.000 would keep three digits after
 * that value is gone. Each sum therefore also counts its inputs per possible scale, and the total is
 * shown rounded to the largest scale still present: exact, as every value in it has at most that
 * many digits. {@code avg} is that sum divided by the count, as PostgreSQL computes it
 * ({@code numeric_div}). Float sums are left to GROUPS: adjusting them drifts from what a
 * recomputation returns.
 *
 * <p>State: {@code h} (the group key's hash), {@code n} (rows in the group), and per aggregate the
 * count of non-null inputs, for sums and averages their sum, and the per-scale counts. A FULL
 * refresh refills it from scratch in its own statement, so it always matches the stored rows'
 * frontier.
 */
final class RunningTotals {

    /** One aggregate call, by its text: the columns that keep it and how the result is read off them. */
    private static final class Aggregate {
        final String kind;           // count*, count, sum, avg
        final String argument;       // null for count(*)
        final ExactNumbers.Kind type; // null for counts
        final int id;

        Aggregate(String kind, String argument, ExactNumbers.Kind type, int id) {
            this.kind = kind;
            this.argument = argument;
            this.type = type;
            this.id = id;
        }

        boolean sums() {
            return kind.equals("sum") || kind.equals("avg");
        }

        /** The scales that get a count of their own: all but the smallest, which is what remains. */
        List<Integer> countedScales() {
            if (!sums() || !type.numeric() || type.scales().size() < 2) {
                return List.of();
            }
            return new ArrayList<>(type.scales()).subList(1, type.scales().size());
        }

        /** The scale a recomputed numeric sum has: the largest of its inputs' still present. */
        String scale() {
            List<Integer> counted = countedScales();
            if (counted.isEmpty()) {
                return String.valueOf(type.scales().first());
            }
            StringBuilder scale = new StringBuilder("CASE");
            for (int i = counted.size() - 1; i >= 0; i--) {
                scale.append(" WHEN s.x").append(id).append('_').append(counted.get(i)).append(" > 0 THEN ").append(counted.get(i));
            }
            return scale.append(" ELSE ").append(type.scales().first()).append(" END").toString();
        }

        /** The sum as a recomputation prints it, from the state row {@code s}. */
        String shownSum() {
            return type.numeric() ? "round(s.s" + id + ", " + scale() + ")" : "s.s" + id;
        }

        /** The call that replaces the aggregate in a result expression. */
        Function replacement() throws PlanRefusedException {
            Function f = new Function();
            switch (kind) {
                case "count*" -> {
                    f.setName("coalesce");
                    f.setParameters(DeltaPlanner.parseExpression("s.n"));
                }
                case "count" -> {
                    f.setName("coalesce");
                    f.setParameters(DeltaPlanner.parseExpression("s.c" + id));
                }
                case "sum" -> {
                    // sum(smallint|integer) is a bigint, sum(bigint) and sum(numeric) are numeric
                    if (type.equals(ExactNumbers.Kind.INT4)) {
                        f.setName("int8");
                        f.setParameters(DeltaPlanner.parseExpression("s.s" + id));
                    } else if (type.equals(ExactNumbers.Kind.INT8)) {
                        f.setName("round");
                        f.setParameters(DeltaPlanner.parseExpression("s.s" + id), DeltaPlanner.parseExpression("0"));
                    } else {
                        f.setName("round");
                        f.setParameters(DeltaPlanner.parseExpression("s.s" + id), DeltaPlanner.parseExpression(scale()));
                    }
                }
                default -> {
                    f.setName("numeric_div");
                    f.setParameters(DeltaPlanner.parseExpression("(" + shownSum() + ")::numeric"),
                            DeltaPlanner.parseExpression("s.c" + id + "::numeric"));
                }
            }
            return f;
        }
    }

    private RunningTotals() {
    }

    /**
     * Finds the aggregates of one result expression (or of HAVING) and swaps them, in the tree, for
     * reads of the state: the expression's text is then its value computed from the totals. Fails
     * (null from {@link #plan}) on any other aggregate, a window, a subquery, or a column outside an
     * aggregate (a group key inside a larger expression is not rewritten to its state column).
     */
    private static final class Rewriter extends ExpressionVisitorAdapter<Void> {
        private final Map<String, Aggregate> aggregates;
        private final Branch shape;
        private final List<Function> calls = new ArrayList<>();
        boolean unsupported;

        Rewriter(Map<String, Aggregate> aggregates, Branch shape) {
            this.aggregates = aggregates;
            this.shape = shape;
        }

        @Override
        public <S> Void visit(Function f, S context) {
            List<String> name = f.getMultipartName();
            String lower = name != null && name.size() == 1 ? name.get(0).toLowerCase(Locale.ROOT) : null;
            boolean aggregate = lower != null && DeltaPlanner.isAggregate(lower);
            if (!aggregate) {
                return super.visit(f, context);
            }
            if (f.isDistinct() || f.getOrderByElements() != null || f.getKeep() != null || f.getHavingClause() != null
                    || f.getNullHandling() != null || f.getLimit() != null) {
                unsupported = true;
                return null;
            }
            boolean star = f.isAllColumns() || f.getParameters() != null && f.getParameters().size() == 1
                    && f.getParameters().get(0) instanceof net.sf.jsqlparser.statement.select.AllColumns;
            String kind;
            Expression argument = null;
            if (lower.equals("count") && star) {
                kind = "count*";
            } else if (f.getParameters() == null || f.getParameters().size() != 1
                    || !(lower.equals("count") || lower.equals("sum") || lower.equals("avg"))) {
                unsupported = true;
                return null;
            } else {
                kind = lower;
                argument = f.getParameters().get(0);
            }
            ExactNumbers.Kind type = null;
            if (kind.equals("sum") || kind.equals("avg")) {
                type = ExactNumbers.kind(argument, shape);
                if (type == null) {
                    unsupported = true;
                    return null;
                }
            }
            String key = kind + "(" + (argument == null ? "*" : argument.toString()) + ")";
            Aggregate found = aggregates.get(key);
            if (found == null) {
                found = new Aggregate(kind, argument == null ? null : argument.toString(), type, slot(argument));
                aggregates.put(key, found);
            }
            calls.add(f);
            replacements.add(found);
            return null;
        }

        private final List<Aggregate> replacements = new ArrayList<>();

        /**
         * The state columns' number for an argument: one per argument text, so that sum(x), avg(x)
         * and count(x) keep one sum and one count (TPC-H Q1 sums and averages the same two columns).
         */
        private int slot(Expression argument) {
            if (argument == null) {
                return -1;
            }
            String text = argument.toString();
            return aggregates.values().stream().filter(a -> text.equals(a.argument)).mapToInt(a -> a.id).findFirst()
                    .orElse((int) aggregates.values().stream().filter(a -> a.argument != null).map(a -> a.argument).distinct().count());
        }

        @Override
        public <S> Void visit(AnalyticExpression expression, S context) {
            unsupported = true;
            return null;
        }

        @Override
        public <S> Void visit(Column column, S context) {
            unsupported = true;
            return null;
        }

        @Override
        public <S> Void visit(net.sf.jsqlparser.statement.select.Select select, S context) {
            // JSqlParser's adapter hands a subquery (a ParenthesedSelect) to this overload, not to visit(ParenthesedSelect)
            unsupported = true;
            return null;
        }

        @Override
        public <S> Void visit(ExistsExpression exists, S context) {
            unsupported = true;
            return null;
        }

        /** Rewrites the calls found, in place. */
        void rewrite() throws PlanRefusedException {
            for (int i = 0; i < calls.size(); i++) {
                Function call = calls.get(i);
                Function by = replacements.get(i).replacement();
                call.setName(by.getMultipartName());
                call.setParameters(by.getParameters());
                call.setAllColumns(false);
            }
        }
    }

    /**
     * Makes a term's branch yield, per row, its group's key hash and key values, its weight, and
     * what it contributes to each state column (given the weight), without grouping.
     */
    private static void contribute(Branch b, String weight, String keyHash, List<String> keyTexts,
            List<java.util.function.UnaryOperator<String>> contribution) throws PlanRefusedException {
        List<String> contributions = new ArrayList<>();
        contributions.add(keyHash);
        contributions.addAll(keyTexts);
        contributions.add(weight);
        for (java.util.function.UnaryOperator<String> c : contribution) {
            contributions.add(c.apply(weight));
        }
        List<SelectItem<?>> select = new ArrayList<>();
        for (String c : contributions) {
            select.add(SelectItem.from(DeltaPlanner.parseExpression(c)));
        }
        b.select.setSelectItems(select);
        b.select.setGroupByElement(null);
        b.select.setHaving(null);
    }

    /**
     * The CTEs that write a state table's new rows, from CTE __pgt_state_new ({@code columns}, the
     * key h first, and __pgt_existed): the rows {@code gone} says are empty deleted, the others
     * updated where they existed and inserted where not; nothing after a TRUNCATE in the window
     * (CTE __pgt_trunc).
     */
    static String stateWrites(String state, List<String> columns, String gone) {
        String sets = columns.subList(1, columns.size()).stream().map(c -> c + " = s." + c).collect(Collectors.joining(", "));
        return """
                __pgt_state_del AS (
                    DELETE FROM %1$s a USING __pgt_state_new s WHERE a.h = s.h AND %2$s AND NOT (SELECT t FROM __pgt_trunc)),
                __pgt_state_upd AS (
                    UPDATE %1$s a SET %3$s FROM __pgt_state_new s WHERE a.h = s.h AND NOT (%2$s) AND NOT (SELECT t FROM __pgt_trunc)),
                __pgt_state_ins AS (
                    INSERT INTO %1$s (%4$s) SELECT %5$s FROM __pgt_state_new s
                     WHERE NOT (%2$s) AND NOT s.__pgt_existed AND NOT (SELECT t FROM __pgt_trunc))""".formatted(state, gone, sets,
                String.join(", ", columns), DeltaPlanner.prefixed("s.", columns));
    }

    /** The plan, or null when the query is not of this form (GROUPS then handles it). */
    static Plan plan(String query, Target to, Source.Lookup sources, boolean consolidate, Branch shape,
            DeltaPlanner.Apply apply) throws PlanRefusedException {
        if (shape.select.getDistinct() != null || to.stateTable() == null || !shape.havingSublinks.isEmpty()) {
            return null;
        }
        boolean global = shape.select.getGroupBy() == null;
        List<Expression> keys = global ? List.of() : shape.groupKeys();
        List<String> keyTexts = keys.stream().map(Object::toString).toList();

        // the result columns: group keys, or expressions over aggregates (rewritten below)
        Branch out = DeltaPlanner.parse(query, sources).branches().get(0);
        Map<String, Aggregate> aggregates = new LinkedHashMap<>();
        List<String> visible = new ArrayList<>();
        List<Rewriter> rewriters = new ArrayList<>();
        int[] keyAt = new int[keys.size()];
        java.util.Arrays.fill(keyAt, -1);
        for (int i = 0; i < out.select.getSelectItems().size(); i++) {
            Expression e = out.select.getSelectItems().get(i).getExpression();
            int key = keyTexts.indexOf(e.toString());
            if (key >= 0) {
                visible.add("s.k" + key);
                keyAt[key] = i;
                rewriters.add(null);
                continue;
            }
            Rewriter r = new Rewriter(aggregates, shape);
            e.accept(r, null);
            if (r.unsupported) {
                return null;
            }
            rewriters.add(r);
            visible.add(null);
        }
        Rewriter having = null;
        if (out.select.getHaving() != null) {
            having = new Rewriter(aggregates, shape);
            out.select.getHaving().accept(having, null);
            if (having.unsupported) {
                return null;
            }
        }
        List<String> keyColumns = new ArrayList<>();
        for (int k = 0; k < keys.size(); k++) {
            if (keyAt[k] < 0) {
                return null;
            }
            keyColumns.add(to.columns().get(keyAt[k]));
        }
        for (int i = 0; i < rewriters.size(); i++) {
            if (rewriters.get(i) != null) {
                rewriters.get(i).rewrite();
                visible.set(i, out.select.getSelectItems().get(i).getExpression().toString());
            }
        }
        String havingSql = null;
        if (having != null) {
            having.rewrite();
            havingSql = out.select.getHaving().toString();
        }

        String keyHash = "hash_record_extended(ROW(" + String.join(", ", keyTexts) + "), 0)";

        // the state's columns, what a change contributes to them (per row, in the terms), how the
        // changes of a group add up to them (in __pgt_dg), and how a FULL refresh refills them
        List<String> stateColumns = new ArrayList<>();
        List<String> stateTypes = new ArrayList<>();
        List<String> refill = new ArrayList<>(List.of(keyHash, "count(*)"));
        List<String> termStateColumns = new ArrayList<>();
        List<java.util.function.UnaryOperator<String>> contribution = new ArrayList<>(); // of the term's weight
        List<String> added = new ArrayList<>(); // per state column, from the term's columns t.*
        Map<Integer, Aggregate> slots = new java.util.TreeMap<>();
        for (Aggregate a : aggregates.values()) {
            if (!a.kind.equals("count*") && (a.sums() || !slots.containsKey(a.id))) {
                slots.put(a.id, a);
            }
        }
        for (Aggregate a : slots.values()) {
            String arg = "(" + a.argument + ")";
            String s = "s" + a.id;
            if (a.sums()) {
                stateColumns.add(s);
                stateTypes.add("numeric");
                refill.add("sum(" + arg + "::numeric)");
                termStateColumns.add(s);
                // A sum of integers adds bigints (PostgreSQL accumulates them in 128 bits); a weight
                // of one or minus one negates rather than multiplies a numeric, which costs as much as
                // the addition (Q1's 2,400 changed lines: 7 multiplications each were half the delta).
                String value = a.type.numeric() || a.type.wide() ? arg + "::numeric" : arg + "::int8";
                contribution.add(w -> "CASE " + w + " WHEN 1 THEN " + value + " WHEN -1 THEN -" + value + " ELSE " + value + " * " + w + " END");
                added.add("sum(t." + s + ")");
            }
            stateColumns.add("c" + a.id);
            stateTypes.add("bigint");
            refill.add("count(" + arg + ")");
            if (a.sums()) {
                // the term's contribution to the sum is null exactly when the argument is: counted
                // from it here, as the term would compute the argument a second time
                added.add("sum(t.w) FILTER (WHERE t." + s + " IS NOT NULL)");
            } else {
                termStateColumns.add("c" + a.id);
                contribution.add(w -> "CASE WHEN " + arg + " IS NOT NULL THEN " + w + " ELSE 0 END");
                added.add("sum(t.c" + a.id + ")");
            }
            for (int scale : a.countedScales()) {
                stateColumns.add("x" + a.id + "_" + scale);
                stateTypes.add("bigint");
                refill.add("sum(CASE WHEN scale(" + arg + "::numeric) = " + scale + " THEN 1 ELSE 0 END)");
                // the weight is an integer: the contribution has the argument's scale
                added.add("sum(t.w) FILTER (WHERE scale(t." + s + ") = " + scale + ")");
            }
        }

        // the changes' contributions per group, from the telescoping terms. Of one table without
        // subqueries, unconsolidated: a row's delete and insert that cancel add up to nothing in
        // the sums anyway, and consolidating (a GROUP BY over every column the query reads, and the
        // text forms of those that print differently) was 3.7 of TPC-H Q1's 8.5 ms of execution.
        // With a join they are consolidated, or each would multiply through the other tables;
        // unless the joins find one row per change (UniqueJoins).
        Deltas deltas = new Deltas(new Parsed(List.of(shape)), consolidate, UniqueJoins.unconsolidated(shape));
        List<String> termColumns = new ArrayList<>(List.of("h"));
        IntStream.range(0, keys.size()).forEach(k -> termColumns.add("k" + k));
        termColumns.add("w");
        termColumns.addAll(termStateColumns);
        List<String> terms = new ArrayList<>();
        for (DeltaPlanner.Term t : shape.changeTerms()) {
            Branch b = DeltaPlanner.parse(query, sources).branches().get(0);
            contribute(b, "(" + b.weight(t) + ")", keyHash, keyTexts, contribution);
            terms.add(DeltaPlanner.leg(b.render(t, deltas), termColumns, b.pending(t, deltas, null)));
        }
        if (!shape.sublinks.isEmpty()) {
            // the rows whose subquery verdict changed, with the change of the verdict as their weight
            Sublinks.define(query, sources, deltas, 0);
            for (DeltaPlanner.Term t : shape.oldTerms()) {
                Branch b = DeltaPlanner.parse(query, sources).branches().get(0);
                String flip = Sublinks.flip(b, 0, deltas);
                // the factor once per row, in a LATERAL item: each contribution column uses it, and
                // PostgreSQL would evaluate its subqueries once per mention
                contribute(b, "(" + b.weight(t) + ") * " + Sublinks.lateralFactor(b, query), keyHash, keyTexts, contribution);
                terms.add(DeltaPlanner.leg(Sublinks.withLateralFactor(b.render(t, deltas), flip), termColumns,
                        b.pending(t, deltas, Sublinks.pending(b, deltas))));
            }
        }

        // the state query that a FULL refresh refills the state table with: every group, HAVING or not
        Branch r = DeltaPlanner.parse(query, sources).branches().get(0);
        List<SelectItem<?>> refillItems = new ArrayList<>();
        for (String c : refill) {
            refillItems.add(SelectItem.from(DeltaPlanner.parseExpression(c)));
        }
        r.select.setSelectItems(refillItems);
        r.select.setHaving(null);
        String stateSql = r.select.toString();

        String state = to.stateTable();
        List<String> all = new ArrayList<>(List.of("h", "n"));
        all.addAll(stateColumns);
        StringBuilder ddl = new StringBuilder("CREATE TABLE " + state + " (h bigint PRIMARY KEY, n bigint NOT NULL");
        for (int i = 0; i < stateColumns.size(); i++) {
            ddl.append(", ").append(stateColumns.get(i)).append(' ').append(stateTypes.get(i));
        }
        ddl.append(')');

        // grouped by the keys too, which equal values of h have: any of a group's key values is
        // its key, and collecting them all to pick one (array_agg) cost more than the sums
        StringBuilder dg = new StringBuilder("SELECT t.h");
        IntStream.range(0, keys.size()).forEach(k -> dg.append(", t.k").append(k));
        dg.append(", sum(t.w) AS n");
        IntStream.range(0, stateColumns.size()).forEach(i -> dg.append(", ").append(added.get(i)).append(" AS ").append(stateColumns.get(i)));
        dg.append(" FROM (").append(Legs.union(terms)).append(") t GROUP BY t.h");
        IntStream.range(0, keys.size()).forEach(k -> dg.append(", t.k").append(k));

        StringBuilder next = new StringBuilder("SELECT d.h");
        IntStream.range(0, keys.size()).forEach(k -> next.append(", d.k").append(k));
        next.append(", coalesce(o.n, 0) + d.n AS n");
        for (String c : stateColumns) {
            if (c.startsWith("s")) {
                // no non-null input left: NULL, as sum() of none is
                String count = "c" + c.substring(1);
                next.append(", CASE WHEN coalesce(o.").append(count).append(", 0) + coalesce(d.").append(count).append(", 0) > 0 THEN coalesce(o.")
                        .append(c).append(", 0) + coalesce(d.").append(c).append(", 0) END AS ").append(c);
            } else {
                next.append(", coalesce(o.").append(c).append(", 0) + coalesce(d.").append(c).append(", 0) AS ").append(c);
            }
        }
        next.append(", o.h IS NOT NULL AS __pgt_existed FROM __pgt_dg d LEFT JOIN __pgt_state_old o ON o.h = d.h");

        // a group with no rows has no result row, except the one group of an aggregate without GROUP BY
        String shown = (global ? "true" : "s.n > 0") + (havingSql == null ? "" : " AND (" + havingSql + ")");
        String cols = String.join(", ", to.columns());
        String delta = """
                WITH %1$s,
                __pgt_trunc AS MATERIALIZED (SELECT %2$s AS t),
                __pgt_dg AS MATERIALIZED (%3$s),
                __pgt_state_old AS MATERIALIZED (SELECT a.* FROM %4$s a WHERE a.h IN (SELECT __pgt_dg.h FROM __pgt_dg)),
                __pgt_state_new AS MATERIALIZED (%5$s),
                %6$s,
                __pgt_new AS MATERIALIZED (
                    SELECT ROW(q.*)::text AS __pgt_key, q.*
                      FROM (SELECT %7$s FROM __pgt_state_new s WHERE %10$s) q(%8$s)),
                %9$s""".formatted(deltas.definitions(), DeltaPlanner.truncated(new Parsed(List.of(shape))), dg, state, next,
                stateWrites(state, all, "s.n = 0"), String.join(", ", visible), cols,
                apply.groups(to.name(), to.columns(), keyColumns, "__pgt_dg"), shown);
        return new Plan(Strategy.RUNNING_TOTALS, delta, keyColumns, ddl.toString(), stateSql);
    }
}
