package io.pgtrickle.refresh.plan;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.function.IntFunction;
import java.util.stream.Collectors;
import net.sf.jsqlparser.expression.AnalyticExpression;
import net.sf.jsqlparser.expression.Expression;
import net.sf.jsqlparser.expression.ExpressionVisitorAdapter;
import net.sf.jsqlparser.schema.Column;
import net.sf.jsqlparser.schema.Table;
import net.sf.jsqlparser.statement.select.Join;
import net.sf.jsqlparser.statement.select.ParenthesedSelect;
import net.sf.jsqlparser.statement.select.PlainSelect;

/**
 * An uncorrelated scalar subquery that aggregates without GROUP BY, compared in an AND-ed
 * condition of the query's own WHERE ({@code c_acctbal > (SELECT avg(c_acctbal) FROM customer
 * WHERE ...)}, TPC-H Q22), reads instead a one-row derived table of its value, kept by its own
 * differential statement (running totals: avg as a sum and a count). A change to the subquery's
 * tables changes its value, and a refresh needs the value now and at the frontier: computed from
 * the tables, that was the aggregate over all their rows twice, the second time over their rows
 * as they were (the rows now netted against the window's changes), and a third time in the terms
 * that evaluate the condition as it is now. From the derived table both are one row: now, and
 * now less the changes its statement wrote.
 *
 * <p>Only a subquery over tables joined by inner or comma joins, whose every column names one of
 * them: an unqualified column's table is not certain, and a derived table's query must plan on
 * its own (a refused one would refuse the whole query's plan).
 */
final class ScalarAggregates {

    /** The derived table's one column. */
    static final String COLUMN = "scalar_value";

    private ScalarAggregates() {
    }

    /**
     * Rewrites the qualifying conditions of {@code ps}'s WHERE in place, and those of the subqueries
     * in its FROM that are left to be pulled up into it (TPC-H Q22's condition is in one), adding
     * their derived tables to {@code derived} ({@code names} gives the n-th, from 1, its name). An
     * uncorrelated subquery means the same wherever it is.
     */
    static void rewrite(PlainSelect ps, List<DerivedTables.Derived> derived, IntFunction<String> names) throws PlanRefusedException {
        DerivedTables.pulledUp(ps, s -> conditions(s, derived, names));
    }

    private static void conditions(PlainSelect ps, List<DerivedTables.Derived> derived, IntFunction<String> names) throws PlanRefusedException {
        if (ps.getWhere() == null) {
            return;
        }
        for (Expression c : Sublinks.conjuncts(ps.getWhere())) {
            ParenthesedSelect sub = Sublinks.scalarSubquery(Sublinks.unparen(c));
            // PostgreSQL prints a scalar subquery in a comparison in two pairs of parentheses
            while (sub != null && sub.getSelect() instanceof ParenthesedSelect p) {
                sub = p;
            }
            if (sub == null || !(sub.getSelect() instanceof PlainSelect inner) || !qualifies(inner)) {
                continue;
            }
            String table = names.apply(derived.size() + 1);
            String alias = table.substring(table.indexOf('.') + 1);
            PlainSelect value = Sublinks.plainSelect(inner.toString());
            value.getSelectItems().get(0).setAlias(new net.sf.jsqlparser.expression.Alias(COLUMN, true));
            derived.add(new DerivedTables.Derived(table, value.toString(), null));
            sub.setSelect(Sublinks.plainSelect("SELECT " + alias + "." + COLUMN + " FROM " + table + " " + alias));
        }
    }

    /**
     * One aggregate over tables, nothing else: no grouping, DISTINCT, ORDER BY, LIMIT, WITH, window,
     * subquery, outer join, or column that is not one of its tables' (named by alias).
     */
    private static boolean qualifies(PlainSelect inner) {
        if (!(inner.getFromItem() instanceof Table first) || inner.getGroupBy() != null || inner.getHaving() != null
                || inner.getDistinct() != null || inner.getOrderByElements() != null || inner.getLimit() != null
                || inner.getOffset() != null || inner.getFetch() != null || inner.getWithItemsList() != null
                || inner.getWindowDefinitions() != null || inner.getSelectItems().size() != 1) {
            return false;
        }
        Expression item = inner.getSelectItems().get(0).getExpression();
        if (!DeltaPlanner.aggregates(item) || Sublinks.hasSubquery(item) || inner.getWhere() != null && Sublinks.hasSubquery(inner.getWhere())) {
            return false;
        }
        List<Table> tables = new ArrayList<>();
        tables.add(first);
        if (inner.getJoins() != null) {
            for (Join j : inner.getJoins()) {
                if (!(j.getRightItem() instanceof Table t) || !(QueryInliner.innerOn(j) || QueryInliner.crossOrComma(j))) {
                    return false;
                }
                tables.add(t);
            }
        }
        Set<String> aliases = tables.stream().map(QueryInliner::knownAs)
                .collect(Collectors.toSet());
        boolean[] foreign = {false};
        ExpressionVisitorAdapter<Void> columns = new ExpressionVisitorAdapter<>() {
            @Override
            public <S> Void visit(Column column, S context) {
                if (column.getTable() == null || column.getTable().getName() == null
                        || !aliases.contains(QueryInliner.norm(column.getTable().getName()))) {
                    foreign[0] = true;
                }
                return null;
            }

            @Override
            public <S> Void visit(AnalyticExpression expression, S context) {
                foreign[0] = true;
                return null;
            }
        };
        item.accept(columns, null);
        if (inner.getWhere() != null) {
            inner.getWhere().accept(columns, null);
        }
        if (inner.getJoins() != null) {
            for (Join j : inner.getJoins()) {
                if (j.getOnExpressions() != null) {
                    for (Expression on : j.getOnExpressions()) {
                        if (Sublinks.hasSubquery(on)) {
                            return false;
                        }
                        on.accept(columns, null);
                    }
                }
            }
        }
        return !foreign[0];
    }

}
