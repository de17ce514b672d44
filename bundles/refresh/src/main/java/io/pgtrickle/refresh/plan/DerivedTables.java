package io.pgtrickle.refresh.plan;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.function.IntFunction;
import net.sf.jsqlparser.expression.Alias;
import net.sf.jsqlparser.schema.Table;
import net.sf.jsqlparser.statement.select.FromItem;
import net.sf.jsqlparser.statement.select.Join;
import net.sf.jsqlparser.statement.select.LateralSubSelect;
import net.sf.jsqlparser.statement.select.ParenthesedFromItem;
import net.sf.jsqlparser.statement.select.ParenthesedSelect;
import net.sf.jsqlparser.statement.select.PlainSelect;
import net.sf.jsqlparser.statement.select.Select;
import net.sf.jsqlparser.statement.select.SelectItem;
import net.sf.jsqlparser.statement.select.WithItem;
import net.sf.jsqlparser.util.TablesNamesFinder;

/**
 * Aggregating subqueries in the query's own FROM, and WITH queries of the query that aggregate,
 * cut out into derived tables. {@link QueryInliner} cannot pull them up (an aggregate is not a join),
 * and recomputing the whole query because of them would be FULL by another name. Instead each is
 * kept as a table of its own, maintained by a differential plan of its own (any strategy: running
 * totals, touched groups), and the query is planned over that table as over a captured source
 * whose changes are what the table's statement wrote in this refresh (R__52_derived_tables.sql).
 * TPC-H Q13 (counts per customer over an outer join, then customers per count) and Q15 (revenue
 * per supplier, then the suppliers with the largest) are such queries.
 *
 * <p>Only the query's own: a subquery in FROM nested in another subquery or in a sublink may be
 * correlated to the levels around it (the catalog's {@code inline_blocker} draws the same line). A
 * WITH query that aggregates may read one before it: its derived table is maintained after that
 * one's, reading its table and its changes as a source.
 */
final class DerivedTables {

    /**
     * One derived table.
     *
     * @param table   its name, as the rewritten query names it
     * @param query   the SELECT whose rows it holds (with the WITH queries it may read)
     * @param columns the names its columns take, when the query's alias or WITH entry renames them
     *                (null: the SELECT's own)
     */
    record Derived(String table, String query, List<String> columns) {

        /** Whether it holds the transaction's clock ({@link TemporalFilters}), not rows of the sources. */
        boolean clock() {
            return TemporalFilters.isClock(table);
        }
    }

    /**
     * The query reading derived tables instead, the derived tables in the order they are maintained,
     * and whether some hold a scalar subquery's value ({@link ScalarAggregates}).
     */
    record Extraction(String query, List<Derived> derived, boolean scalars) {
    }

    private DerivedTables() {
    }

    /**
     * Cuts the derived tables out of {@code query}; {@code names} gives the n-th (from 1) its
     * table's name; {@code indexes} tells which EXISTS subqueries read their keys by an index
     * ({@link ExistsCounts}; null: none is counted); {@code scalars}: whether uncorrelated scalar
     * aggregates are kept as derived tables ({@link ScalarAggregates}). A query with none, and no
     * select-list lookup joined ({@link SelectListAggregates}), comes back as given, byte for byte.
     */
    static Extraction extract(String query, IntFunction<String> names, ExistsCounts.Indexes indexes, boolean scalars)
            throws PlanRefusedException {
        Select top = DeltaPlanner.select(query);
        if (top == null) {
            return new Extraction(query, List.of(), false);
        }
        List<Derived> derived = new ArrayList<>();
        List<WithItem<?>> kept = new ArrayList<>();
        List<WithItem<?>> items = top.getWithItemsList() == null ? List.of() : new ArrayList<>(top.getWithItemsList());
        for (WithItem<?> w : items) {
            if (w.isRecursive()) {
                return new Extraction(query, List.of(), false); // WITH RECURSIVE: refused with its reason elsewhere
            }
        }
        for (WithItem<?> w : items) {
            if (w.getSelect() == null || !aggregating(w.getSelect().getSelect())) {
                kept.add(w);
                continue;
            }
            String table = names.apply(derived.size() + 1);
            List<String> columns = w.getWithItemList() == null ? null
                    : w.getWithItemList().stream().map(c -> c.getExpression().toString()).toList();
            derived.add(new Derived(table, body(w.getSelect().getSelect(), kept), columns));
            // every reference to it, in the query, its sublinks and the WITH queries after it
            String name = QueryInliner.norm(w.getAlias().getName());
            for (Table t : references(top)) {
                if (t.getSchemaName() == null && QueryInliner.norm(t.getName()).equals(name)) {
                    if (t.getAlias() == null) {
                        t.setAlias(new Alias(t.getName(), false));
                    }
                    rename(t, table);
                }
            }
        }
        if (top instanceof PlainSelect ps && ps.getFromItem() != null) {
            ps.setFromItem(fromItem(ps.getFromItem(), kept, derived, names));
            if (ps.getJoins() != null) {
                for (Join j : ps.getJoins()) {
                    j.setRightItem(fromItem(j.getRightItem(), kept, derived, names));
                }
            }
        }
        boolean joined = false;
        if (top instanceof PlainSelect ps) {
            ExistsCounts.rewrite(ps, derived, names, indexes);
            joined = SelectListAggregates.rewrite(ps, derived, names, indexes);
        }
        int before = derived.size();
        if (scalars && top instanceof PlainSelect ps) {
            ScalarAggregates.rewrite(ps, derived, names);
        }
        boolean scalar = derived.size() > before;
        if (top instanceof PlainSelect ps) {
            TemporalFilters.rewrite(ps, derived, names);
        }
        TemporalFilters.refuseRemaining(top, derived);
        if (derived.isEmpty() && !joined) {
            return new Extraction(query, List.of(), false);
        }
        top.setWithItemsList(kept.isEmpty() ? null : kept);
        // a derived table may read those before it (a WITH query that aggregates another), never one after
        for (int i = 0; i < derived.size(); i++) {
            for (int j = i; j < derived.size(); j++) {
                if (mentions(derived.get(i).query(), derived.get(j).table())) {
                    throw new PlanRefusedException("a subquery that aggregates reads itself or a later one");
                }
            }
        }
        return new Extraction(top.toString(), List.copyOf(derived), scalar);
    }

    /** The item, or the derived table that takes its place (inside parenthesised joins too). */
    private static FromItem fromItem(FromItem item, List<WithItem<?>> with, List<Derived> derived, IntFunction<String> names) {
        if (item instanceof ParenthesedFromItem p) {
            p.setFromItem(fromItem(p.getFromItem(), with, derived, names));
            if (p.getJoins() != null) {
                for (Join j : p.getJoins()) {
                    j.setRightItem(fromItem(j.getRightItem(), with, derived, names));
                }
            }
            return p;
        }
        if (!(item instanceof ParenthesedSelect p) || item instanceof LateralSubSelect || p.getAlias() == null
                || !aggregating(p.getSelect())) {
            return item;
        }
        String table = names.apply(derived.size() + 1);
        List<String> columns = p.getAlias().getAliasColumns() == null ? null
                : p.getAlias().getAliasColumns().stream().map(c -> c.name).toList();
        derived.add(new Derived(table, body(p.getSelect(), with), columns));
        Table t = new Table();
        rename(t, table);
        t.setAlias(new Alias(p.getAlias().getName(), false));
        return t;
    }

    /**
     * A plain SELECT that groups (GROUP BY, HAVING, aggregates, DISTINCT) and does nothing the
     * differential plans refuse anyway (ORDER BY, LIMIT, DISTINCT ON: the catalog says why).
     */
    private static boolean aggregating(Select s) {
        if (!(s instanceof PlainSelect ps) || ps.getFromItem() == null || ps.getOrderByElements() != null
                || ps.getLimit() != null || ps.getOffset() != null || ps.getFetch() != null
                || (ps.getDistinct() != null && ps.getDistinct().getOnSelectItems() != null)) {
            return false;
        }
        if (ps.getGroupBy() != null || ps.getHaving() != null || ps.getDistinct() != null) {
            return true;
        }
        for (SelectItem<?> item : ps.getSelectItems()) {
            if (DeltaPlanner.aggregates(item.getExpression())) {
                return true;
            }
        }
        return false;
    }

    /** The derived table's query: its SELECT with the query's WITH queries before its own, which it may read. */
    private static String body(Select select, List<WithItem<?>> with) {
        List<String> items = new ArrayList<>(with.stream().map(Object::toString).toList());
        if (select.getWithItemsList() != null) {
            items.addAll(select.getWithItemsList().stream().map(Object::toString).toList());
            select.setWithItemsList(null);
        }
        return (items.isEmpty() ? "" : "WITH " + String.join(", ", items) + " ") + select;
    }

    private static void rename(Table t, String qualified) {
        int dot = qualified.indexOf('.');
        t.setSchemaName(qualified.substring(0, dot));
        t.setName(qualified.substring(dot + 1));
    }

    /** A rewrite of one SELECT's own clauses. */
    @FunctionalInterface
    interface SelectRewrite {
        void apply(PlainSelect ps) throws PlanRefusedException;
    }

    /**
     * Applies {@code rewrite} to the subqueries in {@code ps}'s FROM that {@link QueryInliner} pulls
     * up into it (inside parenthesised joins too, not LATERAL ones), then to {@code ps} itself: what
     * is AND-ed in their WHERE lands in its WHERE.
     */
    static void pulledUp(PlainSelect ps, SelectRewrite rewrite) throws PlanRefusedException {
        pulledUp(ps.getFromItem(), rewrite);
        if (ps.getJoins() != null) {
            for (Join j : ps.getJoins()) {
                pulledUp(j.getRightItem(), rewrite);
            }
        }
        rewrite.apply(ps);
    }

    private static void pulledUp(FromItem item, SelectRewrite rewrite) throws PlanRefusedException {
        if (item instanceof ParenthesedFromItem p) {
            pulledUp(p.getFromItem(), rewrite);
            if (p.getJoins() != null) {
                for (Join j : p.getJoins()) {
                    pulledUp(j.getRightItem(), rewrite);
                }
            }
        } else if (item instanceof ParenthesedSelect p && !(item instanceof LateralSubSelect) && p.getSelect() instanceof PlainSelect inner) {
            pulledUp(inner, rewrite);
        }
    }

    /** Whether SQL text names the table (a whole word: derived_1_1 is not derived_1_10). */
    static boolean mentions(String sql, String table) {
        int from = 0;
        String lower = sql.toLowerCase(Locale.ROOT);
        while (true) {
            int at = lower.indexOf(table, from);
            if (at < 0) {
                return false;
            }
            int end = at + table.length();
            if (end >= lower.length() || !(Character.isLetterOrDigit(lower.charAt(end)) || lower.charAt(end) == '_')) {
                return true;
            }
            from = end;
        }
    }

    /** Every table reference of the statement: FROM items and joins at every level, sublinks, WITH queries. */
    private static List<Table> references(Select s) {
        List<Table> found = new ArrayList<>();
        TablesNamesFinder<Void> finder = new TablesNamesFinder<>() {
            @Override
            public <S> Void visit(Table table, S context) {
                found.add(table);
                return super.visit(table, context);
            }
        };
        finder.getTables((net.sf.jsqlparser.statement.Statement) s);
        return found;
    }
}
