package io.pgtrickle.refresh.plan;

import io.pgtrickle.refresh.plan.DeltaPlanner.Branch;
import io.pgtrickle.refresh.plan.DeltaPlanner.Deltas;
import io.pgtrickle.refresh.plan.DeltaPlanner.Occurrence;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import net.sf.jsqlparser.expression.AnalyticExpression;
import net.sf.jsqlparser.expression.Expression;
import net.sf.jsqlparser.expression.ExpressionVisitorAdapter;
import net.sf.jsqlparser.expression.NotExpression;
import net.sf.jsqlparser.expression.operators.conditional.AndExpression;
import net.sf.jsqlparser.expression.operators.relational.EqualsTo;
import net.sf.jsqlparser.expression.operators.relational.ExistsExpression;
import net.sf.jsqlparser.expression.operators.relational.InExpression;
import net.sf.jsqlparser.expression.operators.relational.ParenthesedExpressionList;
import net.sf.jsqlparser.schema.Column;
import net.sf.jsqlparser.statement.select.Join;
import net.sf.jsqlparser.statement.select.ParenthesedSelect;
import net.sf.jsqlparser.statement.select.PlainSelect;
import net.sf.jsqlparser.statement.select.SelectItem;

/**
 * Subqueries in WHERE: {@code EXISTS}, {@code NOT EXISTS}, {@code IN}, {@code NOT IN} and comparisons
 * with a scalar subquery, correlated or not, each an AND-ed condition of the WHERE clause.
 *
 * <p>Write a branch as its rows J (FROM and the plain conditions) filtered by the subquery
 * conditions S. Its change splits in two:
 * <pre>
 *   S_new(J_new) - S_old(J_old) = [S_new(J_new) - S_new(J_old)] + [S_new(J_old) - S_old(J_old)]
 * </pre>
 * The first part is the usual telescoping sum over the branch's tables, with the subqueries left in
 * WHERE: they read the tables as they are now. The second part, the <i>flip term</i>, is the rows of
 * J as they were whose subquery conditions changed their verdict: each weighted by
 * {@code [S_new] - [S_old]}, where S_old reads the subqueries' tables as they were (their rows now,
 * less the window's inserts, plus its deletes). PostgreSQL evaluates both verdicts, so SQL's rules
 * (NOT IN with a NULL in the subquery, an empty subquery, NULL comparisons) are its own. Only rows
 * whose verdict can have changed are visited: those whose correlation keys (the outer sides of
 * {@code inner = outer} conditions, and for IN the tested value) match a row of the subquery that
 * changed, found by the same telescoping over the subquery's tables; and, when a subquery has no
 * such key (uncorrelated EXISTS and scalars, a NOT IN whose NULLs or emptiness changed, non-equality
 * correlations), every row, but only when its result changed.
 */
final class Sublinks {

    enum Kind { EXISTS, IN, NOT_IN, SCALAR }

    /** One subquery condition of a branch's WHERE, in a parse tree. */
    static final class Sublink {
        final Expression condition;
        final Kind kind;
        final ParenthesedSelect subquery;
        /** The subquery's tables as occurrences, so that terms can rename them. */
        final Branch inner;
        final List<Expression> innerKeys = new ArrayList<>();
        final List<Expression> outerKeys = new ArrayList<>();
        /** The subquery's WHERE conditions that read no outer column. */
        final List<Expression> own = new ArrayList<>();
        boolean correlated;
        /** Whether the condition is true when the subquery has no row (NOT EXISTS). */
        boolean negated;
        /** Correlated conditions that are not {@code inner = outer} keys. */
        int otherCorrelations;
        /** Whether its GROUP BY (if any) has every inner key among its expressions. */
        boolean groupedByKeys = true;

        Sublink(Expression condition, Kind kind, ParenthesedSelect subquery, Branch inner) {
            this.condition = condition;
            this.kind = kind;
            this.subquery = subquery;
            this.inner = inner;
        }

        /**
         * Whether the condition's verdict for an outer row is a function of the row's keys alone,
         * computable for all changed keys at once (see {@link #defineVerdicts}): EXISTS, NOT EXISTS
         * or IN over one table, correlated by key equalities only, with no subquery of its own,
         * plain columns as inner keys, and grouped (if at all) by them.
         */
        boolean keyed() {
            return (kind == Kind.EXISTS || kind == Kind.IN) && !innerKeys.isEmpty() && otherCorrelations == 0
                    && inner.occurrences.size() == 1 && inner.sublinks.isEmpty() && groupedByKeys
                    && !(inner.select.getGroupBy() == null && aggregates(inner.select))
                    && innerKeys.stream().allMatch(k -> keyColumn(k) != null);
        }

        /** Whether a change of the subquery can reach outer rows other than those of its keys. */
        boolean global() {
            return innerKeys.isEmpty() || kind == Kind.NOT_IN && !correlated;
        }
    }

    private Sublinks() {
    }

    /** Whether a SELECT's list or HAVING calls an aggregate. */
    private static boolean aggregates(PlainSelect ps) {
        return ps.getSelectItems().stream().anyMatch(i -> DeltaPlanner.aggregates(i.getExpression()))
                || ps.getHaving() != null && DeltaPlanner.aggregates(ps.getHaving());
    }

    /** The name of the column an inner key is, or null when it is not a plain column. */
    private static String keyColumn(Expression key) {
        return unparen(key) instanceof Column c ? c.getColumnName() : null;
    }

    static List<Expression> conjuncts(Expression where) {
        List<Expression> out = new ArrayList<>();
        if (where != null) {
            collect(where, out);
        }
        return out;
    }

    private static void collect(Expression e, List<Expression> out) {
        Expression u = unparen(e);
        if (u instanceof AndExpression and) {
            collect(and.getLeftExpression(), out);
            collect(and.getRightExpression(), out);
        } else {
            out.add(e);
        }
    }

    static Expression unparen(Expression e) {
        while (e instanceof ParenthesedExpressionList<?> p && p.size() == 1) {
            e = (Expression) p.get(0);
        }
        return e;
    }

    static boolean hasSubquery(Expression e) {
        boolean[] found = {false};
        e.accept(new ExpressionVisitorAdapter<Void>() {
            @Override
            public <S> Void visit(net.sf.jsqlparser.statement.select.Select select, S context) {
            // JSqlParser's adapter hands a subquery (a ParenthesedSelect) to this overload, not to visit(ParenthesedSelect)
                found[0] = true;
                return null;
            }

            @Override
            public <S> Void visit(ExistsExpression exists, S context) {
                found[0] = true;
                return null;
            }
        }, null);
        return found[0];
    }

    /** The subquery condition {@code condition} of branch {@code outer}, whose tables are walked already. */
    static Sublink analyze(Expression condition, Branch outer, Source.Lookup sources) throws PlanRefusedException {
        Expression e = unparen(condition);
        boolean negated = false;
        while (e instanceof NotExpression n) {
            negated = !negated;
            e = unparen(n.getExpression());
        }
        Kind kind;
        ParenthesedSelect subquery;
        Expression tested = null;
        boolean notExists = false;
        if (e instanceof ExistsExpression exists && unparen(exists.getRightExpression()) instanceof ParenthesedSelect s) {
            kind = Kind.EXISTS;
            subquery = s;
            notExists = negated != exists.isNot();
        } else if (e instanceof InExpression in && in.getRightExpression() instanceof ParenthesedSelect s
                && !hasSubquery(in.getLeftExpression()) && !(unparen(in.getLeftExpression()) instanceof ParenthesedExpressionList<?>)) {
            kind = negated != in.isNot() ? Kind.NOT_IN : Kind.IN;
            subquery = s;
            tested = in.getLeftExpression();
        } else if (scalarSubquery(e) != null) {
            kind = Kind.SCALAR;
            subquery = scalarSubquery(e);
        } else {
            throw new PlanRefusedException("the query has a subquery condition the engine does not maintain: " + condition
                    + " (maintained: EXISTS, NOT EXISTS, IN, NOT IN and comparisons with a scalar subquery, AND-ed in WHERE)");
        }
        net.sf.jsqlparser.statement.select.Select body = subquery.getSelect();
        while (body instanceof ParenthesedSelect p) {
            body = p.getSelect();
        }
        if (!(body instanceof PlainSelect ps)) {
            throw new PlanRefusedException("a subquery is not a plain SELECT: " + subquery);
        }
        if (ps.getLimit() != null || ps.getOffset() != null || ps.getFetch() != null || ps.getWithItemsList() != null
                || ps.getWindowDefinitions() != null || ps.getDistinct() != null && ps.getDistinct().getOnSelectItems() != null) {
            throw new PlanRefusedException("a subquery uses LIMIT, OFFSET, WITH, WINDOW or DISTINCT ON: " + subquery);
        }
        Branch inner = new Branch(ps);
        ps.setFromItem(DeltaPlanner.walk(ps.getFromItem(), inner, sources));
        if (ps.getJoins() != null) {
            for (Join j : ps.getJoins()) {
                DeltaPlanner.join(j, inner, sources);
            }
        }
        Set<String> innerAliases = inner.occurrences.stream().map(o -> o.alias).collect(Collectors.toSet());
        Set<String> outerAliases = outer.occurrences.stream().map(o -> o.alias).collect(Collectors.toSet());
        for (String alias : innerAliases) {
            if (outerAliases.contains(alias)) {
                throw new PlanRefusedException("a subquery's table has the name or alias " + alias + " of a table outside it");
            }
        }
        Sublink link = new Sublink(condition, kind, subquery, inner);
        link.negated = notExists;
        for (SelectItem<?> item : ps.getSelectItems()) {
            if (hasSubquery(item.getExpression()) || !reads(item.getExpression(), inner, innerAliases, outerAliases).outer.isEmpty()) {
                throw new PlanRefusedException("a subquery's select list reads outer columns or has subqueries: " + subquery);
            }
        }
        if (ps.getHaving() != null && (hasSubquery(ps.getHaving())
                || !reads(ps.getHaving(), inner, innerAliases, outerAliases).outer.isEmpty())) {
            throw new PlanRefusedException("a subquery's HAVING reads outer columns or has subqueries: " + subquery);
        }
        Expression outerTested = kind == Kind.IN ? qualified(tested, outer) : null;
        boolean ownGroup = outerTested != null && ps.getSelectItems().size() == 1 && ps.getGroupBy() != null
                && !DeltaPlanner.aggregates(ps.getSelectItems().get(0).getExpression())
                && ps.getGroupBy().getGroupByExpressionList().stream()
                        .anyMatch(g -> g.toString().equals(ps.getSelectItems().get(0).getExpression().toString()));
        if (ownGroup) {
            // x IN (SELECT g ... GROUP BY g HAVING ...) holds for x's own group only: said so, a
            // correlated subquery, which PostgreSQL evaluates by reading that group (by index), for
            // the few rows a term visits, where it would group the whole table (TPC-H Q18: all of
            // lineitem per refresh, and again over its old state)
            Expression mine = DeltaPlanner.parseExpression("(" + ps.getSelectItems().get(0).getExpression() + ") = (" + outerTested + ")");
            ps.setWhere(ps.getWhere() == null ? mine : new AndExpression(new ParenthesedExpressionList<>(ps.getWhere()), mine));
        }
        for (Expression c : conjuncts(ps.getWhere())) {
            if (hasSubquery(c)) {
                // a subquery of the subquery: the same, one level down
                inner.sublinks.add(analyze(c, inner, sources));
                continue;
            }
            Reads r = reads(c, inner, innerAliases, outerAliases);
            if (r.outer.isEmpty()) {
                link.own.add(c);
                continue;
            }
            link.correlated = true;
            int keys = link.innerKeys.size();
            if (unparen(c) instanceof EqualsTo eq) {
                Reads left = reads(eq.getLeftExpression(), inner, innerAliases, outerAliases);
                Reads right = reads(eq.getRightExpression(), inner, innerAliases, outerAliases);
                if (left.outer.isEmpty() && !left.inner.isEmpty() && right.inner.isEmpty() && !right.outer.isEmpty()) {
                    link.innerKeys.add(eq.getLeftExpression());
                    link.outerKeys.add(eq.getRightExpression());
                } else if (right.outer.isEmpty() && !right.inner.isEmpty() && left.inner.isEmpty() && !left.outer.isEmpty()) {
                    link.innerKeys.add(eq.getRightExpression());
                    link.outerKeys.add(eq.getLeftExpression());
                }
            }
            if (link.innerKeys.size() == keys) {
                link.otherCorrelations++;
            }
            // any other correlation is left out of the keys' subquery: it then finds more keys, never fewer
        }
        if (kind == Kind.IN || kind == Kind.NOT_IN) {
            if (ps.getSelectItems().size() != 1 || DeltaPlanner.aggregates(ps.getSelectItems().get(0).getExpression())) {
                throw new PlanRefusedException("an IN subquery must return one plain column: " + subquery);
            }
            // NOT IN turns on the whole subquery (a NULL in it, or its being empty) within one
            // correlation: its tested value is a key only when there is no correlation
            // (an IN of its own group has it as a correlation already)
            if ((kind == Kind.IN || !link.correlated) && !ownGroup) {
                link.innerKeys.add(ps.getSelectItems().get(0).getExpression());
                link.outerKeys.add(tested);
            }
        } else if (kind == Kind.SCALAR && ps.getSelectItems().size() != 1) {
            throw new PlanRefusedException("a scalar subquery must return one column: " + subquery);
        }
        if (ps.getGroupBy() != null) {
            Set<String> grouped = new java.util.HashSet<>();
            ps.getGroupBy().getGroupByExpressionList().forEach(g -> grouped.add(unparen((Expression) g).toString()));
            link.groupedByKeys = link.innerKeys.stream().allMatch(k -> grouped.contains(unparen(k).toString()));
        }
        return link;
    }

    /**
     * A copy of {@code e} (read in branch {@code outer}) whose columns all name their table, so that
     * it means the same inside a subquery, or null when a column's table is not certain: PostgreSQL
     * leaves a column unqualified when the query has one table.
     */
    private static Expression qualified(Expression e, Branch outer) throws PlanRefusedException {
        Expression copy = DeltaPlanner.parseExpression(e.toString());
        boolean[] unsure = {false};
        copy.accept(new ExpressionVisitorAdapter<Void>() {
            @Override
            public <S> Void visit(Column column, S context) {
                if (column.getTable() == null || column.getTable().getName() == null) {
                    List<Occurrence> having = outer.occurrences.stream()
                            .filter(o -> o.source.columns().contains(column.getColumnName())).toList();
                    if (having.size() == 1) {
                        column.setTable(new net.sf.jsqlparser.schema.Table(having.get(0).alias));
                    } else {
                        unsure[0] = true;
                    }
                }
                return null;
            }
        }, null);
        return unsure[0] || hasSubquery(copy) ? null : copy;
    }

    /**
     * The one scalar subquery of a condition such as {@code v > (SELECT avg(m) ...) - 2}, or null
     * when it has none, several, or an EXISTS or IN inside a larger expression.
     */
    static ParenthesedSelect scalarSubquery(Expression condition) {
        List<ParenthesedSelect> found = new ArrayList<>();
        boolean[] other = {false};
        condition.accept(new ExpressionVisitorAdapter<Void>() {
            @Override
            public <S> Void visit(net.sf.jsqlparser.statement.select.Select select, S context) {
                if (select instanceof ParenthesedSelect p) {
                    found.add(p);
                } else {
                    other[0] = true;
                }
                return null;
            }

            @Override
            public <S> Void visit(ExistsExpression exists, S context) {
                other[0] = true;
                return null;
            }

            @Override
            public <S> Void visit(InExpression in, S context) {
                if (in.getRightExpression() instanceof ParenthesedSelect) {
                    other[0] = true;
                    return null;
                }
                return super.visit(in, context);
            }
        }, null);
        return found.size() == 1 && !other[0] ? found.get(0) : null;
    }

    /** The columns an expression reads, by side. */
    private record Reads(Set<String> inner, Set<String> outer) {
    }

    private static Reads reads(Expression e, Branch inner, Set<String> innerAliases, Set<String> outerAliases)
            throws PlanRefusedException {
        Set<String> in = new LinkedHashSet<>();
        Set<String> out = new LinkedHashSet<>();
        List<Column> columns = new ArrayList<>();
        boolean[] windows = {false};
        e.accept(new ExpressionVisitorAdapter<Void>() {
            @Override
            public <S> Void visit(Column column, S context) {
                columns.add(column);
                return null;
            }

            @Override
            public <S> Void visit(AnalyticExpression expression, S context) {
                windows[0] = true;
                return super.visit(expression, context);
            }
        }, null);
        if (windows[0]) {
            throw new PlanRefusedException("a subquery uses window functions");
        }
        for (Column c : columns) {
            String table = c.getTable() == null ? null : c.getTable().getName();
            if (table == null) {
                boolean known = inner.occurrences.stream().anyMatch(o -> o.source.columns().contains(c.getColumnName()));
                if (!known) {
                    // an unqualified name is a column of the subquery's tables, or something the
                    // engine cannot place (PostgreSQL qualifies what the subquery reads from outside)
                    throw new PlanRefusedException("a subquery reads " + c + ", which the engine cannot place");
                }
                in.add(c.toString());
            } else if (innerAliases.contains(table)) {
                in.add(c.toString());
            } else if (outerAliases.contains(table)) {
                out.add(c.toString());
            } else {
                throw new PlanRefusedException("a subquery reads " + c + " of a query level the engine does not maintain");
            }
        }
        return new Reads(in, out);
    }

    // ---------------------------------------------------------------- SQL

    /** The CTE names of a sublink, by its path (branch, then sublink indexes down the nesting). */
    private static String keysName(List<Integer> path) {
        return "__pgt_sl" + path.stream().map(String::valueOf).collect(Collectors.joining("_"));
    }

    private static String verdictsName(List<Integer> path) {
        return "__pgt_sv" + path.stream().map(String::valueOf).collect(Collectors.joining("_"));
    }

    private static String changedName(List<Integer> path) {
        return "__pgt_sg" + path.stream().map(String::valueOf).collect(Collectors.joining("_"));
    }

    /** The CTE of an uncorrelated scalar subquery's value now (n) and at the frontier (o). */
    private static String valuesName(List<Integer> path) {
        return "__pgt_sx" + path.stream().map(String::valueOf).collect(Collectors.joining("_"));
    }

    /** An uncorrelated scalar subquery: its two values are computed once, in {@link #valuesName}'s CTE. */
    private static boolean constant(Sublink s) {
        return s.kind == Kind.SCALAR && !s.correlated;
    }

    /** A scalar subquery reading a clock's derived table ({@link TemporalFilters}): never NULL. */
    private static boolean clock(Sublink s) {
        return constant(s) && s.inner.occurrences.size() == 1 && s.inner.sublinks.isEmpty()
                && TemporalFilters.isClock(s.inner.occurrences.get(0).source.name());
    }

    private static List<Integer> child(List<Integer> path, int i) {
        List<Integer> c = new ArrayList<>(path);
        c.add(i);
        return c;
    }

    /** The sublink at {@code path} in a fresh parse of the query. */
    private static Sublink locate(String query, Source.Lookup sources, List<Integer> path) throws PlanRefusedException {
        Sublink s = DeltaPlanner.parse(query, sources).branches().get(path.get(0)).sublinks.get(path.get(1));
        for (int k = 2; k < path.size(); k++) {
            s = s.inner.sublinks.get(path.get(k));
        }
        return s;
    }

    /**
     * Defines, in {@code deltas}, the CTEs of branch {@code bi}'s subqueries: per subquery with keys,
     * the key values of its rows that involve a change (old or new: the telescoping terms over its
     * tables, without its correlated conditions, and for a subquery with subqueries of its own, its
     * rows whose own verdicts can have changed); per subquery that can reach every outer row,
     * whether its result changed.
     */
    static void define(String query, Source.Lookup sources, Deltas deltas, int bi) throws PlanRefusedException {
        int count = DeltaPlanner.parse(query, sources).branches().get(bi).sublinks.size();
        for (int i = 0; i < count; i++) {
            define(query, sources, deltas, List.of(bi, i));
        }
    }

    private static void define(String query, Source.Lookup sources, Deltas deltas, List<Integer> path) throws PlanRefusedException {
        Sublink shape = locate(query, sources, path);
        if (!shape.innerKeys.isEmpty()) {
            List<String> terms = new ArrayList<>();
            List<String> names = IntStream.range(0, shape.innerKeys.size()).mapToObj(k -> "k" + k).toList();
            for (DeltaPlanner.Term t : shape.inner.changeTerms()) {
                Sublink s = locate(query, sources, path);
                keysOnly(s, s.own);
                terms.add(DeltaPlanner.leg(s.inner.render(t, deltas), names, s.inner.pending(t, deltas, null)));
            }
            if (!shape.inner.sublinks.isEmpty()) {
                for (int j = 0; j < shape.inner.sublinks.size(); j++) {
                    define(query, sources, deltas, child(path, j));
                }
                for (DeltaPlanner.Term t : shape.inner.oldTerms()) {
                    Sublink s = locate(query, sources, path);
                    List<Expression> where = new ArrayList<>(s.own);
                    where.add(DeltaPlanner.parseExpression(affected(s.inner, path)));
                    keysOnly(s, where);
                    terms.add(DeltaPlanner.leg(s.inner.render(t, deltas), names, s.inner.pending(t, deltas, pending(s.inner, deltas))));
                }
            }
            deltas.define(keysName(path), "SELECT DISTINCT * FROM (" + Legs.union(terms) + ") __pgt_k");
        }
        if (shape.global() && constant(shape) && path.size() == 2) {
            // each term reads the old value several times (an aggregate over the old rows each time)
            Sublink s = locate(query, sources, path);
            String now = s.subquery.toString();
            asBefore(s, deltas);
            deltas.define(valuesName(path), "SELECT " + now + " AS n, " + s.subquery + " AS o");
            deltas.define(changedName(path), "SELECT n IS DISTINCT FROM o AS t FROM " + valuesName(path));
        } else if (shape.global()) {
            deltas.define(changedName(path), "SELECT " + changed(locate(query, sources, path), deltas) + " AS t");
        }
        if (path.size() == 2 && setBased(DeltaPlanner.parse(query, sources).branches().get(path.get(0)))) {
            defineVerdicts(query, sources, deltas, path);
        }
    }

    /**
     * Whether the flip terms of a branch read their factor from {@link #defineVerdicts}' CTE: one
     * subquery condition, whose verdict is a function of the outer row's keys.
     */
    static boolean setBased(Branch b) {
        return b.sublinks.size() == 1 && b.sublinks.get(0).keyed();
    }

    /**
     * The change of the verdict per changed key ({@code __pgt_sv...}: the keys k0.. and f, +1 where
     * the condition became true, -1 where it became false), from set queries over the changed keys
     * instead of evaluating the subquery twice per outer row: as it was, a subquery reads its table
     * as the table and the window's changes, and PostgreSQL scans the changes per evaluation, which
     * made a flip term quadratic in the size of the change (TPC-H Q18: 3 s for 0.1% of the orders).
     * Per key, the subquery's rows now are counted (its table, by index where there is one), and
     * the window's changes of that key are summed by weight: the rows it had at the frontier are
     * the count less that sum. One read of the table, not a second one of its old state, which had
     * to net the table's rows of those keys against the changes (a hash of every such row).
     */
    private static void defineVerdicts(String query, Source.Lookup sources, Deltas deltas, List<Integer> path)
            throws PlanRefusedException {
        String keys = keysName(path);
        Sublink shape = locate(query, sources, path);
        List<String> k = IntStream.range(0, shape.innerKeys.size()).mapToObj(i -> "k" + i).toList();
        String on = k.stream().map(c -> "kk." + c).collect(Collectors.joining(", "));
        if (shape.inner.select.getGroupBy() != null || shape.inner.select.getHaving() != null) {
            // a verdict of groups (x IN (SELECT g ... GROUP BY g HAVING ...)), not of rows: the
            // subquery's keys now and over the old rows of the changed keys
            String now = keySet(locate(query, sources, path), keys, null);
            String before = keySet(locate(query, sources, path), keys, deltas);
            deltas.define(verdictsName(path), "SELECT kk.*, " + (shape.negated ? "-1" : "1")
                    + " * ((CASE WHEN n.k0 IS NULL THEN 0 ELSE 1 END) - (CASE WHEN o.k0 IS NULL THEN 0 ELSE 1 END)) AS f FROM " + keys
                    + " kk LEFT JOIN (" + now + ") n(" + String.join(", ", k) + ") ON (" + k.stream().map(c -> "n." + c)
                            .collect(Collectors.joining(", ")) + ") = (" + on + ") LEFT JOIN (" + before + ") o(" + String.join(", ", k)
                    + ") ON (" + k.stream().map(c -> "o." + c).collect(Collectors.joining(", ")) + ") = (" + on + ")");
            return;
        }
        String now = keyCounts(locate(query, sources, path), keys, null);
        String changed = keyCounts(locate(query, sources, path), keys, deltas);
        deltas.define(verdictsName(path), "SELECT kk.*, " + (shape.negated ? "-1" : "1")
                + " * ((CASE WHEN coalesce(n.c, 0) > 0 THEN 1 ELSE 0 END) - (CASE WHEN coalesce(n.c, 0) - coalesce(d.c, 0) > 0 THEN 1 ELSE 0 END))"
                + " AS f FROM " + keys + " kk LEFT JOIN (" + now + ") n(" + String.join(", ", k) + ", c) ON ("
                + k.stream().map(c -> "n." + c).collect(Collectors.joining(", ")) + ") = (" + on + ") LEFT JOIN (" + changed + ") d("
                + String.join(", ", k) + ", c) ON (" + k.stream().map(c -> "d." + c).collect(Collectors.joining(", ")) + ") = (" + on + ")");
    }

    /**
     * The distinct inner keys, among those of CTE {@code keys}, for which the subquery has a row:
     * its table as it is now ({@code deltas} null) or as it was.
     */
    private static String keySet(Sublink s, String keys, Deltas deltas) throws PlanRefusedException {
        PlainSelect ps = s.inner.select;
        Occurrence o = s.inner.occurrences.get(0);
        List<String> columns = s.innerKeys.stream().map(Sublinks::keyColumn).toList();
        String restrict = "(" + String.join(", ", columns) + ") IN (SELECT * FROM " + keys + ")";
        if (deltas != null) {
            // the old rows of the changed keys only, as a multiset
            o.table.setSchemaName(null);
            o.table.setName(deltas.oldRows(o.source, restrict));
        }
        List<SelectItem<?>> items = new ArrayList<>();
        for (Expression key : s.innerKeys) {
            items.add(SelectItem.from(key));
        }
        ps.setSelectItems(items);
        ps.setDistinct(new net.sf.jsqlparser.statement.select.Distinct());
        List<Expression> where = new ArrayList<>(s.own);
        where.add(DeltaPlanner.parseExpression("(" + s.innerKeys.stream().map(Object::toString).collect(Collectors.joining(", "))
                + ") IN (SELECT * FROM " + keys + ")"));
        ps.setWhere(DeltaPlanner.parseExpression(where.stream().map(c -> "(" + c + ")").collect(Collectors.joining(" AND "))));
        ps.setOrderByElements(null);
        return ps.toString();
    }

    /**
     * Per inner key among those of CTE {@code keys}, the subquery's rows: counted in its table as it
     * is now ({@code deltas} null), or summed by weight among the window's changes.
     */
    private static String keyCounts(Sublink s, String keys, Deltas deltas) throws PlanRefusedException {
        PlainSelect ps = s.inner.select;
        Occurrence o = s.inner.occurrences.get(0);
        if (deltas != null) {
            o.table.setSchemaName(null);
            o.table.setName(deltas.changes(o.source));
        }
        List<SelectItem<?>> items = new ArrayList<>();
        for (Expression key : s.innerKeys) {
            items.add(SelectItem.from(key));
        }
        // one table in the subquery: its weight column is the only one of that name
        items.add(SelectItem.from(DeltaPlanner.parseExpression(deltas == null ? "count(*)" : "sum(__pgt_w)")));
        ps.setSelectItems(items);
        ps.setDistinct(null);
        List<Expression> where = new ArrayList<>(s.own);
        where.add(DeltaPlanner.parseExpression("(" + s.innerKeys.stream().map(Object::toString).collect(Collectors.joining(", "))
                + ") IN (SELECT * FROM " + keys + ")"));
        ps.setWhere(DeltaPlanner.parseExpression(where.stream().map(c -> "(" + c + ")").collect(Collectors.joining(" AND "))));
        ps.setOrderByElements(null);
        ps.setGroupByElement(new net.sf.jsqlparser.statement.select.GroupByElement()
                .withGroupByExpressions(new net.sf.jsqlparser.expression.operators.relational.ExpressionList<>(s.innerKeys)));
        return ps.toString();
    }

    /** Whether the result of a subquery that can reach every outer row changed (renames its tables). */
    private static String changed(Sublink s, Deltas deltas) {
        if (s.correlated && s.innerKeys.isEmpty()) {
            return "true";
        }
        String now = s.subquery.toString();
        asBefore(s, deltas);
        String before = s.subquery.toString();
        return switch (s.kind) {
            case EXISTS -> "(EXISTS " + now + ") IS DISTINCT FROM (EXISTS " + before + ")";
            case SCALAR -> now + " IS DISTINCT FROM " + before;
            default -> "(EXISTS " + now + ") IS DISTINCT FROM (EXISTS " + before + ")"
                    + " OR (EXISTS (SELECT FROM " + now + " __pgt_s(v) WHERE __pgt_s.v IS NULL))"
                    + " IS DISTINCT FROM (EXISTS (SELECT FROM " + before + " __pgt_s(v) WHERE __pgt_s.v IS NULL))";
        };
    }

    /**
     * For HAVING's subqueries (uncorrelated: a threshold such as TPC-H Q11's share of a total):
     * defines per subquery whether its result changed, computed only when its tables have changes,
     * and returns the condition "one of them changed": then every group is recomputed, as the
     * threshold of each moved.
     */
    static String defineHaving(String query, Source.Lookup sources, Deltas deltas) throws PlanRefusedException {
        int count = DeltaPlanner.parse(query, sources).branches().get(0).havingSublinks.size();
        List<String> any = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            Sublink s = DeltaPlanner.parse(query, sources).branches().get(0).havingSublinks.get(i);
            String pending = pending(s.inner.allOccurrences(), deltas);
            String name = "__pgt_sh" + i;
            // CASE: the subquery, twice over its whole tables, only when they changed
            deltas.define(name, "SELECT CASE WHEN " + pending + " THEN " + changed(s, deltas) + " ELSE false END AS t");
            any.add("(SELECT t FROM " + name + ")");
        }
        return String.join(" OR ", any);
    }

    /** Makes the subquery select its keys only, from the rows the conditions {@code where} keep. */
    private static void keysOnly(Sublink s, List<Expression> where) throws PlanRefusedException {
        PlainSelect ps = s.inner.select;
        List<SelectItem<?>> keys = new ArrayList<>();
        for (Expression k : s.innerKeys) {
            keys.add(SelectItem.from(k));
        }
        ps.setSelectItems(keys);
        ps.setWhere(where.isEmpty() ? null : DeltaPlanner.parseExpression(
                where.stream().map(c -> "(" + c + ")").collect(Collectors.joining(" AND "))));
        ps.setGroupByElement(null);
        ps.setHaving(null);
        ps.setDistinct(null);
        ps.setOrderByElements(null);
    }

    /** Renames every table of the subquery, its own subqueries' included, to its rows as they were. */
    private static void asBefore(Sublink s, Deltas deltas) {
        for (Occurrence o : s.inner.allOccurrences()) {
            o.table.setSchemaName(null);
            o.table.setName(deltas.oldRows(o.source));
        }
    }

    /** "The row's verdict can have changed", for the sublinks of branch {@code b} at {@code path}. */
    private static String affected(Branch b, List<Integer> path) {
        return "(" + String.join(" OR ", affected(b, path, null, null, null)) + ")";
    }

    /**
     * The same as alternatives; given each sublink's condition now and before ({@code nows},
     * {@code befores}), an uncorrelated one reaches only the rows whose own verdict of it changed,
     * and those only within its range where {@code ranges} has one (a clock's: see
     * {@link TemporalFilters#flipRange}; null: none).
     */
    private static List<String> affected(Branch b, List<Integer> path, List<String> nows, List<String> befores, List<String> ranges) {
        List<String> affected = new ArrayList<>();
        for (int i = 0; i < b.sublinks.size(); i++) {
            Sublink s = b.sublinks.get(i);
            if (!s.innerKeys.isEmpty()) {
                affected.add("(" + s.outerKeys.stream().map(Object::toString).collect(Collectors.joining(", ")) + ") IN (SELECT * FROM "
                        + keysName(child(path, i)) + ")");
            }
            if (s.global()) {
                String changed = "(SELECT t FROM " + changedName(child(path, i)) + ")";
                String range = ranges == null || ranges.get(i) == null ? "" : " AND " + ranges.get(i);
                affected.add(nows == null || s.correlated || befores.get(i) == null ? changed : "(" + changed + range + " AND (CASE WHEN "
                        + nows.get(i) + " THEN 1 ELSE 0 END) <> (CASE WHEN " + befores.get(i) + " THEN 1 ELSE 0 END))");
            }
        }
        return affected;
    }

    /**
     * Turns branch {@code b} (a fresh parse, branch number {@code bi}) into its flip term's shape:
     * WHERE becomes the plain conditions and "the row's verdict can have changed"; returns the
     * factor {@code [S_new] - [S_old]} the term's weight is multiplied by. The caller sets the select
     * list and renders the terms of every table as it was ({@link DeltaPlanner.Branch#oldTerms()}).
     */
    static String flip(Branch b, int bi, Deltas deltas) throws PlanRefusedException {
        List<String> where = new ArrayList<>();
        for (Expression c : b.plain) {
            where.add("(" + c + ")");
        }
        if (setBased(b)) {
            // the rows of the keys whose verdict changed, joined with that change (see defineVerdicts)
            Sublink s = b.sublinks.get(0);
            b.select.addJoins(new Join().withSimple(true).withRightItem(new net.sf.jsqlparser.schema.Table(verdictsName(List.of(bi, 0)))
                    .withAlias(new net.sf.jsqlparser.expression.Alias(VERDICT, false))));
            where.add("(" + s.outerKeys.stream().map(Object::toString).collect(Collectors.joining(", ")) + ") = ("
                    + IntStream.range(0, s.outerKeys.size()).mapToObj(i -> VERDICT + ".k" + i).collect(Collectors.joining(", ")) + ")");
            where.add(VERDICT + ".f <> 0");
            b.select.setWhere(DeltaPlanner.parseExpression(String.join(" AND ", where)));
            return VERDICT + ".f";
        }
        List<String> nows = new ArrayList<>();
        List<String> befores = new ArrayList<>();
        List<String> ranges = new ArrayList<>();
        for (int i = 0; i < b.sublinks.size(); i++) {
            Sublink s = b.sublinks.get(i);
            String values = valuesName(child(List.of(bi), i));
            // a clock's rows are found by the range its move swept, by index where there is one
            ranges.add(clock(s) ? TemporalFilters.flipRange(s.condition, "(SELECT " + values + ".o FROM " + values + ")",
                    "(SELECT " + values + ".n FROM " + values + ")") : null);
            if (constant(s)) {
                s.subquery.setSelect(plainSelect("SELECT " + values + ".n FROM " + values));
                nows.add("(" + s.condition + ")");
                s.subquery.setSelect(plainSelect("SELECT " + values + ".o FROM " + values));
            } else {
                nows.add("(" + s.condition + ")");
                asBefore(s, deltas);
            }
            befores.add("(" + s.condition + ")");
        }
        // An uncorrelated subquery whose result changed reaches every row, but a row's own verdict of
        // it (two values computed once, compared) changes for few: for TPC-H Q22's c_acctbal > (SELECT
        // avg(...)), those between the old and the new average. Only those, and the rows of changed
        // keys, go on to the factor, which computes the other subqueries' verdicts (a NOT EXISTS
        // over the old rows, per row): in the factor alone, every row went through it.
        List<String> reached = affected(b, List.of(bi), nows, befores, null);
        // (in WHERE, which is parsed, without the old verdicts of the other subqueries, whose text
        // nests the old rows of their tables: see FACTOR)
        List<String> constants = new ArrayList<>();
        for (int i = 0; i < b.sublinks.size(); i++) {
            constants.add(constant(b.sublinks.get(i)) ? befores.get(i) : null);
        }
        where.add("(" + String.join(" OR ", affected(b, List.of(bi), nows, constants, ranges)) + ")");
        b.select.setWhere(DeltaPlanner.parseExpression(String.join(" AND ", where)));
        return "(CASE WHEN " + String.join(" OR ", reached) + " THEN (CASE WHEN " + String.join(" AND ", nows)
                + " THEN 1 ELSE 0 END) - (CASE WHEN " + String.join(" AND ", befores) + " THEN 1 ELSE 0 END) ELSE 0 END)";
    }

    static PlainSelect plainSelect(String sql) throws PlanRefusedException {
        try {
            return (PlainSelect) net.sf.jsqlparser.parser.CCJSqlParserUtil.parse(sql);
        } catch (net.sf.jsqlparser.JSQLParserException e) {
            throw new PlanRefusedException("the engine could not build its subquery values: " + e.getMessage());
        }
    }

    /** The alias of a set-based flip term's verdicts (see {@link #flip}). */
    private static final String VERDICT = "__pgt_svf";

    /**
     * Stands for the flip factor in a term's parse tree until the term is printed. JSqlParser's
     * lookahead is exponential in nested parenthesised subqueries, and the factor nests the old rows
     * of every subquery table, so the factor is never parsed: the term is printed with this column
     * name in its place, and the name swapped for the factor's text. The query must not contain the
     * name, so the swap cannot touch anything of the query's (see {@link #placeholder(String)}).
     */
    static final String FACTOR = "__pgt_flip_factor";

    /** The placeholder, after checking that the query's text cannot contain it. */
    static String placeholder(String query) throws PlanRefusedException {
        if (query.contains(FACTOR)) {
            throw new PlanRefusedException("the query contains the engine's internal name " + FACTOR);
        }
        return FACTOR;
    }

    /** A printed term with the factor in the placeholder's place. */
    static String withFactor(String term, String factor) {
        return term.replace(FACTOR, factor);
    }

    /** Stands for a LATERAL item that computes the flip factor, until the term is printed. */
    private static final String FACTOR_ITEM = "__pgt_flip_lateral";

    /**
     * Adds to branch {@code b}'s FROM list, last, a LATERAL item that will compute the flip factor
     * once per row ({@link #withLateralFactor}), and returns the expression that reads it.
     */
    static String lateralFactor(Branch b, String query) throws PlanRefusedException {
        if (query.contains(FACTOR_ITEM)) {
            throw new PlanRefusedException("the query contains the engine's internal name " + FACTOR_ITEM);
        }
        placeholder(query);
        // after every other item of the FROM list, so that the LATERAL may read them all
        b.select.addJoins(new Join().withSimple(true).withRightItem(
                new net.sf.jsqlparser.schema.Table(FACTOR_ITEM).withAlias(new net.sf.jsqlparser.expression.Alias(FACTOR, false))));
        // rows whose verdicts did not change contribute nothing: not passed on to the aggregation
        String nonZero = FACTOR + ".f <> 0";
        b.select.setWhere(DeltaPlanner.parseExpression(b.select.getWhere() == null ? nonZero : "(" + b.select.getWhere() + ") AND " + nonZero));
        return FACTOR + ".f";
    }

    /** A printed term whose LATERAL placeholder item computes {@code factor} (see {@link #lateralFactor}). */
    static String withLateralFactor(String term, String factor) {
        // OFFSET 0: pulled up, the item's column would be the factor's expression at every reference
        // (a running total reads it several times), each evaluating the subqueries again
        return term.replace(FACTOR_ITEM + " " + FACTOR, "LATERAL (SELECT " + factor + " AS f OFFSET 0) " + FACTOR);
    }

    /** Gates a flip term: it runs only when a subquery's table has changes in the window. */
    static DeltaPlanner.Gate pending(Branch b, Deltas deltas) {
        List<Occurrence> tables = b.sublinks.stream().flatMap(s -> s.inner.allOccurrences().stream()).toList();
        return new DeltaPlanner.Gate(pending(tables, deltas), Set.of(),
                tables.stream().map(o -> o.source.buffer()).collect(Collectors.toCollection(java.util.LinkedHashSet::new)));
    }

    private static String pending(List<Occurrence> tables, Deltas deltas) {
        return tables.stream().map(o -> deltas.pending(o.source)).distinct().collect(Collectors.joining(" OR "));
    }
}
