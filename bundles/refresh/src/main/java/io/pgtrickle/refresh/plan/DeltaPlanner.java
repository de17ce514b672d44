package io.pgtrickle.refresh.plan;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import net.sf.jsqlparser.JSQLParserException;
import net.sf.jsqlparser.expression.Alias;
import net.sf.jsqlparser.expression.AnalyticExpression;
import net.sf.jsqlparser.expression.Expression;
import net.sf.jsqlparser.expression.ExpressionVisitorAdapter;
import net.sf.jsqlparser.expression.Function;
import net.sf.jsqlparser.expression.operators.relational.ExistsExpression;
import net.sf.jsqlparser.expression.operators.relational.ExpressionList;
import net.sf.jsqlparser.parser.CCJSqlParserUtil;
import net.sf.jsqlparser.schema.Table;
import net.sf.jsqlparser.statement.Statement;
import net.sf.jsqlparser.statement.select.FromItem;
import net.sf.jsqlparser.statement.select.Join;
import net.sf.jsqlparser.statement.select.ParenthesedFromItem;
import net.sf.jsqlparser.statement.select.ParenthesedSelect;
import net.sf.jsqlparser.statement.select.PlainSelect;
import net.sf.jsqlparser.statement.select.Select;
import net.sf.jsqlparser.statement.select.SelectItem;
import net.sf.jsqlparser.statement.select.SetOperation;
import net.sf.jsqlparser.statement.select.SetOperationList;
import net.sf.jsqlparser.statement.select.UnionOp;

/**
 * Derives the differential refresh statement of a stream table from its defining query, as
 * PostgreSQL normalised it ({@code pg_get_viewdef} with every name schema-qualified).
 *
 * <p>Changes of a source are the rows of its change buffer written by transactions visible in the
 * refresh's snapshot but not in the frontier ({@code $1}), each weighted +1 (inserted) or -1
 * (deleted). Two strategies:
 * <ul>
 * <li><b>ROWS</b> (projection, filter, inner joins, UNION ALL): the change of the query is
 * computed by the telescoping sum over the table occurrences of a branch: term k joins the
 * changes of occurrence k with the new state of occurrences before it and the old state (table
 * minus its changes) of those after it; weights multiply. The sum, consolidated per row value, is
 * applied as "delete |w| copies" and "insert w copies", stored rows being found by a hash of their
 * values.</li>
 * <li><b>GROUPS</b> (GROUP BY, DISTINCT): the group keys the changes touch are computed the same way;
 * those groups are recomputed from the sources and replace the stored rows of the same keys
 * (only rows that differ are written), stored rows being found by a hash of their group key.
 * Any aggregate and HAVING are maintained, as the groups are recomputed, not adjusted.</li>
 * </ul>
 * The whole refresh is one statement, so sources, buffers and the new frontier share one snapshot.
 * It returns (deleted, inserted, snapshot, truncated, missing): a TRUNCATE of a source in the
 * window writes nothing and sets {@code truncated} (the caller then runs FULL); {@code missing}
 * counts stored rows the delta meant to delete but did not find.
 */
public final class DeltaPlanner {

    /** How stored rows are located and replaced. */
    public enum Strategy { ROWS, GROUPS, RUNNING_TOTALS }

    /**
     * A plan: the statement and the stream-table columns whose hash locates stored rows (the index
     * the caller must create); for RUNNING_TOTALS also the state table's DDL and the query that fills
     * it from scratch (a FULL refresh runs it), else null.
     */
    public record Plan(Strategy strategy, String deltaSql, List<String> keyColumns, String stateDdl, String stateSql,
            Map<String, List<String>> columnsRead, boolean rowKeyed) {
        Plan(Strategy strategy, String deltaSql, List<String> keyColumns, String stateDdl, String stateSql) {
            this(strategy, deltaSql, keyColumns, stateDdl, stateSql, Map.of(), false);
        }

        /**
         * The same plan, its stored rows found by the stream table's unique index over
         * {@code keyColumns} ({@link Target#rowKey()}), not by an engine row index.
         */
        Plan keyed() {
            return new Plan(strategy, deltaSql, keyColumns, stateDdl, stateSql, columnsRead, true);
        }

        Plan(Strategy strategy, String deltaSql, List<String> keyColumns) {
            this(strategy, deltaSql, keyColumns, null, null);
        }

        /** The same plan, saying which columns of each source (by {@link Source#name()}) its statement reads. */
        Plan reading(Map<String, Source> sources) {
            Map<String, List<String>> read = new LinkedHashMap<>();
            sources.values().forEach(s -> read.put(s.name(), s.columns()));
            return new Plan(strategy, deltaSql, keyColumns, stateDdl, stateSql, java.util.Collections.unmodifiableMap(read), rowKeyed);
        }
    }

    /**
     * The stream table a plan is for.
     *
     * @param name       schema-qualified and quoted
     * @param columns    its columns, quoted, in order (the query's output columns)
     * @param types      their types as {@code format_type} prints them
     * @param stateTable where running totals go, should the query get them (schema-qualified, quoted)
     * @param identical  per column, whether equal values always print the same (see {@link Source#identical()})
     * @param rowKey     columns (quoted) of a unique index of the stream table that finds a stored row
     *                   by equality (every one NOT NULL), or empty: then a row index of the engine's
     *                   own, over a hash of all columns, does
     */
    public record Target(String name, List<String> columns, List<String> types, String stateTable, List<Boolean> identical,
            List<String> rowKey) {
        public Target {
            columns = List.copyOf(columns);
            types = List.copyOf(types);
            identical = List.copyOf(identical);
            rowKey = List.copyOf(rowKey);
        }

        public Target(String name, List<String> columns, List<String> types, String stateTable, List<Boolean> identical) {
            this(name, columns, types, stateTable, identical, List.of());
        }
    }

    /** Aggregates the classifier might let through; used to refuse aggregation without GROUP BY. */
    private static final Set<String> AGGREGATES = Set.of("count", "sum", "avg", "min", "max", "string_agg", "array_agg",
            "bool_and", "bool_or", "every", "bit_and", "bit_or", "bit_xor", "json_agg", "jsonb_agg", "json_object_agg",
            "jsonb_object_agg", "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp", "corr",
            "covar_pop", "covar_samp", "xmlagg", "range_agg", "range_intersect_agg", "any_value", "mode",
            "percentile_cont", "percentile_disc");

    /** Whether an expression calls an aggregate. */
    static boolean aggregates(Expression e) {
        Findings f = new Findings();
        f.scan(e);
        return f.aggregates;
    }

    static boolean isAggregate(String lowerCaseName) {
        return AGGREGATES.contains(lowerCaseName);
    }

    /**
     * How a statement writes its result into the stream table: its end, after the strategy's CTEs.
     * {@link #REPLACE} writes the change as it is; {@link TopK} keeps the first k rows of an
     * {@code ORDER BY ... LIMIT k} query.
     */
    interface Apply {
        /** After CTEs __pgt_delta (the result's change: its columns and a weight __pgt_w) and __pgt_trunc. */
        String rows(String target, List<String> columns, boolean identical, List<String> rowKey);

        /**
         * After CTEs __pgt_new (the new rows of the touched groups, __pgt_key their text) and
         * __pgt_trunc; {@code touched} is the CTE of the touched groups' key hashes (column h).
         */
        String groups(String target, List<String> columns, List<String> keyColumns, String touched);
    }

    /** Applies the change to the stored rows: the result is the whole query. */
    static final Apply REPLACE = new Apply() {
        @Override
        public String rows(String target, List<String> columns, boolean identical, List<String> rowKey) {
            return applyRows(target, columns, identical, rowKey);
        }

        @Override
        public String groups(String target, List<String> columns, List<String> keyColumns, String touched) {
            return replaceGroups(target, columns, keyColumns, touched);
        }
    };

    private static final String WINDOW = "b.xid >= pg_snapshot_xmin($1) AND NOT pg_visible_in_snapshot(b.xid, $1)";

    private DeltaPlanner() {
    }

    /**
     * @param query       the normalised defining query
     * @param to          the stream table
     * @param sources     resolves the relations the query names
     * @param consolidate net out each source's changes before joining them (needs equality on every
     *                    column of the sources; without it a plan still works, but pairs of changes that
     *                    cancel are carried through the joins)
     */
    public static Plan plan(String query, Target to, Source.Lookup sources, boolean consolidate) throws PlanRefusedException {
        Plan p = planned(query, to, sources, consolidate);
        return new Plan(p.strategy(), Legs.marked(p.deltaSql()), p.keyColumns(), Legs.marked(p.stateDdl()), Legs.marked(p.stateSql()),
                p.columnsRead(), p.rowKeyed());
    }

    private static Plan planned(String query, Target to, Source.Lookup sources, boolean consolidate) throws PlanRefusedException {
        query = QueryInliner.inline(query); // subqueries in FROM and WITH queries, where PostgreSQL would pull them up
        query = ChangeReads.existsSelectingOne(query);
        String target = to.name();
        List<String> columns = to.columns();
        // DISTINCT ON keeps its ORDER BY (it picks the rows), so it is read before TopK takes ORDER BY away
        DistinctOn distinctOn = DistinctOn.of(query);
        // ORDER BY ... LIMIT k: the strategies below maintain the query without them, TopK the first k rows
        TopK top = distinctOn == null ? TopK.of(query) : null;
        Apply apply = top == null ? REPLACE : top;
        query = top == null ? query : top.inner();
        SetOperations setOps = SetOperations.of(query, to.types());
        if (setOps != null && top != null) {
            throw new PlanRefusedException("the query uses ORDER BY ... LIMIT over UNION, INTERSECT or EXCEPT");
        }
        Windows windows = setOps == null && distinctOn == null ? Windows.of(query) : null;
        if (windows != null && top != null) {
            throw new PlanRefusedException("the query uses ORDER BY ... LIMIT over window functions");
        }
        // a grouped query over outer joins keeps its text (its groups are recomputed from it), the rest
        // is rewritten into matched and padded branches
        boolean scoped = setOps != null || windows != null || distinctOn != null;
        String groupKeys = scoped ? null : OuterJoins.groupKeys(query, sources);
        query = groupKeys == null && !scoped ? OuterJoins.rewrite(query, sources) : query;
        if (ChangeReads.wholeRows(query)) {
            throw new PlanRefusedException("the query reads a table's whole row (t.* or t used as a value)");
        }
        // every term re-parses the query (the tree is edited per term), so look each name up once,
        // and read each source as narrow as the query allows
        String read = query;
        Map<String, Source> found = new LinkedHashMap<>();
        Source.Lookup lookup = sources;
        sources = name -> {
            Source s = found.get(name);
            if (s == null) {
                s = ChangeReads.narrowed(lookup.find(name), read);
                found.put(name, s);
            }
            return s;
        };
        if (setOps != null) {
            Plan counted = setOps.counted(to, sources, consolidate);
            if (counted != null) {
                return counted.reading(found);
            }
            return touched(setOps.keysQuery(), setOps.restricted("__pgt_keys"), false, columns, target, columns, sources, consolidate)
                    .reading(found);
        }
        if (windows != null) {
            // the partition keys through the outer-join rewrite, if any; the partitions recomputed from the query as written
            return touched(OuterJoins.rewrite(windows.keysQuery(), sources), windows.restricted("__pgt_keys"), true,
                    windows.keyColumns(columns), target, columns, sources, consolidate).reading(found);
        }
        if (distinctOn != null) {
            // the keys through the outer-join rewrite, if any; their rows recomputed from the query as written
            return touched(OuterJoins.rewrite(distinctOn.keysQuery(), sources), distinctOn.restricted("__pgt_keys"), true,
                    distinctOn.keyColumns(columns), target, columns, sources, consolidate).reading(found);
        }
        if (groupKeys != null) {
            return groups(query, groupKeys, target, columns, sources, new Branch(OuterJoins.plainSelect(query)), consolidate, apply)
                    .reading(found);
        }
        Parsed parsed = parse(query, sources);
        for (Branch b : parsed.branches) {
            if (b.select.getSelectItems().size() != columns.size()) {
                throw new PlanRefusedException("the query has " + b.select.getSelectItems().size()
                        + " result columns but the stream table has " + columns.size());
            }
        }
        if (parsed.branches.size() == 1 && (parsed.branches.get(0).grouped() || parsed.branches.get(0).aggregates)) {
            String counted = distinctCounted(parsed.branches.get(0), to);
            if (counted != null) {
                Plan totals = RunningTotals.plan(counted, to, sources, consolidate, parse(counted, sources).branches.get(0), apply);
                if (totals != null) {
                    return totals.reading(found);
                }
            }
            Plan totals = RunningTotals.plan(query, to, sources, consolidate, parsed.branches.get(0), apply);
            if (totals != null) {
                return totals.reading(found);
            }
            if (!parsed.branches.get(0).grouped()) {
                // one group of everything: recomputing it is recomputing the query
                throw new PlanRefusedException("the query aggregates without GROUP BY, and not only with count, sum and avg"
                        + " of exact numbers (integers, numeric of a known scale), which are kept as running totals");
            }
            return groups(query, target, columns, sources, parsed.branches.get(0), consolidate, apply).reading(found);
        }
        return rows(query, target, columns, !to.identical().contains(false), apply == REPLACE ? to.rowKey() : List.of(), sources, parsed,
                consolidate, apply).reading(found);
    }

    /**
     * A {@code SELECT DISTINCT} (no aggregates, no GROUP BY) written as a GROUP BY of its select
     * list, so that running totals keep each row's count: a refresh then reads the changes and the
     * counts of the rows they touch, where recomputing those rows (GROUPS) reads the sources by
     * their values, which no index finds, so whole. Null when the query is not of that form, or a
     * column's equal values may print differently (which one DISTINCT prints is the one it meets
     * first: recomputed, it is PostgreSQL's own).
     */
    private static String distinctCounted(Branch b, Target to) {
        PlainSelect ps = b.select;
        if (ps.getDistinct() == null || ps.getDistinct().getOnSelectItems() != null || ps.getGroupBy() != null || ps.getHaving() != null
                || b.aggregates || to.stateTable() == null || to.identical().contains(false)
                || ps.getSelectItems().stream().anyMatch(i -> i.getExpression() instanceof net.sf.jsqlparser.statement.select.AllColumns)
                || !(select(ps.toString()) instanceof PlainSelect copy)) {
            return null;
        }
        copy.setDistinct(null);
        copy.setGroupByElement(new net.sf.jsqlparser.statement.select.GroupByElement().withGroupByExpressions(
                new ExpressionList<>(copy.getSelectItems().stream().map(i -> (Expression) i.getExpression()).toList())));
        return copy.toString();
    }

    // ---------------------------------------------------------------- ROWS

    /**
     * @param identical whether equal result rows always print the same; if not, a row's identity
     *                  includes its text form, as FULL's does: an UPDATE from 1.0 to 1.000 is a
     *                  delete and an insert, not a change that nets out
     */
    private static Plan rows(String query, String target, List<String> columns, boolean identical, List<String> rowKey,
            Source.Lookup sources, Parsed shape, boolean consolidate, Apply apply) throws PlanRefusedException {
        Deltas deltas = new Deltas(shape, consolidate);
        List<String> terms = new ArrayList<>();
        for (int bi = 0; bi < shape.branches.size(); bi++) {
            for (Term t : shape.branches.get(bi).changeTerms()) {
                Branch b = parse(query, sources).branches.get(bi);
                b.select.addSelectItems(SelectItem.from(parseExpression(b.weight(t))));
                terms.add(leg(b.render(t, deltas), withWeight(columns), b.pending(t, deltas, null)));
            }
            if (!shape.branches.get(bi).sublinks.isEmpty()) {
                Sublinks.define(query, sources, deltas, bi);
                for (Term t : shape.branches.get(bi).oldTerms()) {
                    Branch b = parse(query, sources).branches.get(bi);
                    String flip = Sublinks.flip(b, bi, deltas);
                    b.select.addSelectItems(SelectItem.from(parseExpression("(" + b.weight(t) + ") * " + Sublinks.placeholder(query))));
                    terms.add(leg(Sublinks.withFactor(b.render(t, deltas), flip), withWeight(columns),
                            b.pending(t, deltas, Sublinks.pending(b, deltas))));
                }
            }
        }
        String d = prefixed("d.", columns);
        Plan plan = new Plan(Strategy.ROWS, """
                WITH %4$s,
                __pgt_delta AS MATERIALIZED (
                    SELECT %1$s, sum(d.__pgt_w)::bigint AS __pgt_w
                      FROM (%2$s) d
                     GROUP BY %1$s%5$s
                    HAVING sum(d.__pgt_w) <> 0),
                __pgt_trunc AS MATERIALIZED (SELECT %3$s AS t),
                %6$s""".formatted(d, Legs.union(terms), truncated(shape), deltas.definitions(),
                identical ? "" : ", ROW(" + d + ")::text", apply.rows(target, columns, identical, rowKey)),
                rowKey.isEmpty() ? columns : rowKey);
        return rowKey.isEmpty() ? plan : plan.keyed();
    }

    /**
     * The end of a ROWS statement: "delete |w| copies" and "insert w copies" of each row of CTE
     * __pgt_delta, stored rows being found by a hash of their values (the engine's row index), or
     * by the columns of a unique index of the stream table ({@code rowKey}, not empty): then the
     * stream table needs no row index, and each row written updates one index less (the engine
     * benchmark's join at 0.1%: its inserts took 10-14 ms instead of 24-27). Needs CTEs __pgt_delta and
     * __pgt_trunc before it. The stored rows go by their ctids as an array (as in every statement
     * here that deletes), which PostgreSQL reads by a TID scan: joined to a CTE of them, it hashed
     * the whole stored table (15,000 rows of TPC-H Q13's counts per customer to delete 290).
     */
    static String applyRows(String target, List<String> columns, boolean identical, List<String> rowKey) {
        String d = prefixed("d.", columns);
        String s = prefixed("s.", columns);
        String same = "ROW(" + s + ") IS NOT DISTINCT FROM ROW(" + d + ")" + (identical ? "" : "\n AND ROW(" + s + ")::text = ROW(" + d + ")::text");
        // a row with a NULL in its key (a unique index allows several) is not found by equality:
        // those, rare, by the whole row, in a branch that runs only for them (a one-time filter)
        String lookup = rowKey.isEmpty()
                ? "SELECT s.ctid FROM " + target + " s\n WHERE hash_record_extended(ROW(" + s + "), 0) = hash_record_extended(ROW(" + d
                        + "), 0)\n AND " + same + "\n LIMIT -d.__pgt_w"
                : "(SELECT s.ctid FROM " + target + " s\n WHERE " + rowKey.stream().map(k -> "s." + k + " = d." + k).collect(Collectors.joining(" AND "))
                        + "\n AND " + same + "\n LIMIT -d.__pgt_w)\n UNION ALL\n (SELECT s.ctid FROM " + target + " s\n WHERE "
                        // (pgtrickle.row_key: a key of several columns is NOT NULL)
                        + (rowKey.size() == 1 ? "d." + rowKey.get(0) + " IS NULL AND s." + rowKey.get(0) + " IS NULL" : "false")
                        + "\n AND " + same + "\n LIMIT -d.__pgt_w)";
        return """
                __pgt_victims AS MATERIALIZED (
                    SELECT v.ctid AS __pgt_ctid
                      FROM __pgt_delta d CROSS JOIN LATERAL (
                          %5$s) v
                     WHERE d.__pgt_w < 0 AND NOT (SELECT t FROM __pgt_trunc)),
                __pgt_deleted AS (
                    DELETE FROM %2$s s WHERE s.ctid = ANY (ARRAY(SELECT v.__pgt_ctid FROM __pgt_victims v)) RETURNING 1),
                __pgt_inserted AS (
                    INSERT INTO %2$s (%4$s)
                    SELECT %1$s FROM __pgt_delta d CROSS JOIN LATERAL generate_series(1, d.__pgt_w)
                     WHERE d.__pgt_w > 0 AND NOT (SELECT t FROM __pgt_trunc)
                    RETURNING 1)
                -- deleted first: an old copy must be gone before a new one meets a unique index
                SELECT (SELECT count(*) FROM __pgt_deleted), (SELECT count(*) FROM __pgt_inserted),
                       pg_current_snapshot()::text, (SELECT t FROM __pgt_trunc),
                       CASE WHEN (SELECT t FROM __pgt_trunc) THEN 0
                            ELSE (SELECT coalesce(sum(-__pgt_w), 0) FROM __pgt_delta WHERE __pgt_w < 0)
                                 - (SELECT count(*) FROM __pgt_victims) END
                """.formatted(d, target, s, String.join(", ", columns),
                lookup);
    }

    // ---------------------------------------------------------------- GROUPS

    private static Plan groups(String query, String target, List<String> columns, Source.Lookup sources, Branch shape,
            boolean consolidate, Apply apply) throws PlanRefusedException {
        return groups(query, null, target, columns, sources, shape, consolidate, apply);
    }

    /**
     * @param keysQuery null, or (for a query PostgreSQL computes but the terms cannot read as it is,
     *                  such as one with outer joins) a UNION ALL of plain SELECTs whose rows are the
     *                  group keys of the query's rows, one per row, in the order of GROUP BY
     */
    private static Plan groups(String query, String keysQuery, String target, List<String> columns, Source.Lookup sources,
            Branch shape, boolean consolidate, Apply apply) throws PlanRefusedException {
        List<Expression> keys = shape.groupKeys();
        List<String> keyColumns = new ArrayList<>();
        List<String> outputs = shape.select.getSelectItems().stream().map(i -> i.getExpression().toString()).toList();
        for (Expression key : keys) {
            int at = outputs.indexOf(key.toString());
            if (at < 0) {
                throw new PlanRefusedException("the GROUP BY expression " + key + " is not in the select list");
            }
            keyColumns.add(columns.get(at));
        }
        List<String> keyTexts = keys.stream().map(Object::toString).toList();

        // the group keys the changes touch, from the telescoping terms of the FROM and WHERE clauses
        Parsed termShape = keysQuery == null ? new Parsed(List.of(shape)) : parse(keysQuery, sources);
        Deltas deltas = new Deltas(termShape, consolidate);
        boolean flips = keysQuery == null || !OuterJoins.keysFromPreservedSide(query, keys);
        List<String> terms = keyTerms(keysQuery == null ? query : keysQuery, termShape, keysQuery == null ? keyTexts : null, true,
                flips, sources, deltas);
        if (!shape.havingSublinks.isEmpty()) {
            // a threshold that moved: every group, as it is now (groups that are gone were touched by their rows)
            String moved = Sublinks.defineHaving(query, sources, deltas);
            Branch k = parse(query, sources).branches.get(0);
            selectKeys(k, keyTexts, true);
            terms.add(leg(k.render(k.newTerm(), deltas), keyNames(keyTexts.size(), true), Gate.of(moved)));
        }

        // those groups recomputed from the sources
        String recompute = restrictedToKeys(() -> keysQuery == null ? parse(query, sources).branches.get(0).select
                : OuterJoins.plainSelect(query), keyTexts, "__pgt_keys");

        return new Plan(Strategy.GROUPS, recomputeKeys(terms, termShape, recompute, columns, deltas,
                apply.groups(target, columns, keyColumns, "__pgt_keys")), keyColumns);
    }

    /**
     * A statement that recomputes the keys the {@code terms} touch (CTE __pgt_keys, column h):
     * their new rows, from {@code recompute}, in CTE __pgt_new, written by {@code apply}.
     */
    private static String recomputeKeys(List<String> terms, Parsed termShape, String recompute, List<String> columns, Deltas deltas,
            String apply) {
        return """
                WITH %5$s,
                __pgt_keys AS MATERIALIZED (
                    SELECT DISTINCT k.* FROM (%1$s) k),
                __pgt_trunc AS MATERIALIZED (SELECT %2$s AS t),
                __pgt_new AS MATERIALIZED (
                    SELECT ROW(q.*)::text AS __pgt_key, q.*
                      FROM (%3$s) q(%4$s)
                     WHERE EXISTS (SELECT FROM __pgt_keys)),
                %6$s""".formatted(Legs.union(terms), truncated(termShape), recompute,
                String.join(", ", columns), deltas.definitions(), apply);
    }

    /**
     * The terms yielding (as column h) the key hashes of the rows the changes touch, and with
     * {@code values} the keys themselves (k0, k1, ...): per branch of {@code termsQuery}, its change
     * terms and (with {@code flips}) the flip terms of its subqueries. {@code keys} are the key's
     * expressions in each branch, or null for each branch's select list.
     */
    private static List<String> keyTerms(String termsQuery, Parsed termShape, List<String> keys, boolean values, boolean flips,
            Source.Lookup sources, Deltas deltas) throws PlanRefusedException {
        List<String> terms = new ArrayList<>();
        for (int bi = 0; bi < termShape.branches.size(); bi++) {
            Branch kb = termShape.branches.get(bi);
            List<String> exprs = keys != null ? keys : kb.select.getSelectItems().stream().map(i -> i.getExpression().toString()).toList();
            for (Term t : kb.changeTerms()) {
                Branch k = parse(termsQuery, sources).branches.get(bi);
                selectKeys(k, exprs, values);
                terms.add(leg(k.render(t, deltas), keyNames(exprs.size(), values), k.pending(t, deltas, null)));
            }
            if (flips && !kb.sublinks.isEmpty()) {
                // the keys of rows whose subquery verdict can have changed
                Sublinks.define(termsQuery, sources, deltas, bi);
                for (Term t : kb.oldTerms()) {
                    Branch k = parse(termsQuery, sources).branches.get(bi);
                    Sublinks.flip(k, bi, deltas);
                    selectKeys(k, exprs, values);
                    terms.add(leg(k.render(t, deltas), keyNames(exprs.size(), values), k.pending(t, deltas, Sublinks.pending(k, deltas))));
                }
            }
        }
        return terms;
    }

    /**
     * {@code select} (a fresh copy from each call of the supplier) restricted to the keys in CTE
     * {@code touched} (columns h, k0, k1, ...; see {@link #keyTerms}), whose expressions there are
     * {@code keys}. By the key values, so that PostgreSQL can look the keys up by an index on them
     * and knows how few they are: restricted by their hash, it estimated half the rows (a hash is
     * opaque to it) and recomputed the touched groups of TPC-H Q13 by a hash join over all the
     * orders, 30 ms against 4 by the index on the customer key. A key with a NULL in it never equals
     * anything, so those keys go by their hash, in a branch of their own that runs only when the
     * changes touch such a key (its groups and the others' are disjoint).
     */
    static String restrictedToKeys(FreshSelect select, List<String> keys, String touched)
            throws PlanRefusedException {
        String values = IntStream.range(0, keys.size()).mapToObj(i -> touched + ".k" + i).collect(Collectors.joining(", "));
        String nullKey = IntStream.range(0, keys.size()).mapToObj(i -> touched + ".k" + i + " IS NULL").collect(Collectors.joining(" OR "));
        String byValue = (keys.size() == 1 ? keys.get(0) : "(" + String.join(", ", keys) + ")")
                + " IN (SELECT " + values + " FROM " + touched + ")";
        String byHash = "(" + keys.stream().map(k -> "(" + k + ") IS NULL").collect(Collectors.joining(" OR ")) + ") AND "
                + rowHash(keys) + " IN (SELECT " + touched + ".h FROM " + touched + " WHERE " + nullKey + ")"
                + " AND EXISTS (SELECT 1 FROM " + touched + " WHERE " + nullKey + ")";
        PlainSelect a = select.get();
        a.setWhere(parseExpression(a.getWhere() == null ? byValue : "(" + a.getWhere() + ") AND " + byValue));
        PlainSelect b = select.get();
        b.setWhere(parseExpression(b.getWhere() == null ? byHash : "(" + b.getWhere() + ") AND " + byHash));
        return "(" + a + ") UNION ALL (" + b + ")";
    }

    /** A fresh parse of a SELECT, to edit. */
    @FunctionalInterface
    interface FreshSelect {
        PlainSelect get() throws PlanRefusedException;
    }

    static String rowHash(List<String> exprs) {
        return "hash_record_extended(ROW(" + String.join(", ", exprs) + "), 0)";
    }

    private static List<String> keyNames(int keys, boolean values) {
        List<String> names = new ArrayList<>(List.of("h"));
        for (int i = 0; values && i < keys; i++) {
            names.add("k" + i);
        }
        return names;
    }

    // ---------------------------------------------------------------- touched keys recomputed

    /**
     * For results whose rows are a function of the source rows with the same key: UNION,
     * INTERSECT and EXCEPT (the key is the whole row: its copies in the result depend only on its
     * copies in each branch, see {@link SetOperations}) and window functions (the key is the
     * partition, see {@link Windows}). The keys the changes touch come from the terms of
     * {@code keysQuery} (its rows: the keys of the query's rows), {@code restricted} (the query
     * limited to the keys in CTE __pgt_keys: by their hash h, or with {@code values} by the keys'
     * values k0, k1, ... too) recomputes them, and their stored rows are replaced copy by copy.
     */
    private static Plan touched(String keysQuery, String restricted, boolean values, List<String> keyColumns, String target,
            List<String> columns, Source.Lookup sources, boolean consolidate) throws PlanRefusedException {
        Parsed termShape = parse(keysQuery, sources);
        Deltas deltas = new Deltas(termShape, consolidate);
        List<String> terms = keyTerms(keysQuery, termShape, null, values, true, sources, deltas);
        return new Plan(Strategy.GROUPS, recomputeKeys(terms, termShape, restricted, columns, deltas,
                replaceCopies(target, columns, keyColumns, "__pgt_keys")), keyColumns);
    }

    /**
     * Like {@link #replaceGroups} for a result with duplicate rows: the stored copies of the touched
     * rows and their new copies are numbered per row (its text), and only the copies beyond the
     * other side's count are deleted or inserted.
     */
    static String replaceCopies(String target, List<String> columns, List<String> keyColumns, String touched) {
        return """
                __pgt_old AS MATERIALIZED (
                    SELECT s.__pgt_ctid, ROW(%1$s)::text AS __pgt_key,
                           row_number() OVER (PARTITION BY ROW(%1$s)::text) AS __pgt_n
                      FROM %2$s),
                __pgt_copies AS MATERIALIZED (
                    SELECT n.*, row_number() OVER (PARTITION BY n.__pgt_key) AS __pgt_n FROM __pgt_new n),
                %3$s""".formatted(prefixed("s.", columns), storedOfTouched(target, keyColumns, touched),
                copiesWritten(target, columns, "__pgt_old", "__pgt_copies"));
    }

    /**
     * The end of a statement that writes numbered copies: CTE {@code stored} (the stored rows'
     * __pgt_ctid, their text __pgt_key and copy number __pgt_n) against CTE {@code fresh} (the new
     * rows' columns, __pgt_key and __pgt_n); only the copies beyond the other side's count are
     * deleted or inserted. Needs CTE __pgt_trunc before it.
     */
    static String copiesWritten(String target, List<String> columns, String stored, String fresh) {
        return """
                __pgt_deleted AS (
                    DELETE FROM %1$s s
                     WHERE s.ctid = ANY (ARRAY(SELECT o.__pgt_ctid FROM %3$s o
                                                WHERE NOT EXISTS (SELECT FROM %4$s n WHERE n.__pgt_key = o.__pgt_key AND n.__pgt_n = o.__pgt_n)))
                       AND NOT (SELECT t FROM __pgt_trunc)
                    RETURNING 1),
                __pgt_inserted AS (
                    INSERT INTO %1$s (%2$s)
                    SELECT %5$s FROM %4$s n
                     WHERE NOT (SELECT t FROM __pgt_trunc)
                       AND NOT EXISTS (SELECT FROM %3$s o WHERE o.__pgt_key = n.__pgt_key AND o.__pgt_n = n.__pgt_n)
                    RETURNING 1)
                -- deleted first: an old copy must be gone before a new one meets a unique index
                SELECT (SELECT count(*) FROM __pgt_deleted), (SELECT count(*) FROM __pgt_inserted),
                       pg_current_snapshot()::text, (SELECT t FROM __pgt_trunc), 0::bigint
                """.formatted(target, String.join(", ", columns), stored, fresh, prefixed("n.", columns));
    }

    private static List<String> withWeight(List<String> columns) {
        List<String> names = new ArrayList<>(columns);
        names.add("__pgt_w");
        return names;
    }

    /**
     * Makes a term's branch yield the hash of its rows' key (over {@code keys}, its expressions),
     * and with {@code values} the key's values after it, one row per row (no grouping).
     */
    private static void selectKeys(Branch k, List<String> keys, boolean values) throws PlanRefusedException {
        List<SelectItem<?>> items = new ArrayList<>(List.of(SelectItem.from(parseExpression(rowHash(keys)))));
        for (int i = 0; values && i < keys.size(); i++) {
            items.add(SelectItem.from(parseExpression(keys.get(i))));
        }
        k.select.setSelectItems(items);
        k.select.setGroupByElement(null);
        k.select.setHaving(null);
        k.select.setDistinct(null);
    }

    /**
     * The end of a statement that replaces whole groups: the stored rows of the groups whose key
     * hashes are in {@code touched} (a CTE with column h) against their new rows in CTE __pgt_new,
     * writing only the rows that differ. Needs CTEs __pgt_new (__pgt_key = the row's text) and
     * __pgt_trunc before it.
     */
    static String replaceGroups(String target, List<String> columns, List<String> keyColumns, String touched) {
        return """
                __pgt_old AS MATERIALIZED (
                    SELECT s.__pgt_ctid, ROW(%2$s)::text AS __pgt_key
                      FROM %4$s),
                __pgt_deleted AS (
                    DELETE FROM %3$s s
                     WHERE s.ctid = ANY (ARRAY(SELECT o.__pgt_ctid FROM __pgt_old o
                                                WHERE NOT EXISTS (SELECT FROM __pgt_new n WHERE n.__pgt_key = o.__pgt_key)))
                       AND NOT (SELECT t FROM __pgt_trunc)
                    RETURNING 1),
                __pgt_inserted AS (
                    INSERT INTO %3$s (%1$s)
                    SELECT %5$s FROM __pgt_new n
                     WHERE NOT (SELECT t FROM __pgt_trunc)
                       AND NOT EXISTS (SELECT FROM __pgt_old o WHERE o.__pgt_key = n.__pgt_key)
                    RETURNING 1)
                -- deleted first: an old row must be gone before its new version meets a unique index
                SELECT (SELECT count(*) FROM __pgt_deleted), (SELECT count(*) FROM __pgt_inserted),
                       pg_current_snapshot()::text, (SELECT t FROM __pgt_trunc), 0::bigint
                """.formatted(String.join(", ", columns), prefixed("s.", columns), target, storedOfTouched(target, keyColumns, touched),
                prefixed("n.", columns));
    }

    /**
     * A FROM clause of the stored rows (as {@code s}, with their ctid as __pgt_ctid) of the groups
     * in CTE {@code touched} (column h), each group looked up by the row index on its key's hash.
     * As a semi-join (hash IN (SELECT h ...)) PostgreSQL estimated half the table for a few hundred
     * keys, having no statistics of the hash, and read it all: 15,000 rows of TPC-H Q13's counts per
     * customer for 290 touched customers, on every refresh. The lookup per key (LATERAL, kept from
     * being pulled up by OFFSET 0) is what the index is for.
     */
    static String storedOfTouched(String target, List<String> keyColumns, String touched) {
        return "(SELECT DISTINCT __pgt_t.h FROM " + touched + " __pgt_t) __pgt_k CROSS JOIN LATERAL (SELECT s.*, s.ctid AS __pgt_ctid FROM "
                + target + " s WHERE hash_record_extended(ROW(" + prefixed("s.", keyColumns) + "), 0) = __pgt_k.h OFFSET 0) s";
    }

    // ---------------------------------------------------------------- SQL pieces

    /**
     * The changes of each source in the window, read once into a materialized CTE (__pgt_d0, ...):
     * a term reads them, and so does every old state, possibly on the inner side of a join. Left to
     * the planner, the buffer scan with its per-row visibility test could be repeated per outer row.
     */
    static final class Deltas {
        private final Map<String, Source> sources = new LinkedHashMap<>();
        private final Map<String, String> names = new LinkedHashMap<>();
        private final boolean consolidate;
        /** Buffers whose changes are read unconsolidated even so (see {@link UniqueJoins}). */
        private final Set<String> unconsolidated;
        /** Per buffer, the condition the changes a term can use satisfy (see {@link ChangeReads#filters}). */
        private final Map<String, String> filters;

        Deltas(Parsed parsed, boolean consolidate) {
            this(parsed, consolidate, Set.of());
        }

        Deltas(Parsed parsed, boolean consolidate, Set<String> unconsolidated) {
            this.consolidate = consolidate;
            this.unconsolidated = unconsolidated;
            this.filters = ChangeReads.filters(parsed);
            for (Branch b : parsed.branches) {
                for (Occurrence o : b.allOccurrences()) {
                    if (sources.putIfAbsent(o.source.buffer(), o.source) == null) {
                        names.put(o.source.buffer(), "__pgt_d" + names.size());
                    }
                }
            }
        }

        /**
         * Consolidated: a row updated back and forth within the window nets out, as do the delete and
         * insert of an UPDATE that changed nothing. Unconsolidated, such pairs multiply through every
         * join of the terms and the old states (a window of thousands of updates over a few keys
         * joins into hundreds of millions of rows that cancel only at the end).
         */
        String definitions() {
            return sources.values().stream()
                    .map(s -> names.get(s.buffer()) + " AS MATERIALIZED ("
                            + (consolidate && !unconsolidated.contains(s.buffer()) ? consolidated(s, filters.get(s.buffer()))
                                    : changes(s, filters.get(s.buffer()))) + ")")
                    .collect(Collectors.joining(",\n"))
                    + defined.entrySet().stream().map(e -> ",\n" + e.getKey() + " AS MATERIALIZED (" + e.getValue() + ")")
                            .collect(Collectors.joining());
        }

        /** The window's changed rows of a source that satisfy {@code filter} (null: all), each with its weight. */
        private static String changes(Source s, String filter) {
            return "SELECT " + prefixed("b.", s.columns()) + ", CASE WHEN b.action = 'I' THEN 1 ELSE -1 END AS __pgt_w FROM "
                    + s.buffer() + " b WHERE " + WINDOW + " AND b.action <> 'T'" + (filter != null ? " AND (" + filter + ")" : "");
        }

        /**
         * The same, consolidated over the columns read: an update that left them as they were nets
         * out, as does a row updated back and forth. By value and, where equal values can print
         * differently, by text: the delete of 1.0 and the insert of 1.000 must both reach the stream
         * table.
         */
        static String consolidated(Source s, String filter) {
            String positions = IntStream.rangeClosed(1, s.columns().size()).mapToObj(Integer::toString)
                    .collect(Collectors.joining(", "))
                    + IntStream.range(0, s.columns().size()).filter(i -> !s.identical().get(i))
                            .mapToObj(i -> ", " + s.columns().get(i) + "::text").collect(Collectors.joining());
            return "SELECT " + String.join(", ", s.columns()) + ", sum(x.__pgt_w)::integer AS __pgt_w FROM (" + changes(s, filter)
                    + ") x GROUP BY " + positions + " HAVING sum(x.__pgt_w) <> 0";
        }

        /** CTEs the terms read besides the changes (see {@link Sublinks#define}), after them. */
        private final Map<String, String> defined = new LinkedHashMap<>();

        void define(String name, String sql) {
            defined.put(name, sql);
        }

        /**
         * The source's rows as they were at the frontier, as a plain multiset: the old state's
         * weights summed per row. A subquery tests rows (EXISTS, IN, count(*)), so it needs rows,
         * not weights. PostgreSQL pushes a correlated condition on the subquery's columns through
         * the grouping into both halves of the old state, so a lookup stays a lookup.
         */
        String oldRows(Source s) {
            return oldRows(s, null);
        }

        /** The same, of the rows that satisfy {@code where} (over the source's columns, unqualified) only. */
        String oldRows(Source s, String where) {
            String cols = String.join(", ", s.columns());
            String positions = IntStream.rangeClosed(1, s.columns().size()).mapToObj(Integer::toString).collect(Collectors.joining(", "));
            return "(SELECT " + prefixed("__pgt_o.", s.columns()) + " FROM (SELECT " + cols + ", sum(__pgt_w) AS __pgt_n FROM "
                    + oldState(s, where) + " __pgt_s GROUP BY " + positions + " HAVING sum(__pgt_w) > 0) __pgt_o"
                    + " CROSS JOIN LATERAL generate_series(1, __pgt_o.__pgt_n))";
        }

        String changes(Source s) {
            return "(SELECT * FROM " + names.get(s.buffer()) + ")";
        }

        /** The source as it was at the frontier: its rows now, less the window's inserts, plus its deletes. */
        String oldState(Source s) {
            return oldState(s, null);
        }

        private String oldState(Source s, String where) {
            String cols = String.join(", ", s.columns());
            String only = where == null ? "" : " WHERE " + where;
            // without changes in the window, the old state is the table: a relation PostgreSQL reads by index
            return "(SELECT " + cols + ", 1 AS __pgt_w FROM " + s.name() + only
                    + Legs.section(new Gate(null, Set.of(s.buffer()), Set.of()),
                            " UNION ALL SELECT " + cols + ", -__pgt_w FROM " + names.get(s.buffer()) + only) + ")";
        }

        /**
         * Gates a term: it runs only when its source has changes in the window. Twice: by the list
         * of buffers with changes the refresh found just before ({@code $2}, see {@link #leg}),
         * which PostgreSQL evaluates while planning, and by the changes the statement reads.
         */
        String pending(Source s) {
            return live(s) + " AND EXISTS (SELECT FROM " + names.get(s.buffer()) + ")";
        }

    }

    /**
     * Whether a TRUNCATE of a source is in the window (then nothing is written and the caller runs
     * FULL), or a source the refresh left out of the statement ({@code $2}) has changes that matter
     * to it: a writer committed between the refresh's probe and this statement, and the terms of
     * its changes were not planned. Nothing is written then either, and the caller runs the
     * statement again without {@code $2}. Changes that matter: those that remain once an update's
     * delete and insert that agree on every column the statement reads (by value and text form)
     * cancel, of rows that satisfy the source's filter (see {@link Deltas#consolidated}). The
     * refresh leaves a source out when it had no changes, or only changes that do not matter
     * (pgtrickle.relevant_buffers): the statement's terms over them would add nothing, and its old
     * states of the source are, in what it reads, the table as it is.
     */
    static String truncated(Parsed parsed) {
        Map<String, Source> distinct = new LinkedHashMap<>();
        for (Branch b : parsed.branches) {
            for (Occurrence o : b.allOccurrences()) {
                distinct.putIfAbsent(o.source.buffer(), o.source);
            }
        }
        Map<String, String> filters = ChangeReads.filters(parsed);
        return distinct.values().stream()
                .map(s -> "EXISTS (SELECT FROM " + s.buffer() + " b WHERE " + WINDOW + " AND b.action = 'T') OR (NOT " + live(s)
                        + " AND EXISTS (" + Deltas.consolidated(s, filters.get(s.buffer())) + "))")
                .collect(Collectors.joining(" OR "));
    }

    /**
     * "The source had changes when the refresh looked": {@code $2} is the text[] of the change
     * buffers that had (NULL: not known). A constant while PostgreSQL plans a statement run with
     * parameters (plpgsql's EXECUTE ... USING), so a gate false by it is folded to false.
     */
    static String live(Source s) {
        return "($2::text[] IS NULL OR '" + s.buffer().replace("'", "''") + "' = ANY ($2::text[]))";
    }

    /**
     * One leg of a union of terms: {@code term} (a SELECT) with its columns named, run only when
     * {@code gate} holds. OFFSET 0 keeps the term a subquery of its own, so that a gate PostgreSQL
     * folds to false (see {@link #live}) excludes the term before its joins are planned: a
     * statement has up to dozens of terms, most of them for changes a refresh does not have, and
     * planning them all took longer than running the live ones.
     */
    static String leg(String term, List<String> names, Gate gate) {
        String leg = "SELECT * FROM (" + term + " OFFSET 0) __pgt_t(" + String.join(", ", names) + ")"
                + (gate == null ? "" : " WHERE " + gate.sql());
        return gate == null ? leg : Legs.needing(gate, leg);
    }

    /**
     * A term's gate as SQL, and the change buffers it needs, so that a refresh can leave out the
     * whole term when they have no changes (see {@link Legs}): every buffer of {@code all}, and one
     * of {@code any} unless that is empty.
     */
    record Gate(String sql, Set<String> all, Set<String> any) {
        /** A gate that needs nothing the refresh knows of: its term is always rendered. */
        static Gate of(String sql) {
            return new Gate(sql, Set.of(), Set.of());
        }
    }

    static String prefixed(String prefix, List<String> columns) {
        return columns.stream().map(c -> prefix + c).collect(Collectors.joining(", "));
    }

    static Expression parseExpression(String sql) throws PlanRefusedException {
        try {
            return CCJSqlParserUtil.parseCondExpression(sql);
        } catch (JSQLParserException e) {
            throw new PlanRefusedException("the engine could not build its key filter: " + firstLine(e));
        }
    }

    // ---------------------------------------------------------------- parsing

    record Parsed(List<Branch> branches) {
    }

    /** A table named in a branch's FROM clause. */
    static final class Occurrence {
        final Table table;
        final Source source;
        final String alias;

        Occurrence(Table table, Source source, String alias) {
            this.table = table;
            this.source = source;
            this.alias = alias;
        }
    }

    /** One SELECT of the query (the only one, or a UNION ALL branch). */
    static final class Branch {
        final PlainSelect select;
        final List<Occurrence> occurrences = new ArrayList<>();
        /** Whether the select list or HAVING calls aggregates (with or without GROUP BY). */
        boolean aggregates;
        /** WHERE's AND-ed conditions: those with a subquery, and the others. */
        final List<Sublinks.Sublink> sublinks = new ArrayList<>();
        final List<Expression> plain = new ArrayList<>();
        /** HAVING's AND-ed conditions with an uncorrelated subquery (GROUPS recomputes every group when it changes). */
        final List<Sublinks.Sublink> havingSublinks = new ArrayList<>();

        /** The tables of the branch and of its subqueries. */
        List<Occurrence> allOccurrences() {
            List<Occurrence> all = new ArrayList<>(occurrences);
            sublinks.forEach(s -> all.addAll(s.inner.allOccurrences()));
            havingSublinks.forEach(s -> all.addAll(s.inner.allOccurrences()));
            return all;
        }

        Branch(PlainSelect select) {
            this.select = select;
        }

        boolean grouped() {
            return select.getGroupBy() != null || select.getDistinct() != null;
        }

        List<Expression> groupKeys() {
            if (select.getGroupBy() != null) {
                @SuppressWarnings("unchecked")
                List<Expression> keys = new ArrayList<>((ExpressionList<Expression>) select.getGroupBy().getGroupByExpressionList());
                return keys;
            }
            return select.getSelectItems().stream().map(i -> (Expression) i.getExpression()).toList();
        }

        /**
         * The terms whose sum is the change of this branch's FROM and WHERE (see {@link Term}):
         * per occurrence k, its changes joined with the new state of the occurrences before it and
         * the old state of those after it, where the old state of an indexed occurrence is written
         * as its new state less its changes, each product of the expansion a term of its own.
         */
        List<Term> changeTerms() {
            List<Integer> order = telescopingOrder();
            int indexed = indexed(order);
            List<Term> terms = new ArrayList<>();
            for (int p = 0; p < order.size(); p++) {
                int later = Math.max(0, indexed - p - 1); // indexed occurrences after position p
                for (int mask = 0; mask < 1 << later; mask++) {
                    Role[] roles = new Role[order.size()];
                    for (int q = 0; q < order.size(); q++) {
                        int i = order.get(q);
                        if (q < p) {
                            roles[i] = Role.NEW;
                        } else if (q == p) {
                            roles[i] = Role.CHANGES;
                        } else if (q < indexed) {
                            roles[i] = (mask & 1 << (q - p - 1)) != 0 ? Role.CHANGES : Role.NEW;
                        } else {
                            roles[i] = Role.OLD;
                        }
                    }
                    terms.add(new Term(List.of(roles), Integer.bitCount(mask) % 2 == 1));
                }
            }
            return terms;
        }

        /**
         * The terms whose sum is this branch's FROM and WHERE over the old state of every
         * occurrence, the old state of an indexed occurrence written as above.
         */
        List<Term> oldTerms() {
            List<Integer> order = telescopingOrder();
            int indexed = indexed(order);
            List<Term> terms = new ArrayList<>();
            for (int mask = 0; mask < 1 << indexed; mask++) {
                Role[] roles = new Role[order.size()];
                for (int q = 0; q < order.size(); q++) {
                    roles[order.get(q)] = q >= indexed ? Role.OLD : (mask & 1 << q) != 0 ? Role.CHANGES : Role.NEW;
                }
                terms.add(new Term(List.of(roles), Integer.bitCount(mask) % 2 == 1));
            }
            return terms;
        }

        /** The new state of every occurrence. */
        Term newTerm() {
            return new Term(occurrences.stream().map(o -> Role.NEW).toList(), false);
        }

        /**
         * The occurrences in the order the terms take them: the largest first (by the estimate
         * when the plan was made; unknown counts as large), as those are the ones worth reading
         * by index. Ties keep the FROM clause's order.
         */
        private List<Integer> telescopingOrder() {
            return IntStream.range(0, occurrences.size()).boxed()
                    .sorted((a, b) -> Double.compare(size(b), size(a)))
                    .toList();
        }

        /**
         * How many occurrences, the first of {@code order}, the terms read by index: all of up to
         * {@link #MIN_INDEXED}, and beyond that those of at least {@link #INDEXED_ROWS} rows, up to
         * {@link #MAX_INDEXED}. The old state of a small table is hashed whole cheaply.
         */
        private int indexed(List<Integer> order) {
            int large = (int) order.stream().filter(i -> size(i) >= INDEXED_ROWS).count();
            return Math.min(order.size(), Math.min(MAX_INDEXED, Math.max(MIN_INDEXED, large)));
        }

        private double size(int i) {
            double rows = occurrences.get(i).source.rows();
            return rows < 0 ? Double.MAX_VALUE : rows;
        }

        /**
         * A term as SQL. Done on the parse tree (each occurrence's table node renamed to its
         * relation), so nothing in the query's text is rewritten: a string literal that looks like
         * an internal name stays what it is. Edits this branch, so each term needs a branch of its own.
         */
        String render(Term t, Deltas deltas) {
            for (int i = 0; i < occurrences.size(); i++) {
                Occurrence o = occurrences.get(i);
                o.table.setSchemaName(null);
                o.table.setName(switch (t.roles().get(i)) {
                    case NEW -> o.source.name();
                    case CHANGES -> deltas.changes(o.source);
                    case OLD -> deltas.oldState(o.source);
                });
            }
            return select.toString();
        }

        /** A term's weight: its sign times the weights of the occurrences it reads as changes or old state. */
        String weight(Term t) {
            List<String> factors = new ArrayList<>();
            for (int i = 0; i < occurrences.size(); i++) {
                if (t.roles().get(i) != Role.NEW) {
                    factors.add(occurrences.get(i).alias + ".__pgt_w");
                }
            }
            String product = factors.isEmpty() ? "1" : String.join(" * ", factors);
            return t.negated() ? "(-1) * " + product : product;
        }

        /**
         * Gates a term: it runs only when every source it reads changes of has some, and (if not
         * null) {@code also} holds. Null when there is nothing to test.
         */
        Gate pending(Term t, Deltas deltas, Gate also) {
            List<String> gates = new ArrayList<>();
            Set<String> all = new java.util.LinkedHashSet<>();
            for (int i = 0; i < occurrences.size(); i++) {
                if (t.roles().get(i) == Role.CHANGES) {
                    String g = deltas.pending(occurrences.get(i).source);
                    all.add(occurrences.get(i).source.buffer());
                    if (!gates.contains(g)) {
                        gates.add(g);
                    }
                }
            }
            if (also != null) {
                gates.add("(" + also.sql() + ")");
            }
            return gates.isEmpty() ? null : new Gate(String.join(" AND ", gates), all, also == null ? Set.of() : also.any());
        }
    }

    /** What a term reads of an occurrence. */
    enum Role { NEW, CHANGES, OLD }

    /**
     * The largest number of occurrences whose old state a plan writes as "new state less changes"
     * (the inclusion-exclusion expansion of Larson and Zhou), which makes 2^n - 1 + (others) terms.
     * The old state as one relation is the table and its changes in a UNION ALL, which PostgreSQL
     * can only hash whole, and when it is on the inner side of a nested loop, hashes again per
     * outer row: joined to a few changed rows, the table is read entire, or many times. Its new
     * state is the table, probed by index. The extra terms join changes with changes; a refresh
     * plans only those of sources with changes (see {@link #live}), but every refresh parses them
     * all, so their number is bounded.
     */
    static final int MAX_INDEXED = 6;

    /** Occurrences read by index whatever their size (see {@link Branch#indexed}). */
    static final int MIN_INDEXED = 4;

    /** From this many rows (PostgreSQL's estimate when the plan is made) a table is worth reading by index. */
    static final double INDEXED_ROWS = 1000;

    /**
     * One term of a change: per occurrence what it reads, and whether the term counts negatively.
     * The change of a join of R and S is {@code dR.S_new + R_new.dS - dR.dS}, of three relations
     * the telescoping {@code dR.S_new.T_new + R_old.dS.T_new + R_old.S_old.dT} with the old states
     * expanded the same way, and so on.
     */
    record Term(List<Role> roles, boolean negated) {
    }

    /**
     * PostgreSQL deparses {@code interval '90' day} as {@code '90 days'::interval day}, which JSqlParser
     * cannot read. On a literal the field qualifier is a no-op: the constant was coerced when the query
     * was parsed, and the printed value is the coerced one.
     */
    private static final Pattern INTERVAL_FIELD = Pattern.compile(
            "::interval( (?:year|month|day|hour|minute|second)(?: to (?:month|hour|minute|second))?)\\b");

    /**
     * PostgreSQL deparses {@code LIKE} as the operator {@code ~~} (and {@code ILIKE}, {@code NOT LIKE}
     * as {@code ~~*}, {@code !~~}), which JSqlParser misreads: {@code x ~~ 'a'} as {@code x ~ (~'a')},
     * and {@code x ~~* 'a'} as just {@code x}. The keywords are the same operators.
     */
    private static final String[][] LIKE_OPERATORS = {
        {"!~~*", " NOT ILIKE "}, {"~~*", " ILIKE "}, {"!~~", " NOT LIKE "}, {"~~", " LIKE "},
    };

    /**
     * The query as JSqlParser reads it: without the field qualifiers of interval literals, and with
     * LIKE operators spelled as keywords (see {@link #LIKE_OPERATORS}). A scanner rather than regular
     * expressions over the whole text: only what really is a qualifier or an operator changes, never
     * text inside a string literal or a quoted identifier that happens to look like one.
     */
    static String readable(String query) {
        return scan(query, true);
    }

    /**
     * The query without the field qualifiers of interval literals and with {@code SELECT 1} for an
     * empty select list, but its LIKE operators as they are: what {@link #readable} printed back
     * must mean the same as this.
     */
    static String withoutIntervalFields(String query) {
        return scan(query, false);
    }

    private static String scan(String query, boolean likeKeywords) {
        StringBuilder out = new StringBuilder(query.length());
        int i = 0;
        scanning:
        while (i < query.length()) {
            char ch = query.charAt(i);
            if (ch != '\'' && ch != '"') {
                int emptyList = emptySelectList(query, i);
                if (emptyList > 0) {
                    // EXISTS (SELECT FROM ...): JSqlParser needs a select list, and EXISTS ignores it
                    out.append("SELECT 1");
                    i = emptyList;
                    continue;
                }
                if (likeKeywords && (ch == '~' || ch == '!')) {
                    for (String[] op : LIKE_OPERATORS) {
                        if (query.startsWith(op[0], i)) {
                            out.append(op[1]);
                            i += op[0].length();
                            continue scanning;
                        }
                    }
                }
                out.append(ch);
                i++;
                continue;
            }
            int end = i + 1;
            while (end < query.length()) {
                if (query.charAt(end) == ch) {
                    if (end + 1 < query.length() && query.charAt(end + 1) == ch) {
                        end += 2; // a doubled quote stands for itself
                        continue;
                    }
                    break;
                }
                end++;
            }
            end = Math.min(end + 1, query.length());
            out.append(query, i, end);
            i = end;
            if (ch == '\'') {
                Matcher field = INTERVAL_FIELD.matcher(query).region(i, query.length());
                if (field.lookingAt()) {
                    out.append("::interval");
                    i = field.end();
                }
            }
        }
        return out.toString();
    }

    /** Where the FROM of a {@code SELECT FROM} starting at {@code i} begins, or 0. */
    private static int emptySelectList(String query, int i) {
        if (!query.regionMatches(true, i, "SELECT", 0, 6) || i > 0 && isWordChar(query.charAt(i - 1))) {
            return 0;
        }
        int j = i + 6;
        int gap = j;
        while (j < query.length() && Character.isWhitespace(query.charAt(j))) {
            j++;
        }
        boolean from = j > gap && query.regionMatches(true, j, "FROM", 0, 4)
                && (j + 4 == query.length() || !isWordChar(query.charAt(j + 4)));
        return from ? gap : 0;
    }

    private static boolean isWordChar(char c) {
        return Character.isLetterOrDigit(c) || c == '_' || c == '$';
    }

    /**
     * The query as the engine's parser understood it, printed back: PostgreSQL reads this text the
     * way it read the query, or the planner must not use it (see RefreshPlanner's check).
     */
    static String deparsed(String query) throws PlanRefusedException {
        try {
            return CCJSqlParserUtil.parse(readable(query)).toString();
        } catch (JSQLParserException e) {
            throw new PlanRefusedException("the engine's SQL parser cannot read the query: " + firstLine(e));
        }
    }

    /** The query as JSqlParser reads it, or null when it cannot or it is not a SELECT (the planner says why). */
    static Select select(String query) {
        try {
            return CCJSqlParserUtil.parse(readable(query)) instanceof Select select ? select : null;
        } catch (JSQLParserException e) {
            return null;
        }
    }

    static Parsed parse(String query, Source.Lookup sources) throws PlanRefusedException {
        Statement statement;
        try {
            statement = CCJSqlParserUtil.parse(readable(query));
        } catch (JSQLParserException e) {
            throw new PlanRefusedException("the engine's SQL parser cannot read the query: " + firstLine(e));
        }
        if (!(statement instanceof Select select)) {
            throw new PlanRefusedException("the query is not a SELECT");
        }
        if (select.getWithItemsList() != null && !select.getWithItemsList().isEmpty()) {
            throw new PlanRefusedException("the query uses WITH");
        }
        List<PlainSelect> selects = new ArrayList<>();
        if (select instanceof SetOperationList union) {
            for (SetOperation op : union.getOperations()) {
                if (!(op instanceof UnionOp u) || !u.isAll()) {
                    throw new PlanRefusedException("the query uses UNION without ALL, INTERSECT or EXCEPT");
                }
            }
            noLimit(union);
            union.setOrderByElements(null);
            for (Select s : union.getSelects()) {
                Select inner = s instanceof ParenthesedSelect p ? p.getSelect() : s;
                if (!(inner instanceof PlainSelect ps)) {
                    throw new PlanRefusedException("a UNION ALL branch is not a plain SELECT");
                }
                selects.add(ps);
            }
        } else if (select instanceof PlainSelect ps) {
            selects.add(ps);
        } else {
            throw new PlanRefusedException("the query's form is not maintained differentially: " + select.getClass().getSimpleName());
        }

        List<Branch> branches = new ArrayList<>();
        for (PlainSelect ps : selects) {
            noLimit(ps);
            ps.setOrderByElements(null);
            if (ps.getDistinct() != null && ps.getDistinct().getOnSelectItems() != null) {
                throw new PlanRefusedException("the query uses DISTINCT ON");
            }
            if (ps.getGroupBy() != null && ps.getGroupBy().getGroupingSets() != null && !ps.getGroupBy().getGroupingSets().isEmpty()) {
                throw new PlanRefusedException("the query uses GROUPING SETS, ROLLUP or CUBE");
            }
            if (ps.getWindowDefinitions() != null || ps.getIntoTables() != null) {
                throw new PlanRefusedException("the query uses WINDOW or INTO");
            }
            Branch b = new Branch(ps);
            ps.setFromItem(walk(ps.getFromItem(), b, sources));
            if (ps.getJoins() != null) {
                for (Join j : ps.getJoins()) {
                    join(j, b, sources);
                }
            }
            if (b.occurrences.isEmpty()) {
                throw new PlanRefusedException("the query reads no table");
            }
            Findings f = new Findings();
            for (SelectItem<?> item : ps.getSelectItems()) {
                if (item.getExpression() instanceof net.sf.jsqlparser.statement.select.AllColumns) {
                    throw new PlanRefusedException("the query selects *");
                }
                f.scan(item.getExpression());
            }
            for (Expression condition : Sublinks.conjuncts(ps.getWhere())) {
                Sublinks.Sublink link = Sublinks.hasSubquery(condition) ? Sublinks.analyze(condition, b, sources) : null;
                if (link != null) {
                    b.sublinks.add(link);
                } else {
                    b.plain.add(condition);
                    f.scan(condition);
                }
            }
            for (Expression condition : Sublinks.conjuncts(ps.getHaving())) {
                if (Sublinks.hasSubquery(condition) && ps.getGroupBy() != null) {
                    Sublinks.Sublink link = Sublinks.analyze(condition, b, sources);
                    if (link.correlated || !link.global() || !link.inner.sublinks.isEmpty()) {
                        throw new PlanRefusedException("a subquery in HAVING reads the outer query or has subqueries: " + condition);
                    }
                    b.havingSublinks.add(link);
                } else {
                    f.scan(condition);
                }
            }
            if (ps.getGroupBy() != null) {
                for (Object e : ps.getGroupBy().getGroupByExpressionList()) {
                    f.scan((Expression) e);
                }
            }
            f.refuse();
            b.aggregates = f.aggregates;
            if (selects.size() > 1 && (b.grouped() || f.aggregates)) {
                throw new PlanRefusedException("a UNION ALL branch aggregates or uses DISTINCT");
            }
            branches.add(b);
        }
        return new Parsed(branches);
    }

    private static void noLimit(Select s) throws PlanRefusedException {
        // LIMIT ALL (PostgreSQL prints LIMIT NULL so too) is no limit
        if (s.getLimit() != null && !s.getLimit().isLimitAll() || s.getOffset() != null || s.getFetch() != null) {
            throw new PlanRefusedException("the query uses LIMIT or OFFSET");
        }
    }

    static void join(Join j, Branch b, Source.Lookup sources) throws PlanRefusedException {
        if (j.isOuter() || j.isLeft() || j.isRight() || j.isFull()) {
            // OuterJoins rewrote the outer joins it can; these it refused with its reason
            throw new PlanRefusedException("the query uses an outer join");
        }
        if (j.isNatural() || j.isApply() || j.isSemi() || j.isStraight()) {
            throw new PlanRefusedException("the query uses a NATURAL, LATERAL or other special join");
        }
        j.setRightItem(walk(j.getRightItem(), b, sources));
        Findings f = new Findings();
        for (Expression on : j.getOnExpressions()) {
            f.scan(on);
        }
        f.refuse();
        if (f.aggregates) {
            throw new PlanRefusedException("a join condition aggregates");
        }
    }

    static FromItem walk(FromItem item, Branch b, Source.Lookup sources) throws PlanRefusedException {
        if (item instanceof Table t) {
            if (t.getSampleClause() != null || t.getPivot() != null) {
                throw new PlanRefusedException("the query samples or pivots " + t.getFullyQualifiedName());
            }
            Source source = sources.find(t.getFullyQualifiedName());
            String alias = t.getAlias() != null ? t.getAlias().getName() : t.getName();
            if (t.getAlias() != null && t.getAlias().getAliasColumns() != null) {
                throw new PlanRefusedException("the query renames the columns of " + t.getFullyQualifiedName());
            }
            t.setAlias(new Alias(alias, false));
            b.occurrences.add(new Occurrence(t, source, alias));
            return t;
        }
        if (item instanceof ParenthesedFromItem p && p.getAlias() == null) {
            p.setFromItem(walk(p.getFromItem(), b, sources));
            if (p.getJoins() != null) {
                for (Join j : p.getJoins()) {
                    join(j, b, sources);
                }
            }
            return p;
        }
        if (item instanceof ParenthesedSelect) {
            throw new PlanRefusedException("the query has a subquery in FROM");
        }
        throw new PlanRefusedException("the query reads " + item + ", which is not a table");
    }

    /** What an expression contains that decides whether and how it can be maintained. */
    private static final class Findings extends ExpressionVisitorAdapter<Void> {
        boolean aggregates;
        String refusal;

        void scan(Expression e) {
            if (e != null) {
                e.accept(this, null);
            }
        }

        void refuse() throws PlanRefusedException {
            if (refusal != null) {
                throw new PlanRefusedException(refusal);
            }
        }

        @Override
        public <S> Void visit(Function function, S context) {
            List<String> name = function.getMultipartName();
            if (name != null && name.size() == 1 && AGGREGATES.contains(name.get(0).toLowerCase(Locale.ROOT))) {
                aggregates = true;
            }
            return super.visit(function, context);
        }

        @Override
        public <S> Void visit(AnalyticExpression expression, S context) {
            if (expression.getType() == net.sf.jsqlparser.expression.AnalyticType.FILTER_ONLY) {
                // count(*) FILTER (WHERE ...): an aggregate, not a window
                aggregates = true;
                return super.visit(expression, context);
            }
            refusal = "the query uses window functions";
            return null;
        }

        @Override
        public <S> Void visit(net.sf.jsqlparser.statement.select.Select select, S context) {
            // JSqlParser's adapter hands a subquery (a ParenthesedSelect) to this overload, not to visit(ParenthesedSelect)
            refusal = "the query has subqueries (EXISTS, IN or scalar) outside the AND-ed conditions of WHERE";
            return null;
        }

        @Override
        public <S> Void visit(ExistsExpression exists, S context) {
            refusal = "the query has subqueries (EXISTS, IN or scalar) outside the AND-ed conditions of WHERE";
            return null;
        }
    }

    private static String firstLine(Exception e) {
        String m = String.valueOf(e.getMessage());
        int nl = m.indexOf('\n');
        return nl < 0 ? m : m.substring(0, nl);
    }
}
