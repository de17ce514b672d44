package io.pgtrickle.refresh.plan;

import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.function.IntFunction;
import net.sf.jsqlparser.expression.Expression;
import net.sf.jsqlparser.expression.ExpressionVisitorAdapter;
import net.sf.jsqlparser.expression.NotExpression;
import net.sf.jsqlparser.expression.operators.relational.EqualsTo;
import net.sf.jsqlparser.expression.operators.relational.ExistsExpression;
import net.sf.jsqlparser.expression.operators.relational.InExpression;
import net.sf.jsqlparser.schema.Column;
import net.sf.jsqlparser.schema.Table;
import net.sf.jsqlparser.statement.select.ParenthesedSelect;
import net.sf.jsqlparser.statement.select.PlainSelect;
import net.sf.jsqlparser.statement.select.SelectItem;

/**
 * {@code EXISTS}, {@code NOT EXISTS}, {@code IN} and {@code NOT IN} over one table, correlated by
 * key equalities only (or not at all, for IN), whose keys (IN's tested column among them) no index
 * of that table leads with, read instead a derived table of the subquery's rows counted per key
 * ({@code SELECT k, count(*) FROM t WHERE <its own conditions> GROUP BY k}), kept as running
 * totals. The subquery's verdict for an outer row is whether its keys have a row there; for IN and
 * NOT IN, the derived table has the same distinct values, NULL included, per correlation. A refresh
 * then looks up the changed keys' counts by the derived table's key index, where it counted the
 * subquery's rows of those keys in the table itself: without an index on the keys, a read of the
 * whole table (the engine benchmark's customers with an order over 999: as long as REFRESH
 * MATERIALIZED VIEW at 0.1% of the orders changed). With such an index the table is read by it,
 * and the derived table would only add its own maintenance.
 */
final class ExistsCounts {

    /** What the indexes of a table (as the query names it) tell the planner. */
    @FunctionalInterface
    interface Indexes {
        /** Whether it has an index whose first column is one of the columns. */
        boolean leadsWithOneOf(String table, Set<String> columns);

        /** Whether the columns hold a unique key: a valid, immediate unique index on some of them alone. */
        default boolean uniqueOn(String table, Set<String> columns) {
            return false;
        }
    }

    private ExistsCounts() {
    }

    /**
     * Rewrites the qualifying conditions of {@code ps}'s WHERE in place, adding their derived tables
     * to {@code derived} ({@code names} gives the n-th, from 1, its name).
     */
    static void rewrite(PlainSelect ps, List<DerivedTables.Derived> derived, IntFunction<String> names, Indexes indexes)
            throws PlanRefusedException {
        if (ps.getWhere() == null || indexes == null) {
            return;
        }
        for (Expression c : Sublinks.conjuncts(ps.getWhere())) {
            Expression e = Sublinks.unparen(c);
            while (e instanceof NotExpression n) {
                e = Sublinks.unparen(n.getExpression());
            }
            Expression right = e instanceof ExistsExpression exists ? exists.getRightExpression()
                    : e instanceof InExpression in && !Sublinks.hasSubquery(in.getLeftExpression()) ? in.getRightExpression() : null;
            if (!(right != null && Sublinks.unparen(right) instanceof ParenthesedSelect sub) || !(sub.getSelect() instanceof PlainSelect inner)) {
                continue;
            }
            Counted counted = counted(inner, e instanceof InExpression);
            if (counted == null || indexes.leadsWithOneOf(counted.table.getFullyQualifiedName(), counted.keyColumns)) {
                continue;
            }
            String table = names.apply(derived.size() + 1);
            List<String> keys = new ArrayList<>(counted.keyColumns);
            String count = "rows_counted";
            while (keys.contains(count)) {
                count += "_";
            }
            String alias = counted.alias;
            derived.add(new DerivedTables.Derived(table, "SELECT " + String.join(", ", keys.stream().map(k -> alias + "." + k).toList())
                    + ", count(*) AS " + count + " FROM " + counted.table.getFullyQualifiedName() + " " + alias
                    + (counted.own.isEmpty() ? "" : " WHERE " + String.join(" AND ", counted.own.stream().map(o -> "(" + o + ")").toList()))
                    + " GROUP BY " + String.join(", ", keys.stream().map(k -> alias + "." + k).toList()), null));
            Table replacement = new Table();
            int dot = table.indexOf('.');
            replacement.setSchemaName(table.substring(0, dot));
            replacement.setName(table.substring(dot + 1));
            replacement.setAlias(new net.sf.jsqlparser.expression.Alias(alias, false));
            inner.setFromItem(replacement);
            if (!(e instanceof InExpression)) {
                inner.setSelectItems(List.of(SelectItem.from(DeltaPlanner.parseExpression("1"))));
            }
            inner.setWhere(counted.keyConditions.isEmpty() ? null
                    : DeltaPlanner.parseExpression(String.join(" AND ", counted.keyConditions.stream().map(k -> "(" + k + ")").toList())));
        }
    }

    /** A subquery of the form this rewrites. */
    private record Counted(Table table, String alias, Set<String> keyColumns, List<Expression> keyConditions, List<Expression> own) {
    }

    /**
     * The subquery's table, its key columns (plain columns of it, equal to expressions of outer
     * columns only), those equalities, and its own conditions (its columns only); null when it is
     * not of that form: joins, grouping, aggregates, DISTINCT, LIMIT, subqueries, an unqualified
     * column (whose table is not certain), any other correlation, or no key at all.
     */
    private static Counted counted(PlainSelect inner, boolean in) throws PlanRefusedException {
        if (!(inner.getFromItem() instanceof Table t) || inner.getJoins() != null && !inner.getJoins().isEmpty()
                || inner.getGroupBy() != null || inner.getHaving() != null || inner.getDistinct() != null || inner.getLimit() != null
                || inner.getOffset() != null || inner.getFetch() != null || inner.getWithItemsList() != null
                || inner.getWindowDefinitions() != null || inner.getWhere() == null && !in
                || inner.getSelectItems().stream().anyMatch(i -> DeltaPlanner.aggregates(i.getExpression()) || Sublinks.hasSubquery(i.getExpression()))) {
            return null;
        }
        String alias = t.getAlias() != null ? t.getAlias().getName() : t.getName();
        Set<String> keyColumns = new LinkedHashSet<>();
        if (in) {
            // x IN (SELECT t.c ...): t.c is a key too, and stays the select list (its NULLs and
            // distinct values, all IN and NOT IN look at, are those of the derived table's groups)
            String tested = inner.getSelectItems().size() == 1 ? innerColumn(inner.getSelectItems().get(0).getExpression(), alias) : null;
            if (tested == null) {
                return null;
            }
            keyColumns.add(tested);
        }
        List<Expression> keyConditions = new ArrayList<>();
        List<Expression> own = new ArrayList<>();
        for (Expression c : Sublinks.conjuncts(inner.getWhere())) {
            if (Sublinks.hasSubquery(c)) {
                return null;
            }
            Sides sides = sides(c, alias);
            if (sides.unqualified) {
                return null;
            }
            if (!sides.outer) {
                own.add(c);
                continue;
            }
            if (!(Sublinks.unparen(c) instanceof EqualsTo eq)) {
                return null;
            }
            String key = innerColumn(eq.getLeftExpression(), alias);
            Expression other = eq.getRightExpression();
            if (key == null) {
                key = innerColumn(eq.getRightExpression(), alias);
                other = eq.getLeftExpression();
            }
            Sides otherSides = sides(other, alias);
            if (key == null || otherSides.inner) {
                return null;
            }
            keyColumns.add(key);
            keyConditions.add(c);
        }
        return keyColumns.isEmpty() ? null : new Counted(t, alias, keyColumns, keyConditions, own);
    }

    /** The column's name when the expression is a plain column of the subquery's table, else null. */
    private static String innerColumn(Expression e, String alias) {
        return Sublinks.unparen(e) instanceof Column col && col.getTable() != null && col.getTable().getName() != null
                && QueryInliner.norm(col.getTable().getName()).equals(QueryInliner.norm(alias)) ? col.getColumnName() : null;
    }

    private static final class Sides {
        boolean inner;
        boolean outer;
        boolean unqualified;
    }

    /** Which side's columns an expression reads: the subquery's table's (by its alias), others', unqualified ones. */
    private static Sides sides(Expression e, String alias) {
        Sides s = new Sides();
        e.accept(new ExpressionVisitorAdapter<Void>() {
            @Override
            public <S> Void visit(Column column, S context) {
                if (column.getTable() == null || column.getTable().getName() == null) {
                    s.unqualified = true;
                } else if (QueryInliner.norm(column.getTable().getName()).equals(QueryInliner.norm(alias))) {
                    s.inner = true;
                } else {
                    s.outer = true;
                }
                return null;
            }
        }, null);
        return s;
    }
}
