package io.pgtrickle.refresh.plan;

import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.function.IntFunction;
import net.sf.jsqlparser.expression.Expression;
import net.sf.jsqlparser.expression.ExpressionVisitorAdapter;
import net.sf.jsqlparser.expression.Function;
import net.sf.jsqlparser.expression.TimeKeyExpression;
import net.sf.jsqlparser.expression.operators.relational.ComparisonOperator;
import net.sf.jsqlparser.schema.Column;
import net.sf.jsqlparser.statement.select.ParenthesedSelect;
import net.sf.jsqlparser.statement.select.PlainSelect;
import net.sf.jsqlparser.statement.select.Select;

/**
 * Temporal filters: a comparison AND-ed in the query's WHERE of a row's value with the clock
 * ({@code ts > now() - interval '1 hour'}, {@code day >= CURRENT_DATE - 7}). Rows enter and leave
 * the result as time passes, without any write, so such a query used to be recomputed at every
 * refresh. Instead the clock side of each comparison becomes a one-row derived table of its value,
 * {@code pgtrickle_changes.clock_<derived table's name>}, which every refresh sets to the value at
 * its transaction's start (the value {@code now()} has in a FULL refresh too) before the stream
 * table's statement runs; the comparison reads it as an uncorrelated scalar subquery. The
 * statement then adds to the usual terms of the sources' changes the rows whose verdict the move
 * of the clock flipped (Sublinks' flip term), found by a range of the compared value between the
 * old and the new bound: rows expire by an index range scan, not by reading the table.
 *
 * <p>Only the clock of the transaction ({@code now()}, {@code transaction_timestamp()},
 * {@code CURRENT_DATE}, {@code CURRENT_TIMESTAMP}, {@code LOCALTIMESTAMP}, ...): it is one value for
 * every statement of a refresh. {@code statement_timestamp()}, {@code timeofday()} and
 * {@code age(x)}, and the clock anywhere else than one side of such a comparison (the select list,
 * a subquery, an aggregating subquery in FROM), refuse the plan with the reason: such a query is
 * recomputed at every refresh, as before.
 */
final class TemporalFilters {

    /** A clock's derived table is named with this prefix before the name it would have had. */
    static final String PREFIX = "clock_";

    /** The transaction's clock: one value for every statement of a refresh. */
    private static final Set<String> TRANSACTION_CLOCK = Set.of("now", "transaction_timestamp", "current_timestamp", "current_date",
            "current_time", "localtimestamp", "localtime");

    /** Clocks that move within a transaction, or hide the clock in a function's default (age(x) is age(now(), x)). */
    private static final Set<String> OTHER_CLOCK = Set.of("statement_timestamp", "timeofday", "clock_timestamp");

    private TemporalFilters() {
    }

    /** Whether a derived table (by its qualified or bare name) holds a clock's value. */
    static boolean isClock(String table) {
        return table.substring(table.lastIndexOf('.') + 1).replace("\"", "").startsWith(PREFIX);
    }

    /**
     * Rewrites, in place, every comparison AND-ed in {@code ps}'s WHERE (and in those of the subqueries
     * in its FROM that are pulled up into it) whose one side reads only the transaction's clock and
     * constants, adding a clock table to {@code derived} for each; {@code names} gives the n-th
     * derived table (from 1) its name, which the clock table takes with {@link #PREFIX}.
     */
    static void rewrite(PlainSelect ps, List<DerivedTables.Derived> derived, IntFunction<String> names) throws PlanRefusedException {
        DerivedTables.pulledUp(ps, s -> comparisons(s, derived, names));
    }

    private static void comparisons(PlainSelect ps, List<DerivedTables.Derived> derived, IntFunction<String> names) throws PlanRefusedException {
        if (ps.getWhere() == null) {
            return;
        }
        for (Expression c : Sublinks.conjuncts(ps.getWhere())) {
            if (!(Sublinks.unparen(c) instanceof ComparisonOperator comparison)) {
                continue;
            }
            boolean left = clockOnly(comparison.getLeftExpression());
            boolean right = clockOnly(comparison.getRightExpression());
            if (left == right) {
                continue; // neither side, or both (a condition of the clock alone: still recomputed)
            }
            Expression clock = left ? comparison.getLeftExpression() : comparison.getRightExpression();
            String named = names.apply(derived.size() + 1);
            int dot = named.lastIndexOf('.');
            String table = named.substring(0, dot + 1) + PREFIX + named.substring(dot + 1);
            String alias = table.substring(dot + 1);
            derived.add(new DerivedTables.Derived(table, "SELECT " + clock + " AS " + ScalarAggregates.COLUMN, null));
            ParenthesedSelect value = new ParenthesedSelect();
            value.setSelect(Sublinks.plainSelect("SELECT " + alias + "." + ScalarAggregates.COLUMN + " FROM " + table + " " + alias));
            if (left) {
                comparison.setLeftExpression(value);
            } else {
                comparison.setRightExpression(value);
            }
        }
    }

    /**
     * Refuses a query that still reads the clock (after {@link #rewrite}), or whose derived tables'
     * queries do: a differential statement would take the clock's value at each refresh for its
     * value at the frontier too.
     */
    static void refuseRemaining(Select query, List<DerivedTables.Derived> derived) throws PlanRefusedException {
        String found = clockCall(query);
        for (DerivedTables.Derived d : derived) {
            if (found == null && !d.clock()) {
                found = clockCall(DeltaPlanner.select(d.query()));
            }
        }
        if (found != null) {
            throw new PlanRefusedException("the query reads the current time (" + found + ") other than in a comparison AND-ed in its WHERE"
                    + " with the transaction's clock on one side (now(), CURRENT_DATE, ... and constants)");
        }
    }

    /** The first clock the SQL reads, or null. */
    private static String clockCall(Select s) {
        if (s == null) {
            return null;
        }
        String[] found = {null};
        // the finder walks every expression of every level (select lists, WHERE, HAVING, subqueries)
        new net.sf.jsqlparser.util.TablesNamesFinder<Void>() {

            @Override
            public <S> Void visit(Function f, S context) {
                if (found[0] == null && (transactionClock(f) || movingClock(f))) {
                    found[0] = f.getName().toLowerCase(Locale.ROOT) + "()";
                }
                return super.visit(f, context);
            }

            @Override
            public <S> Void visit(Column column, S context) {
                if (found[0] == null && keyword(column)) {
                    found[0] = column.getColumnName();
                }
                return null;
            }

            @Override
            public <S> Void visit(TimeKeyExpression t, S context) {
                if (found[0] == null && transactionClock(t)) {
                    found[0] = t.getStringValue();
                }
                return null;
            }
        }.getTables((net.sf.jsqlparser.statement.Statement) s);
        return found[0];
    }

    /** A call of the transaction's clock. */
    private static boolean transactionClock(Function f) {
        return f.getName() != null && TRANSACTION_CLOCK.contains(f.getName().toLowerCase(Locale.ROOT));
    }

    /** CURRENT_DATE, CURRENT_TIMESTAMP and the like, with or without a precision. */
    private static boolean transactionClock(TimeKeyExpression t) {
        return TRANSACTION_CLOCK.contains(t.getStringValue().toLowerCase(Locale.ROOT).replaceAll("\\(.*", ""));
    }

    /** A clock that moves within a transaction, or age(x), which reads the clock. */
    private static boolean movingClock(Function f) {
        String name = f.getName() == null ? "" : f.getName().toLowerCase(Locale.ROOT);
        return OTHER_CLOCK.contains(name) || name.equals("age") && f.getParameters() != null && f.getParameters().size() == 1;
    }

    /**
     * Whether a "column" is one of the clock's keywords, as JSqlParser reads LOCALTIMESTAMP, LOCALTIME
     * and CURRENT_TIME without a precision. A column of such a name is quoted (they are reserved
     * words), and PostgreSQL prints it quoted.
     */
    private static boolean keyword(Column column) {
        return (column.getTable() == null || column.getTable().getName() == null) && TRANSACTION_CLOCK.contains(column.getColumnName().toLowerCase(Locale.ROOT));
    }

    /**
     * Whether an expression reads the transaction's clock and otherwise only constants: no column,
     * subquery, other clock or volatile call (the catalog refuses volatile calls before planning).
     */
    static boolean clockOnly(Expression e) {
        boolean[] clock = {false};
        boolean[] other = {false};
        e.accept(new ExpressionVisitorAdapter<Void>() {
            @Override
            public <S> Void visit(Function f, S context) {
                if (transactionClock(f)) {
                    clock[0] = true;
                } else if (movingClock(f) || "age".equalsIgnoreCase(f.getName())) {
                    // (age of two values reads no clock, but is not worth telling apart here)
                    other[0] = true;
                }
                return super.visit(f, context);
            }

            @Override
            public <S> Void visit(TimeKeyExpression t, S context) {
                if (transactionClock(t)) {
                    clock[0] = true;
                }
                return null;
            }

            @Override
            public <S> Void visit(Column column, S context) {
                if (keyword(column)) {
                    clock[0] = true;
                } else {
                    other[0] = true;
                }
                return null;
            }

            @Override
            public <S> Void visit(net.sf.jsqlparser.statement.select.Select select, S context) {
                // (the adapter hands a subquery to this overload)
                other[0] = true;
                return null;
            }
        }, null);
        return clock[0] && !other[0];
    }

    /**
     * The rows whose verdict of {@code condition} (a comparison of a value with the clock's scalar
     * subquery) differs between the clock's values {@code o} and {@code n}, as a condition an
     * index on the value can serve, or null when the comparison is not an order (=, <>). The clock
     * is never NULL. With o < n: {@code x > c} flips for o < x <= n, {@code x >= c} for o <= x < n,
     * {@code x < c} for o <= x < n, {@code x <= c} for o < x <= n; the bounds are least and
     * greatest of the two.
     */
    static String flipRange(Expression condition, String o, String n) {
        if (!(Sublinks.unparen(condition) instanceof ComparisonOperator b)) {
            return null;
        }
        String op = b.getStringExpression().trim();
        Expression value;
        if (Sublinks.unparen(b.getRightExpression()) instanceof ParenthesedSelect) {
            value = b.getLeftExpression();
        } else if (Sublinks.unparen(b.getLeftExpression()) instanceof ParenthesedSelect) {
            value = b.getRightExpression();
            op = switch (op) {
                case ">" -> "<";
                case ">=" -> "<=";
                case "<" -> ">";
                case "<=" -> ">=";
                default -> op;
            };
        } else {
            return null;
        }
        if (Sublinks.hasSubquery(value)) {
            return null;
        }
        String lo = "least(" + o + ", " + n + ")";
        String hi = "greatest(" + o + ", " + n + ")";
        return switch (op) {
            case ">", "<=" -> "(" + value + ") > " + lo + " AND (" + value + ") <= " + hi;
            case ">=", "<" -> "(" + value + ") >= " + lo + " AND (" + value + ") < " + hi;
            default -> null;
        };
    }
}
