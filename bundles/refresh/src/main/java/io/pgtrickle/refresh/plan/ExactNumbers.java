package io.pgtrickle.refresh.plan;

import io.pgtrickle.refresh.plan.DeltaPlanner.Branch;
import io.pgtrickle.refresh.plan.DeltaPlanner.Occurrence;
import java.util.Locale;
import java.util.SortedSet;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import net.sf.jsqlparser.expression.CaseExpression;
import net.sf.jsqlparser.expression.CastExpression;
import net.sf.jsqlparser.expression.DoubleValue;
import net.sf.jsqlparser.expression.Expression;
import net.sf.jsqlparser.expression.Function;
import net.sf.jsqlparser.expression.LongValue;
import net.sf.jsqlparser.expression.NullValue;
import net.sf.jsqlparser.expression.SignedExpression;
import net.sf.jsqlparser.expression.WhenClause;
import net.sf.jsqlparser.expression.operators.arithmetic.Addition;
import net.sf.jsqlparser.expression.operators.arithmetic.Multiplication;
import net.sf.jsqlparser.expression.operators.arithmetic.Subtraction;
import net.sf.jsqlparser.expression.operators.relational.ParenthesedExpressionList;
import net.sf.jsqlparser.schema.Column;

/**
 * What an expression of a query evaluates to, as far as adding it up exactly goes: an integer type,
 * or numeric with the set of scales (digits after the point) its values can have. A numeric's scale
 * is a property of each value, not of the type: {@code 1.50 + 1} is {@code 2.50}, {@code 1.50 * 1.5}
 * is {@code 2.250}, and a sum's scale is the largest of its inputs'. The rules are PostgreSQL's
 * (numeric_add/sub: the larger scale; numeric_mul: the sum of the scales; a column of type
 * {@code numeric(p,s)}: s; an integer: 0). Anything else (division, functions, floats, numeric
 * columns without a declared scale) is unknown: null.
 */
final class ExactNumbers {

    /**
     * @param numeric whether values are numeric (else an integer type)
     * @param wide    for integers: bigint rather than smallint or integer
     * @param scales  for numeric: every scale a value can have
     */
    record Kind(boolean numeric, boolean wide, SortedSet<Integer> scales) {
        static final Kind INT4 = new Kind(false, false, new TreeSet<>(java.util.List.of(0)));
        static final Kind INT8 = new Kind(false, true, new TreeSet<>(java.util.List.of(0)));

        static Kind numeric(SortedSet<Integer> scales) {
            return new Kind(true, false, scales);
        }
    }

    private static final Pattern DECLARED_SCALE = Pattern.compile("numeric\\s*\\(\\s*\\d+\\s*,\\s*(\\d+)\\s*\\)");
    /** Scales beyond this are not tracked (each gets a count in the state). */
    private static final int MAX_SCALES = 8;

    private ExactNumbers() {
    }

    /** The kind of {@code e}, an expression of the branch {@code shape}; null when unknown. */
    static Kind kind(Expression e, Branch shape) {
        Kind k = of(e, shape);
        return k == null || k == NULL || k.scales().size() > MAX_SCALES ? null : k;
    }

    /** The NULL literal: no value, so no scale; it takes the other operand's kind in a CASE. */
    private static final Kind NULL = new Kind(false, false, new TreeSet<>());

    private static Kind of(Expression e, Branch shape) {
        if (e instanceof ParenthesedExpressionList<?> p && p.size() == 1) {
            return of((Expression) p.get(0), shape);
        }
        if (e instanceof SignedExpression s) {
            return of(s.getExpression(), shape);
        }
        if (e instanceof NullValue) {
            return NULL;
        }
        if (e instanceof LongValue l) {
            String text = l.getStringValue();
            if (text.length() > 18) {
                return Kind.numeric(new TreeSet<>(java.util.List.of(0)));
            }
            long v = l.getValue();
            return v >= Integer.MIN_VALUE && v <= Integer.MAX_VALUE ? Kind.INT4 : Kind.INT8;
        }
        if (e instanceof DoubleValue d) {
            String text = d.toString();
            if (!text.matches("\\d*\\.\\d*")) {
                return null;
            }
            return Kind.numeric(new TreeSet<>(java.util.List.of(text.length() - text.indexOf('.') - 1)));
        }
        if (e instanceof Column c) {
            return column(c, shape);
        }
        if (e instanceof CastExpression cast) {
            String type = cast.getColDataType().getDataType().toLowerCase(Locale.ROOT).trim();
            Matcher declared = DECLARED_SCALE.matcher(type);
            if (declared.matches()) {
                return Kind.numeric(new TreeSet<>(java.util.List.of(Integer.parseInt(declared.group(1)))));
            }
            Kind inner = of(cast.getLeftExpression(), shape);
            if (inner == null) {
                return null;
            }
            return switch (type) {
                case "numeric", "decimal" -> inner == NULL || inner.numeric() ? inner : Kind.numeric(new TreeSet<>(java.util.List.of(0)));
                case "integer", "int", "int4", "smallint", "int2" -> inner == NULL ? NULL : Kind.INT4;
                case "bigint", "int8" -> inner == NULL ? NULL : Kind.INT8;
                default -> null;
            };
        }
        if (e instanceof Addition a) {
            return combine(of(a.getLeftExpression(), shape), of(a.getRightExpression(), shape), false);
        }
        if (e instanceof Subtraction s) {
            return combine(of(s.getLeftExpression(), shape), of(s.getRightExpression(), shape), false);
        }
        if (e instanceof Multiplication m) {
            return combine(of(m.getLeftExpression(), shape), of(m.getRightExpression(), shape), true);
        }
        if (e instanceof CaseExpression c) {
            Kind result = c.getElseExpression() == null ? NULL : of(c.getElseExpression(), shape);
            for (WhenClause w : c.getWhenClauses()) {
                result = union(result, of(w.getThenExpression(), shape));
            }
            return result;
        }
        if (e instanceof Function f && f.getMultipartName() != null && f.getMultipartName().size() == 1
                && f.getMultipartName().get(0).equalsIgnoreCase("coalesce") && f.getParameters() != null) {
            Kind result = NULL;
            for (Object p : f.getParameters()) {
                result = union(result, of((Expression) p, shape));
            }
            return result;
        }
        return null;
    }

    /** The kinds of the branches of a CASE or COALESCE: one type, every scale of each. */
    private static Kind union(Kind a, Kind b) {
        if (a == null || b == null) {
            return null;
        }
        if (a == NULL) {
            return b;
        }
        if (b == NULL) {
            return a;
        }
        if (!a.numeric() && !b.numeric()) {
            return a.wide() || b.wide() ? Kind.INT8 : Kind.INT4;
        }
        SortedSet<Integer> scales = new TreeSet<>(a.scales());
        scales.addAll(b.scales());
        return Kind.numeric(scales);
    }

    private static Kind combine(Kind a, Kind b, boolean multiply) {
        if (a == null || b == null) {
            return null;
        }
        if (a == NULL || b == NULL) {
            return NULL;
        }
        if (!a.numeric() && !b.numeric()) {
            return a.wide() || b.wide() ? Kind.INT8 : Kind.INT4;
        }
        SortedSet<Integer> scales = new TreeSet<>();
        for (int x : a.scales()) {
            for (int y : b.scales()) {
                scales.add(multiply ? x + y : Math.max(x, y));
            }
        }
        return Kind.numeric(scales);
    }

    /** A column of one of the branch's tables: by its declared type. */
    private static Kind column(Column column, Branch shape) {
        String table = column.getTable() == null ? null : column.getTable().getName();
        Kind found = null;
        int matches = 0;
        for (Occurrence o : shape.occurrences) {
            if (table != null && !o.alias.equals(table)) {
                continue;
            }
            int at = o.source.columns().indexOf(column.getColumnName());
            if (at >= 0) {
                matches++;
                found = declared(o.source.types().get(at));
            }
        }
        return matches == 1 ? found : null;
    }

    private static Kind declared(String type) {
        return switch (type) {
            case "smallint", "integer" -> Kind.INT4;
            case "bigint" -> Kind.INT8;
            default -> {
                Matcher declared = DECLARED_SCALE.matcher(type);
                yield declared.matches() ? Kind.numeric(new TreeSet<>(java.util.List.of(Integer.parseInt(declared.group(1))))) : null;
            }
        };
    }
}
