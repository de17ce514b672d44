package io.pgtrickle.refresh.plan;

import io.pgtrickle.refresh.plan.DeltaPlanner.Branch;
import io.pgtrickle.refresh.plan.DeltaPlanner.Deltas;
import io.pgtrickle.refresh.plan.DeltaPlanner.Parsed;
import io.pgtrickle.refresh.plan.DeltaPlanner.Plan;
import io.pgtrickle.refresh.plan.DeltaPlanner.Strategy;
import io.pgtrickle.refresh.plan.DeltaPlanner.Target;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import net.sf.jsqlparser.expression.Expression;
import net.sf.jsqlparser.expression.Function;
import net.sf.jsqlparser.statement.select.SelectItem;

/**
 * GROUP BY queries whose aggregates are all {@code count(*)}, {@code count(x)} and exact
 * {@code sum(x)} (of integers, or of a numeric column with a declared scale), without HAVING: each
 * group's totals are kept in a
 * state table and adjusted by the changes' contributions, so a refresh reads only the changes and
 * the rows they join with, never a whole group. (GROUPS recomputes every touched group from the
 * sources: with a handful of groups, every change touches all of them.) Float sums are left to
 * GROUPS: adjusting them drifts from what a recomputation returns; so are numeric sums of mixed
 * scales, whose running total would keep the largest scale ever added.
 *
 * <p>State: {@code h} (the group key's hash), {@code n} (rows in the group), and per aggregate the
 * count of non-null inputs and, for sums, their sum. A FULL refresh refills it from scratch in its
 * own statement, so it always matches the stored rows' frontier.
 */
final class RunningTotals {

    private static final Set<String> EXACT = Set.of("bigint", "integer", "smallint");

    /** One result column: a group key, or an aggregate with its state columns. */
    private record Item(String kind, String argument, String type, int key) {
    }

    private RunningTotals() {
    }

    private static final java.util.regex.Pattern FIXED_SCALE = java.util.regex.Pattern.compile(
            "smallint|integer|bigint|numeric\\(\\d+,\\d+\\)");

    /**
     * Whether every value a numeric sum adds has one scale, so the running total prints as a
     * recomputed sum would. A numeric sum's scale is the largest of its inputs': with mixed scales,
     * adding 1.000 and taking it away again leaves 3.500 where a recomputation gives 3.50. Only a
     * plain column of an integer type or of numeric with a declared scale qualifies.
     */
    private static boolean fixedScale(Expression argument, Branch shape) {
        if (!(argument instanceof net.sf.jsqlparser.schema.Column column)) {
            return false;
        }
        String table = column.getTable() == null ? null : column.getTable().getName();
        DeltaPlanner.Occurrence from = null;
        for (DeltaPlanner.Occurrence o : shape.occurrences) {
            if (table == null ? shape.occurrences.size() == 1 : o.alias.equals(table)) {
                from = o;
            }
        }
        if (from == null) {
            return false;
        }
        int at = from.source.columns().indexOf(column.getColumnName());
        return at >= 0 && FIXED_SCALE.matcher(from.source.types().get(at)).matches();
    }

    /** The plan, or null when the query is not of this form (GROUPS then handles it). */
    static Plan plan(String query, Target to, Source.Lookup sources, boolean consolidate, Branch shape)
            throws PlanRefusedException {
        if (shape.select.getGroupBy() == null || shape.select.getHaving() != null || shape.select.getDistinct() != null
                || to.stateTable() == null) {
            return null;
        }
        List<Expression> keys = shape.groupKeys();
        List<String> keyTexts = keys.stream().map(Object::toString).toList();
        List<Item> items = new ArrayList<>();
        List<String> keyColumns = new ArrayList<>();
        for (int i = 0; i < shape.select.getSelectItems().size(); i++) {
            Expression e = shape.select.getSelectItems().get(i).getExpression();
            String type = to.types().get(i);
            int key = keyTexts.indexOf(e.toString());
            if (key >= 0) {
                items.add(new Item("key", null, type, key));
                continue;
            }
            if (!(e instanceof Function f) || f.isDistinct() || f.getOrderByElements() != null || f.getKeep() != null
                    || f.getMultipartName() == null || f.getMultipartName().size() != 1) {
                return null;
            }
            String name = f.getMultipartName().get(0).toLowerCase(Locale.ROOT);
            boolean star = f.isAllColumns() || f.getParameters() != null && f.getParameters().size() == 1
                    && f.getParameters().get(0) instanceof net.sf.jsqlparser.statement.select.AllColumns;
            if (name.equals("count") && star) {
                items.add(new Item("count*", null, type, -1));
            } else if (f.getParameters() == null || f.getParameters().size() != 1) {
                return null;
            } else if (name.equals("count")) {
                items.add(new Item("count", f.getParameters().get(0).toString(), type, -1));
            } else if (name.equals("sum") && (EXACT.contains(type) || type.startsWith("numeric") && fixedScale(f.getParameters().get(0), shape))) {
                items.add(new Item("sum", f.getParameters().get(0).toString(), type, -1));
            } else {
                return null;
            }
        }
        for (int k = 0; k < keys.size(); k++) {
            int at = -1;
            for (int i = 0; i < items.size() && at < 0; i++) {
                if (items.get(i).key == k) {
                    at = i;
                }
            }
            if (at < 0) {
                return null;
            }
            keyColumns.add(to.columns().get(at));
        }

        String keyHash = "hash_record_extended(ROW(" + String.join(", ", keyTexts) + "), 0)";

        // the changes' contributions per group, from the telescoping terms
        Deltas deltas = new Deltas(new Parsed(List.of(shape)), consolidate);
        List<String> stateColumns = new ArrayList<>();
        List<String> stateTypes = new ArrayList<>();
        List<String> refill = new ArrayList<>(List.of(keyHash, "count(*)"));
        for (int i = 0; i < items.size(); i++) {
            Item it = items.get(i);
            if (it.kind.equals("sum")) {
                stateColumns.add("s" + i);
                stateTypes.add(it.type);
                refill.add("sum(" + it.argument + ")");
            }
            if (it.kind.equals("sum") || it.kind.equals("count")) {
                stateColumns.add("c" + i);
                stateTypes.add("bigint");
                refill.add("count(" + it.argument + ")");
            }
        }
        List<String> termColumns = new ArrayList<>(List.of("h"));
        IntStream.range(0, keys.size()).forEach(k -> termColumns.add("k" + k));
        termColumns.add("w");
        termColumns.addAll(stateColumns);
        List<String> terms = new ArrayList<>();
        for (int k = 0; k < shape.occurrences.size(); k++) {
            Branch b = DeltaPlanner.parse(query, sources).branches().get(0);
            String weight = "(" + DeltaPlanner.weight(b, k) + ")";
            List<String> contributions = new ArrayList<>();
            contributions.add(keyHash);
            contributions.addAll(keyTexts);
            contributions.add(weight);
            for (Item it : items) {
                if (it.kind.equals("sum")) {
                    contributions.add("(" + it.argument + ") * " + weight);
                }
                if (it.kind.equals("sum") || it.kind.equals("count")) {
                    contributions.add("CASE WHEN (" + it.argument + ") IS NOT NULL THEN " + weight + " ELSE 0 END");
                }
            }
            List<SelectItem<?>> select = new ArrayList<>();
            for (String c : contributions) {
                select.add(SelectItem.from(DeltaPlanner.parseExpression(c)));
            }
            b.select.setSelectItems(select);
            b.select.setGroupByElement(null);
            terms.add("SELECT * FROM (" + b.term(k, deltas) + ") __pgt_t(" + String.join(", ", termColumns) + ") WHERE "
                    + deltas.pending(b.occurrences.get(k).source));
        }

        // the state query that a FULL refresh refills the state table with
        Branch r = DeltaPlanner.parse(query, sources).branches().get(0);
        List<SelectItem<?>> refillItems = new ArrayList<>();
        for (String c : refill) {
            refillItems.add(SelectItem.from(DeltaPlanner.parseExpression(c)));
        }
        r.select.setSelectItems(refillItems);
        String stateSql = r.select.toString();

        String state = to.stateTable();
        List<String> all = new ArrayList<>(List.of("h", "n"));
        all.addAll(stateColumns);
        StringBuilder ddl = new StringBuilder("CREATE TABLE " + state + " (h bigint PRIMARY KEY, n bigint NOT NULL");
        for (int i = 0; i < stateColumns.size(); i++) {
            ddl.append(", ").append(stateColumns.get(i)).append(' ').append(stateTypes.get(i));
        }
        ddl.append(')');

        StringBuilder dg = new StringBuilder("SELECT t.h");
        IntStream.range(0, keys.size()).forEach(k -> dg.append(", (array_agg(t.k").append(k).append("))[1] AS k").append(k));
        dg.append(", sum(t.w) AS n");
        stateColumns.forEach(c -> dg.append(", sum(t.").append(c).append(") AS ").append(c));
        dg.append(" FROM (").append(String.join("\n UNION ALL ", terms)).append(") t GROUP BY t.h");

        StringBuilder next = new StringBuilder("SELECT d.h");
        IntStream.range(0, keys.size()).forEach(k -> next.append(", d.k").append(k));
        next.append(", coalesce(o.n, 0) + d.n AS n");
        for (int i = 0; i < stateColumns.size(); i++) {
            String c = stateColumns.get(i);
            if (c.startsWith("s")) {
                String count = "c" + c.substring(1);
                next.append(", CASE WHEN coalesce(o.").append(count).append(", 0) + coalesce(d.").append(count).append(", 0) > 0 THEN (coalesce(o.")
                        .append(c).append(", 0) + coalesce(d.").append(c).append(", 0))::").append(stateTypes.get(i)).append(" END AS ").append(c);
            } else {
                next.append(", coalesce(o.").append(c).append(", 0) + coalesce(d.").append(c).append(", 0) AS ").append(c);
            }
        }
        next.append(", o.h IS NOT NULL AS __pgt_existed FROM __pgt_dg d LEFT JOIN __pgt_state_old o ON o.h = d.h");

        List<String> visible = new ArrayList<>();
        for (int i = 0; i < items.size(); i++) {
            Item it = items.get(i);
            visible.add(switch (it.kind) {
                case "key" -> "s.k" + it.key;
                case "count*" -> "s.n";
                case "count" -> "s.c" + i;
                default -> "s.s" + i;
            });
        }
        String cols = String.join(", ", to.columns());
        String sets = all.subList(1, all.size()).stream().map(c -> c + " = s." + c).collect(Collectors.joining(", "));
        String delta = """
                WITH %1$s,
                __pgt_trunc AS MATERIALIZED (SELECT %2$s AS t),
                __pgt_dg AS MATERIALIZED (%3$s),
                __pgt_state_old AS MATERIALIZED (SELECT a.* FROM %4$s a WHERE a.h IN (SELECT __pgt_dg.h FROM __pgt_dg)),
                __pgt_state_new AS MATERIALIZED (%5$s),
                __pgt_state_del AS (
                    DELETE FROM %4$s a USING __pgt_state_new s WHERE a.h = s.h AND s.n = 0 AND NOT (SELECT t FROM __pgt_trunc)),
                __pgt_state_upd AS (
                    UPDATE %4$s a SET %6$s FROM __pgt_state_new s WHERE a.h = s.h AND s.n <> 0 AND NOT (SELECT t FROM __pgt_trunc)),
                __pgt_state_ins AS (
                    INSERT INTO %4$s (%7$s) SELECT %8$s FROM __pgt_state_new s
                     WHERE s.n <> 0 AND NOT s.__pgt_existed AND NOT (SELECT t FROM __pgt_trunc)),
                __pgt_new AS MATERIALIZED (
                    SELECT ROW(q.*)::text AS __pgt_key, q.*
                      FROM (SELECT %9$s FROM __pgt_state_new s WHERE s.n > 0) q(%10$s)),
                %11$s""".formatted(deltas.definitions(), DeltaPlanner.truncated(new Parsed(List.of(shape))), dg, state, next, sets,
                String.join(", ", all), DeltaPlanner.prefixed("s.", all), String.join(", ", visible), cols,
                DeltaPlanner.replaceGroups(to.name(), to.columns(), keyColumns, "__pgt_dg"));
        return new Plan(Strategy.RUNNING_TOTALS, delta, keyColumns, ddl.toString(), stateSql);
    }
}
