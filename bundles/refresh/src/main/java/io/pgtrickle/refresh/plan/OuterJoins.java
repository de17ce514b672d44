package io.pgtrickle.refresh.plan;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import net.sf.jsqlparser.expression.Expression;
import net.sf.jsqlparser.schema.Column;
import net.sf.jsqlparser.schema.Table;
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
 * Outer joins as the union of the forms the differential strategies already maintain. The rows of
 * {@code L LEFT JOIN R ON c} are those of {@code L JOIN R ON c}, and the rows of L for which
 * {@code NOT EXISTS (SELECT FROM R WHERE c)}, with R's columns NULL. So a query with outer joins is
 * rewritten into one UNION ALL branch per choice (matched, or padded) of each outer join; a RIGHT
 * JOIN pads its left side, a FULL JOIN has both padded branches. The change of a padded branch is
 * then the change of a NOT EXISTS subquery: rows of L appear when their last match goes and vanish
 * when their first arrives (the sublinks' flip term), which is exactly the NULL-padded row's life,
 * and a later join reading R's columns reads NULLs there, as in the query.
 *
 * <p>Why a rewrite and not an operator of its own: the terms, the old states and the verdict flips
 * are already proven (randomized suites) for inner joins and NOT EXISTS; the rewrite adds no new
 * delta rule to trust, only the identity above (Larson and Zhou's outer-join decomposition).
 */
final class OuterJoins {

    /** Beyond this many branches (three LEFT JOINs, or a FULL JOIN and one LEFT) a plan has too many terms. */
    static final int MAX_BRANCHES = 8;

    private enum Choice { MATCHED, RIGHT_PADDED, LEFT_PADDED }

    private OuterJoins() {
    }

    /**
     * The query with its outer joins rewritten into UNION ALL branches, or the query itself when it
     * has none (or is not a form the planner maintains anyway: the planner then says why).
     */
    static String rewrite(String query, Source.Lookup sources) throws PlanRefusedException {
        Select select = parse(query);
        if (select == null || select.getWithItemsList() != null && !select.getWithItemsList().isEmpty()) {
            return query;
        }
        List<PlainSelect> selects = new ArrayList<>();
        if (select instanceof SetOperationList union) {
            for (SetOperation op : union.getOperations()) {
                if (!(op instanceof UnionOp u) || !u.isAll()) {
                    return query;
                }
            }
            for (Select s : union.getSelects()) {
                Select inner = s instanceof ParenthesedSelect p ? p.getSelect() : s;
                if (!(inner instanceof PlainSelect ps)) {
                    return query;
                }
                selects.add(ps);
            }
        } else if (select instanceof PlainSelect ps) {
            selects.add(ps);
        } else {
            return query;
        }
        boolean any = false;
        List<String> branches = new ArrayList<>();
        for (PlainSelect ps : selects) {
            List<Join> outer = outerJoins(ps);
            if (outer == null) {
                branches.add(ps.toString());
                continue;
            }
            any = true;
            if (ps.getGroupBy() != null || ps.getDistinct() != null || ps.getHaving() != null
                    || ps.getSelectItems().stream().anyMatch(i -> DeltaPlanner.aggregates(i.getExpression()))) {
                throw new PlanRefusedException("the query aggregates or uses DISTINCT over an outer join");
            }
            List<List<Choice>> combinations = new ArrayList<>(List.of(List.of()));
            for (int j = 0; j < outer.size(); j++) {
                List<Choice> options = outer.get(j).isLeft() ? List.of(Choice.MATCHED, Choice.RIGHT_PADDED)
                        : outer.get(j).isRight() ? List.of(Choice.MATCHED, Choice.LEFT_PADDED)
                        : List.of(Choice.MATCHED, Choice.RIGHT_PADDED, Choice.LEFT_PADDED);
                List<List<Choice>> next = new ArrayList<>();
                for (List<Choice> c : combinations) {
                    for (Choice o : options) {
                        List<Choice> longer = new ArrayList<>(c);
                        longer.add(o);
                        next.add(longer);
                    }
                }
                combinations = next;
            }
            if (combinations.size() > MAX_BRANCHES) {
                throw new PlanRefusedException("the query has more outer joins than the engine expands (" + combinations.size()
                        + " matched and padded combinations, at most " + MAX_BRANCHES + ")");
            }
            String text = ps.toString();
            for (List<Choice> c : combinations) {
                branches.add(branch(text, c, sources));
            }
        }
        return any ? String.join(" UNION ALL ", branches) : query;
    }

    /**
     * For a query that groups (GROUP BY, or DISTINCT) over outer joins: a UNION ALL of SELECTs whose
     * rows are the group keys of the query's rows, its outer joins rewritten (see {@link #rewrite}),
     * from which the GROUPS strategy finds the groups a change touches; PostgreSQL recomputes those
     * groups from the query as it is. Null when the query has no outer join or does not group.
     */
    static String groupKeys(String query, Source.Lookup sources) throws PlanRefusedException {
        Select select = parse(query);
        if (!(select instanceof PlainSelect ps) || select.getWithItemsList() != null && !select.getWithItemsList().isEmpty()
                || outerJoins(ps) == null) {
            return null;
        }
        boolean aggregates = ps.getSelectItems().stream().anyMatch(i -> DeltaPlanner.aggregates(i.getExpression()))
                || ps.getHaving() != null;
        if (ps.getGroupBy() == null && ps.getDistinct() == null) {
            if (aggregates) {
                // one group of everything: recomputing it is recomputing the query
                throw new PlanRefusedException("the query aggregates over an outer join without GROUP BY");
            }
            return null;
        }
        if (ps.getDistinct() != null && ps.getDistinct().getOnSelectItems() != null
                || ps.getGroupBy() != null && ps.getGroupBy().getGroupingSets() != null && !ps.getGroupBy().getGroupingSets().isEmpty()) {
            return null; // the planner says why not
        }
        if (ps.getHaving() != null && Sublinks.hasSubquery(ps.getHaving())) {
            throw new PlanRefusedException("the query has a subquery in HAVING over an outer join");
        }
        List<Expression> keys = new DeltaPlanner.Branch(ps).groupKeys();
        List<SelectItem<?>> items = new ArrayList<>();
        keys.forEach(k -> items.add(SelectItem.from(k)));
        ps.setSelectItems(items);
        ps.setGroupByElement(null);
        ps.setHaving(null);
        ps.setDistinct(null);
        return rewrite(ps.toString(), sources);
    }

    /**
     * Whether the group keys of a grouped query over outer joins ({@link #groupKeys}) can be touched
     * only through its matched rows: every key is a qualified column of a table on no nullable side
     * of an outer join, and WHERE has no subquery of its own. A padded row then appears or goes only
     * when a changed row of the nullable side matched or matches its preserved row, and the matched
     * branch's change term that joins the two finds that row's key: the padded branch's flip terms
     * (whose rows' NOT EXISTS, written by {@link #rewrite}, changed its verdict) find nothing more,
     * and were most of the refresh of TPC-H Q13 (orders counted per changed customer a second time).
     */
    static boolean keysFromPreservedSide(String query, List<Expression> keys) {
        if (!(parse(query) instanceof PlainSelect ps) || ps.getWhere() != null && Sublinks.hasSubquery(ps.getWhere())) {
            return false;
        }
        Map<String, Table> all = new HashMap<>();
        Map<String, Table> nullable = new HashMap<>();
        List<Join> joins = flatten(ps);
        collect(ps.getFromItem(), all);
        for (Join j : joins) {
            collect(j.getRightItem(), all);
            if (j.isLeft() || j.isFull()) {
                collect(j.getRightItem(), nullable);
            }
            if (j.isRight() || j.isFull()) {
                collect(ps.getFromItem(), nullable);
            }
        }
        for (Expression k : keys) {
            if (!(KeyedRecompute.unwrapped(k) instanceof Column c) || c.getTable() == null || c.getTable().getName() == null) {
                return false;
            }
            String table = QueryInliner.norm(c.getTable().getName());
            if (!all.containsKey(table) || nullable.containsKey(table)) {
                return false;
            }
        }
        return true;
    }

    /** The query as a plain SELECT, as JSqlParser reads it (the caller knows it is one). */
    static PlainSelect plainSelect(String query) {
        return (PlainSelect) parse(query);
    }

    /** The outer joins of a SELECT's FROM in order (refusing the forms not rewritten), or null when there are none. */
    private static List<Join> outerJoins(PlainSelect ps) throws PlanRefusedException {
        List<Join> outer = new ArrayList<>();
        List<Join> joins = flatten(ps);
        for (int j = 0; j < joins.size(); j++) {
            Join join = joins.get(j);
            if (!isOuter(join)) {
                if (nestsOuterJoin(join.getRightItem())) {
                    throw new PlanRefusedException("the query nests an outer join inside the right side of a join");
                }
                continue;
            }
            if (join.isNatural() || join.getUsingColumns() != null && !join.getUsingColumns().isEmpty()) {
                throw new PlanRefusedException("the query uses an outer join with USING or NATURAL");
            }
            if (join.getOnExpressions() == null || join.getOnExpressions().isEmpty()) {
                throw new PlanRefusedException("the query uses an outer join without ON");
            }
            if (!tables(join.getRightItem())) {
                throw new PlanRefusedException("the query has a subquery in FROM on a side of an outer join");
            }
            if ((join.isRight() || join.isFull()) && (j > 0 || !(ps.getFromItem() instanceof Table))) {
                // the padded side would be the join of everything before it
                throw new PlanRefusedException("the query uses a RIGHT or FULL join after other joins");
            }
            if (!join.isLeft() && !join.isRight() && !join.isFull()) {
                throw new PlanRefusedException("the query uses an outer join of a kind the engine does not know");
            }
            outer.add(join);
        }
        if (!outer.isEmpty() && !(ps.getFromItem() instanceof Table)) {
            throw new PlanRefusedException("the query has a subquery in FROM on a side of an outer join");
        }
        return outer.isEmpty() ? null : outer;
    }

    /**
     * Makes the FROM clause a first item and a flat list of joins: PostgreSQL prints joins nested
     * to the left ({@code FROM ((a JOIN b ON ..) LEFT JOIN c ON ..)}), which is the same as the
     * list. Returns the list (also set on {@code ps}).
     */
    private static List<Join> flatten(PlainSelect ps) {
        List<Join> joins = new ArrayList<>();
        FromItem first = ps.getFromItem();
        while (first instanceof ParenthesedFromItem p && p.getAlias() == null && p.getPivot() == null && p.getUnPivot() == null) {
            List<Join> inner = p.getJoins() == null ? List.of() : p.getJoins();
            joins.addAll(0, inner);
            first = p.getFromItem();
        }
        if (ps.getJoins() != null) {
            joins.addAll(ps.getJoins());
        }
        ps.setFromItem(first);
        ps.setJoins(joins.isEmpty() ? null : joins);
        return joins;
    }

    private static boolean isOuter(Join j) {
        return j.isOuter() || j.isLeft() || j.isRight() || j.isFull();
    }

    private static boolean nestsOuterJoin(FromItem item) {
        if (item instanceof ParenthesedFromItem p) {
            if (nestsOuterJoin(p.getFromItem())) {
                return true;
            }
            for (Join j : p.getJoins() == null ? List.<Join>of() : p.getJoins()) {
                if (isOuter(j) || nestsOuterJoin(j.getRightItem())) {
                    return true;
                }
            }
        }
        return false;
    }

    /** Whether an item is a table or a parenthesised inner join of tables (which a NOT EXISTS can read as it is). */
    private static boolean tables(FromItem item) {
        if (item instanceof Table) {
            return true;
        }
        if (item instanceof ParenthesedFromItem p && p.getAlias() == null && tables(p.getFromItem())) {
            for (Join j : p.getJoins() == null ? List.<Join>of() : p.getJoins()) {
                if (isOuter(j) || !tables(j.getRightItem())) {
                    return false;
                }
            }
            return true;
        }
        return false;
    }

    /** The tables of an item that {@link #tables} accepts, by the name the query uses for each. */
    private static void collect(FromItem item, Map<String, Table> into) {
        if (item instanceof Table t) {
            into.put(QueryInliner.knownAs(t), t);
        } else if (item instanceof ParenthesedFromItem p) {
            collect(p.getFromItem(), into);
            for (Join j : p.getJoins() == null ? List.<Join>of() : p.getJoins()) {
                collect(j.getRightItem(), into);
            }
        }
    }

    /** One branch: each outer join matched or padded as {@code choices} says, the padded tables' columns NULL. */
    private static String branch(String text, List<Choice> choices, Source.Lookup sources) throws PlanRefusedException {
        PlainSelect ps = (PlainSelect) parse(text);
        List<Join> joins = new ArrayList<>(flatten(ps));
        Map<String, Table> padded = new LinkedHashMap<>();
        List<String> absent = new ArrayList<>();
        int o = 0;
        for (int j = 0; j < joins.size(); j++) {
            Join join = joins.get(j);
            if (!isOuter(join)) {
                continue;
            }
            String on = join.getOnExpressions().stream().map(e -> "(" + e + ")").collect(Collectors.joining(" AND "));
            switch (choices.get(o++)) {
                case MATCHED -> {
                    join.setOuter(false);
                    join.setLeft(false);
                    join.setRight(false);
                    join.setFull(false);
                    join.setInner(true);
                }
                case RIGHT_PADDED -> {
                    absent.add("NOT EXISTS (SELECT 1 FROM " + join.getRightItem() + " WHERE " + on + ")");
                    collect(join.getRightItem(), padded);
                    joins.remove(j--);
                }
                case LEFT_PADDED -> {
                    // only the first join of a FROM whose first item is a table (see outerJoins)
                    absent.add("NOT EXISTS (SELECT 1 FROM " + ps.getFromItem() + " WHERE " + on + ")");
                    collect(ps.getFromItem(), padded);
                    ps.setFromItem(join.getRightItem());
                    joins.remove(j--);
                }
            }
        }
        ps.setJoins(joins.isEmpty() ? null : joins);
        if (!absent.isEmpty()) {
            String where = (ps.getWhere() == null ? "" : "(" + ps.getWhere() + ") AND ") + String.join(" AND ", absent);
            ps.setWhere(DeltaPlanner.parseExpression(where));
        }
        // every reference to a padded table, in this SELECT and the subqueries it nests (not those
        // that name the table again, as the NOT EXISTS above do), reads NULL of the column's type
        Map<Column, String> nulls = new IdentityHashMap<>(); // equal columns are distinct nodes
        for (Map.Entry<String, Table> p : padded.entrySet()) {
            QueryInliner.References refs = new QueryInliner.References(p.getKey(), false);
            QueryInliner.clauses(ps, refs::scan);
            if (refs.unresolved) {
                throw new PlanRefusedException("the engine cannot tell which columns of the outer join's " + p.getValue()
                        + " the query reads");
            }
            Source source = sources.find(p.getValue().getFullyQualifiedName());
            for (Column c : refs.found) {
                int at = indexOf(source.columns(), c.getColumnName());
                if (at < 0) {
                    throw new PlanRefusedException("the query reads " + c + ", which is not a captured column of " + source.name());
                }
                nulls.put(c, "NULL::" + source.types().get(at));
            }
        }
        nulls.forEach((c, typed) -> {
            c.setTable(null);
            c.setColumnName(typed);
        });
        return ps.toString();
    }

    private static int indexOf(List<String> columns, String name) {
        String wanted = QueryInliner.norm(name);
        for (int i = 0; i < columns.size(); i++) {
            if (QueryInliner.norm(columns.get(i)).equals(wanted)) {
                return i;
            }
        }
        return -1;
    }

    private static Select parse(String query) {
        return DeltaPlanner.select(query);
    }
}
