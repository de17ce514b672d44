package io.pgtrickle.refresh.plan;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.function.IntFunction;
import java.util.stream.Collectors;
import net.sf.jsqlparser.expression.Alias;
import net.sf.jsqlparser.expression.Expression;
import net.sf.jsqlparser.expression.ExpressionVisitorAdapter;
import net.sf.jsqlparser.expression.Function;
import net.sf.jsqlparser.expression.operators.relational.EqualsTo;
import net.sf.jsqlparser.schema.Column;
import net.sf.jsqlparser.schema.Table;
import net.sf.jsqlparser.statement.select.FromItem;
import net.sf.jsqlparser.statement.select.Join;
import net.sf.jsqlparser.statement.select.ParenthesedSelect;
import net.sf.jsqlparser.statement.select.PlainSelect;
import net.sf.jsqlparser.statement.select.SelectItem;

/**
 * A scalar subquery in the select list that aggregates one table correlated by key equalities
 * ({@code (SELECT count(*) FROM comments c WHERE c.post_id = p.id AND c.visible) AS comments})
 * reads instead a derived table of that aggregate per key ({@code SELECT c.post_id AS key_1,
 * count(*) AS scalar_value FROM comments c WHERE c.visible GROUP BY c.post_id}, kept as running
 * totals or touched groups), joined to the query by a LEFT JOIN on the keys: a row without any
 * subquery row meets no key, and its value is what the subquery gives over no rows (0 for
 * {@code count}, NULL for {@code sum}, {@code avg}, {@code min}, {@code max}). The query is then
 * an outer join ({@link OuterJoins}): a change of the subquery's table changes the derived table's
 * rows of its keys, and the query's rows of those keys follow, where a subquery in the select list
 * left the whole query recomputed. A subquery that looks up one column of one table by columns
 * holding a unique key of it ({@code (SELECT u.name FROM users u WHERE u.id = p.author)}) is that
 * table LEFT JOINed with the subquery's conditions as ON.
 *
 * <p>Only the select list of a query that does not group or aggregate, a subquery over one table with no grouping, DISTINCT,
 * ORDER BY, LIMIT, window or subquery of its own, one call of one of those aggregates, and a WHERE
 * of equalities between a column of its table and an expression of the query's tables (at least
 * one) and conditions of its own table alone. Comma joins of the query become CROSS JOINs (the
 * same rows), so that the LEFT JOIN's condition may read every table before it.
 */
final class SelectListAggregates {

    /** The aggregates whose value over no rows is known: count's is 0, the others' NULL. */
    private static final Set<String> AGGREGATES = Set.of("count", "sum", "avg", "min", "max");

    private SelectListAggregates() {
    }

    /**
     * Rewrites the qualifying select items of {@code ps} in place, adding their derived tables to
     * {@code derived} ({@code names} gives the n-th, from 1, its name); {@code indexes} tells which
     * columns hold a unique key of a table (null: lookups are left alone). Returns whether it
     * rewrote any (a lookup adds no derived table).
     */
    static boolean rewrite(PlainSelect ps, List<DerivedTables.Derived> derived, IntFunction<String> names, ExistsCounts.Indexes indexes)
            throws PlanRefusedException {
        // grouped, the derived table's value would have to be a group key or aggregated
        if (ps.getFromItem() == null || ps.getGroupBy() != null || ps.getHaving() != null
                || ps.getSelectItems().stream().anyMatch(i -> DeltaPlanner.aggregates(i.getExpression()))) {
            return false;
        }
        Set<String> outer = new HashSet<>();
        if (!alias(ps.getFromItem(), outer)) {
            return false;
        }
        if (ps.getJoins() != null) {
            for (Join j : ps.getJoins()) {
                if (!alias(j.getRightItem(), outer)) {
                    return false;
                }
            }
        }
        boolean rewritten = false;
        for (SelectItem<?> item : ps.getSelectItems()) {
            Expression e = Sublinks.unparen(item.getExpression());
            while (e instanceof ParenthesedSelect p && p.getSelect() instanceof ParenthesedSelect inner) {
                e = inner;
            }
            if (!(e instanceof ParenthesedSelect sub) || !(sub.getSelect() instanceof PlainSelect inner)) {
                continue;
            }
            Shape shape = shape(inner, outer);
            Lookup lookup = shape == null && indexes != null ? lookup(inner, outer, indexes) : null;
            if (shape == null && lookup == null || !qualified(ps)) {
                continue;
            }
            if (ps.getJoins() != null) {
                for (Join j : ps.getJoins()) {
                    if (j.isSimple()) {
                        // FROM a, b LEFT JOIN d ON d.k = a.x would join d to b alone
                        j.setSimple(false);
                        j.setCross(true);
                    }
                }
            }
            Join join = new Join();
            join.setLeft(true);
            String name;
            String value;
            if (shape != null) {
                String table = names.apply(derived.size() + 1);
                String alias = table.substring(table.lastIndexOf('.') + 1);
                List<String> select = new ArrayList<>();
                List<String> groupBy = new ArrayList<>();
                List<String> on = new ArrayList<>();
                for (int k = 0; k < shape.innerKeys.size(); k++) {
                    select.add(shape.innerKeys.get(k) + " AS key_" + (k + 1));
                    groupBy.add(shape.innerKeys.get(k).toString());
                    on.add(alias + ".key_" + (k + 1) + " = " + shape.outerKeys.get(k));
                }
                select.add(shape.aggregate + " AS " + ScalarAggregates.COLUMN);
                derived.add(new DerivedTables.Derived(table, "SELECT " + String.join(", ", select) + " FROM " + inner.getFromItem()
                        + (shape.local.isEmpty() ? "" : " WHERE " + shape.local.stream().map(c -> "(" + c + ")").collect(Collectors.joining(" AND ")))
                        + " GROUP BY " + String.join(", ", groupBy), null));
                join.setRightItem(new Table(table.substring(0, table.lastIndexOf('.')), alias).withAlias(new Alias(alias, false)));
                join.addOnExpression(DeltaPlanner.parseExpression(String.join(" AND ", on)));
                name = shape.function;
                String v = alias + "." + ScalarAggregates.COLUMN;
                value = shape.function.equals("count") ? "coalesce(" + v + ", 0)" : v;
            } else {
                // the looked-up table itself, its conditions in ON: at most one row matches (a unique key)
                join.setRightItem(inner.getFromItem());
                join.addOnExpression(inner.getWhere());
                outer.add(lookup.alias);
                name = lookup.column.getColumnName();
                value = lookup.column.toString();
            }
            ps.addJoins(join);
            @SuppressWarnings("unchecked")
            SelectItem<Expression> replaced = (SelectItem<Expression>) item;
            replaced.setExpression(DeltaPlanner.parseExpression(value));
            replaced.setAlias(new Alias(item.getAlias() != null ? item.getAlias().getName() : name, true));
            rewritten = true;
        }
        return rewritten;
    }

    /** A lookup's parts: the looked-up table's alias and the column it returns. */
    private record Lookup(String alias, Column column) {
    }

    /**
     * A subquery returning one column of one table whose correlated columns hold a unique key
     * ({@code (SELECT u.name FROM users u WHERE u.id = p.author)}): at most one row, so a LEFT JOIN
     * gives the same value (NULL without a match), where without a unique key the subquery could
     * fail with more than one row and the join would repeat the query's row.
     */
    private static Lookup lookup(PlainSelect inner, Set<String> outer, ExistsCounts.Indexes indexes) {
        Table t = oneTable(inner);
        if (t == null || !(inner.getSelectItems().get(0).getExpression() instanceof Column column)) {
            return null;
        }
        String own = QueryInliner.knownAs(t);
        Correlation k = outer.contains(own) || !reads(column, Set.of(own)) ? null : correlation(inner, own, outer);
        if (k == null || !indexes.uniqueOn(t.getFullyQualifiedName(), k.innerKeys.stream().map(Column::getColumnName).collect(Collectors.toSet()))) {
            return null;
        }
        return new Lookup(own, column);
    }

    /** The subquery's one table, when it reads one table and returns one value, and nothing else (grouping, DISTINCT, LIMIT, ...). */
    private static Table oneTable(PlainSelect inner) {
        if (!(inner.getFromItem() instanceof Table t) || inner.getJoins() != null || inner.getGroupBy() != null || inner.getHaving() != null
                || inner.getDistinct() != null || inner.getOrderByElements() != null || inner.getLimit() != null || inner.getOffset() != null
                || inner.getFetch() != null || inner.getWithItemsList() != null || inner.getWindowDefinitions() != null
                || inner.getSelectItems().size() != 1 || inner.getWhere() == null) {
            return null;
        }
        return t;
    }

    /** A subquery's WHERE: equalities of its columns with expressions of the query's tables, and conditions of its own table. */
    private record Correlation(List<Column> innerKeys, List<Expression> outerKeys, List<Expression> local) {
    }

    /** The correlation, or null when a condition is neither, or none is an equality. */
    private static Correlation correlation(PlainSelect inner, String own, Set<String> outer) {
        List<Column> innerKeys = new ArrayList<>();
        List<Expression> outerKeys = new ArrayList<>();
        List<Expression> local = new ArrayList<>();
        for (Expression c : Sublinks.conjuncts(inner.getWhere())) {
            if (Sublinks.hasSubquery(c)) {
                return null;
            }
            Expression u = Sublinks.unparen(c);
            if (u instanceof EqualsTo eq && Sublinks.unparen(eq.getLeftExpression()) instanceof Column l && reads(l, Set.of(own))
                    && reads(eq.getRightExpression(), outer)) {
                innerKeys.add(l);
                outerKeys.add(eq.getRightExpression());
            } else if (u instanceof EqualsTo eq && Sublinks.unparen(eq.getRightExpression()) instanceof Column r && reads(r, Set.of(own))
                    && reads(eq.getLeftExpression(), outer)) {
                innerKeys.add(r);
                outerKeys.add(eq.getLeftExpression());
            } else if (reads(u, Set.of(own))) {
                local.add(u);
            } else {
                return null;
            }
        }
        return innerKeys.isEmpty() ? null : new Correlation(innerKeys, outerKeys, local);
    }

    /**
     * Qualifies the bare columns of a query of one FROM item (PostgreSQL prints them bare) in its
     * select list and WHERE, so that they stay its columns beside the derived tables joined to it;
     * false when some cannot be (a bare column in a subquery, DISTINCT ON). ORDER BY may name a
     * result column and is left alone.
     */
    private static boolean qualified(PlainSelect ps) {
        if (ps.getJoins() != null && !ps.getJoins().isEmpty()) {
            return true; // several FROM items: PostgreSQL qualifies every column (their analysis refuses what is not)
        }
        if (ps.getDistinct() != null && ps.getDistinct().getOnSelectItems() != null) {
            return false;
        }
        String name = ps.getFromItem().getAlias() != null ? ps.getFromItem().getAlias().getName()
                : ps.getFromItem() instanceof Table t ? t.getName() : null;
        if (name == null) {
            return false;
        }
        QueryInliner.References refs = new QueryInliner.References(QueryInliner.norm(name), true);
        ps.getSelectItems().forEach(i -> refs.scan(i.getExpression()));
        refs.scan(ps.getWhere());
        if (refs.unresolved) {
            return false;
        }
        for (Column c : refs.found) {
            if (c.getTable() == null || c.getTable().getName() == null) {
                c.setTable(new Table(name));
            }
        }
        return true;
    }

    /** Adds the name a FROM item is known by; false when it has none (nothing is rewritten then). */
    private static boolean alias(FromItem item, Set<String> names) {
        if (item instanceof Table t) {
            names.add(QueryInliner.knownAs(t));
            return true;
        }
        if (item.getAlias() != null) {
            names.add(QueryInliner.norm(item.getAlias().getName()));
            return true;
        }
        return false;
    }

    /** A qualifying subquery's parts. */
    private record Shape(String function, String aggregate, List<Column> innerKeys, List<Expression> outerKeys, List<Expression> local) {
    }

    private static Shape shape(PlainSelect inner, Set<String> outer) {
        Table t = oneTable(inner);
        if (t == null || !(inner.getSelectItems().get(0).getExpression() instanceof Function f) || f.getName() == null
                || !AGGREGATES.contains(f.getName().toLowerCase(Locale.ROOT)) || Sublinks.hasSubquery(f)) {
            return null;
        }
        String own = QueryInliner.knownAs(t);
        Correlation k = outer.contains(own) || !reads(f, Set.of(own)) ? null : correlation(inner, own, outer);
        if (k == null) {
            return null;
        }
        return new Shape(f.getName().toLowerCase(Locale.ROOT), f.toString(), k.innerKeys, k.outerKeys, k.local);
    }

    /**
     * Whether every column of the expression is qualified by one of {@code aliases}, and it has
     * at least one column. An unqualified column's table is not certain.
     */
    private static boolean reads(Expression e, Set<String> aliases) {
        boolean[] any = {false};
        boolean[] foreign = {false};
        e.accept(new ExpressionVisitorAdapter<Void>() {
            @Override
            public <S> Void visit(Column column, S context) {
                any[0] = true;
                if (column.getTable() == null || column.getTable().getName() == null
                        || !aliases.contains(QueryInliner.norm(column.getTable().getName()))) {
                    foreign[0] = true;
                }
                return null;
            }
        }, null);
        return !foreign[0] && (any[0] || e instanceof Function);
    }
}
