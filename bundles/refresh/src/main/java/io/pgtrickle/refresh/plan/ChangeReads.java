package io.pgtrickle.refresh.plan;

import io.pgtrickle.refresh.plan.DeltaPlanner.Branch;
import io.pgtrickle.refresh.plan.DeltaPlanner.Occurrence;
import io.pgtrickle.refresh.plan.DeltaPlanner.Parsed;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import net.sf.jsqlparser.expression.Expression;
import net.sf.jsqlparser.expression.ExpressionVisitorAdapter;
import net.sf.jsqlparser.expression.operators.conditional.AndExpression;
import net.sf.jsqlparser.expression.operators.conditional.OrExpression;
import net.sf.jsqlparser.schema.Column;
import net.sf.jsqlparser.schema.Table;
import net.sf.jsqlparser.statement.select.FromItem;
import net.sf.jsqlparser.statement.select.Join;
import net.sf.jsqlparser.statement.select.ParenthesedFromItem;

/**
 * What a refresh statement reads of a source's changes: only the columns the query names, and only
 * the changed rows the query's own conditions on that source can keep. Changes are netted (summed
 * per row) before they are joined; at 0.1% of TPC-H's lineitem that is thousands of rows of sixteen
 * columns hashed per refresh, of which a date filter keeps a few dozen. Narrowing and filtering
 * first nets the same rows: a condition and a projection give equal rows equal results, so they
 * commute with netting, and every term still applies all of the query's conditions itself.
 */
final class ChangeReads {

    private ChangeReads() {
    }

    // ---------------------------------------------------------------- columns

    /**
     * The source with only the columns {@code query} can read of it, in table order. By name, so a
     * superset: a column whose name appears anywhere (as another table's column, a function's
     * name) is kept. A query that reads whole rows is refused before this (see {@link #wholeRows}).
     */
    static Source narrowed(Source s, String query) {
        Words words = words(query);
        List<Integer> kept = IntStream.range(0, s.columns().size()).filter(i -> words.bare.contains(normal(s.columns().get(i))))
                .boxed().toList();
        if (kept.size() == s.columns().size()) {
            return s;
        }
        if (kept.isEmpty()) {
            // count(*) of a table: one column keeps a row a row (a row of no columns cannot be netted by value)
            kept = List.of(0);
        }
        List<Integer> k = kept;
        List<String> columns = k.stream().map(s.columns()::get).toList();
        return new Source(s.name(), s.buffer(), columns, k.stream().map(s.types()::get).toList(),
                k.stream().map(s.identical()::get).toList(), s.rows(), s.uniqueKeys().stream().filter(columns::containsAll).toList());
    }

    /**
     * The query with the select list of every {@code EXISTS} subquery that lists only columns
     * written {@code SELECT 1}: what such a subquery selects does not change whether it has rows.
     * PostgreSQL's normalised text spells {@code EXISTS (SELECT * FROM lineitem ...)} out as every
     * column of the table, which {@link #narrowed} then kept, so the changes of all sixteen of
     * lineitem's columns were netted for TPC-H Q4, which reads three. A list with anything but
     * column names (an aggregate makes a subquery of one row) is kept, as is {@code DISTINCT}.
     */
    static String existsSelectingOne(String sql) {
        StringBuilder out = new StringBuilder(sql.length());
        int n = sql.length();
        int i = 0;
        int copied = 0;
        while (i < n) {
            char c = sql.charAt(i);
            if (c == '\'' || c == '"') {
                i = quotedEnd(sql, i);
                continue;
            }
            if (!Character.isLetter(c) && c != '_') {
                i++;
                continue;
            }
            int start = i;
            i = wordEnd(sql, i);
            if (!sql.substring(start, i).equalsIgnoreCase("exists") || (start > 0 && isWordChar(sql.charAt(start - 1)))) {
                continue;
            }
            int j = spaceEnd(sql, i);
            if (j >= n || sql.charAt(j) != '(') {
                continue;
            }
            j = spaceEnd(sql, j + 1);
            int selectEnd = wordEnd(sql, j);
            if (!sql.substring(j, selectEnd).equalsIgnoreCase("select")) {
                continue;
            }
            int listStart = spaceEnd(sql, selectEnd);
            int listEnd = columnListEnd(sql, listStart);
            if (listEnd < 0) {
                continue;
            }
            out.append(sql, copied, listStart).append("1 ");
            copied = listEnd;
            i = listEnd;
        }
        return copied == 0 ? sql : out.append(sql, copied, n).toString();
    }

    /**
     * Where the {@code FROM} after a select list of column names only ({@code a.b, "C"}) starts,
     * or -1 when the list at {@code i} is anything else, or empty.
     */
    private static int columnListEnd(String sql, int i) {
        int n = sql.length();
        boolean any = false;
        while (true) {
            // one name: identifiers joined by dots
            while (true) {
                if (i < n && sql.charAt(i) == '"') {
                    i = quotedEnd(sql, i);
                } else if (i < n && (Character.isLetter(sql.charAt(i)) || sql.charAt(i) == '_')) {
                    int end = wordEnd(sql, i);
                    String word = sql.substring(i, end);
                    if (word.equalsIgnoreCase("from")) {
                        return any ? i : -1;
                    }
                    if (word.equalsIgnoreCase("distinct") || word.equalsIgnoreCase("all")) {
                        return -1;
                    }
                    i = end;
                } else {
                    return -1;
                }
                int j = spaceEnd(sql, i);
                if (j < n && sql.charAt(j) == '.') {
                    i = spaceEnd(sql, j + 1);
                    continue;
                }
                i = j;
                break;
            }
            any = true;
            if (i < n && sql.charAt(i) == ',') {
                i = spaceEnd(sql, i + 1);
                continue;
            }
            int end = wordEnd(sql, i);
            return end > i && sql.substring(i, end).equalsIgnoreCase("from") ? i : -1;
        }
    }

    private static boolean isWordChar(char c) {
        return Character.isLetterOrDigit(c) || c == '_' || c == '$';
    }

    private static int wordEnd(String sql, int i) {
        while (i < sql.length() && isWordChar(sql.charAt(i))) {
            i++;
        }
        return i;
    }

    private static int spaceEnd(String sql, int i) {
        while (i < sql.length() && Character.isWhitespace(sql.charAt(i))) {
            i++;
        }
        return i;
    }

    /** Past the closing quote of the literal or quoted identifier at {@code i} (a doubled quote stays inside). */
    private static int quotedEnd(String sql, int i) {
        char q = sql.charAt(i);
        int n = sql.length();
        i++;
        while (i < n) {
            if (sql.charAt(i) == q) {
                if (i + 1 < n && sql.charAt(i + 1) == q) {
                    i += 2;
                    continue;
                }
                return i + 1;
            }
            i++;
        }
        return n;
    }

    /**
     * Whether the query reads some table's whole row, which PostgreSQL's normalised text always
     * writes {@code t.*} ({@code row_to_json(t)} prints as {@code row_to_json(t.*)}). A term reads a
     * table's changes through a relation of the same name that also carries the change's weight,
     * so its whole row is not the table's.
     */
    static boolean wholeRows(String query) {
        return words(query).wholeRows;
    }

    /** Identifiers of a query: those standing alone (not followed by a dot), and whether some {@code x.*} is read. */
    private record Words(Set<String> bare, boolean wholeRows) {
    }

    /**
     * A lexer of just enough SQL for {@link #narrowed}: string literals are skipped, quoted
     * identifiers kept as written, unquoted ones folded to lower case, as PostgreSQL does.
     * Hand-written because the identifiers are all it needs; JSqlParser's tree would have to be
     * walked through every kind of node that can hold a column.
     */
    private static Words words(String sql) {
        Set<String> bare = new HashSet<>();
        boolean wholeRows = false;
        int i = 0;
        int n = sql.length();
        while (i < n) {
            char c = sql.charAt(i);
            if (c == '\'') {
                i = quotedEnd(sql, i);
                continue;
            }
            String word;
            if (c == '"') {
                int start = i;
                i = quotedEnd(sql, i);
                word = sql.substring(start, i);
            } else if (Character.isLetter(c) || c == '_') {
                int start = i;
                i = wordEnd(sql, i);
                word = sql.substring(start, i).toLowerCase(Locale.ROOT);
            } else {
                i++;
                continue;
            }
            int j = spaceEnd(sql, i);
            if (j < n && sql.charAt(j) == '.') {
                int k = spaceEnd(sql, j + 1);
                wholeRows |= k < n && sql.charAt(k) == '*';
            } else {
                bare.add(word);
            }
        }
        return new Words(bare, wholeRows);
    }

    /** A name as {@link #words} keeps it: quoted as written, or folded to lower case. */
    private static String normal(String name) {
        return name.startsWith("\"") ? name : name.toLowerCase(Locale.ROOT);
    }

    // ---------------------------------------------------------------- rows

    /**
     * Per change buffer, a condition over its columns (written {@code b.column}) that every changed
     * row the query can use satisfies: the OR, over the source's occurrences, of each occurrence's
     * own conditions (AND-ed conditions of WHERE or of an inner join's ON that read that occurrence
     * only). A buffer is absent when some occurrence has no such condition.
     */
    static Map<String, String> filters(Parsed parsed) {
        Map<String, List<String>> per = new LinkedHashMap<>();
        for (Branch b : parsed.branches()) {
            List<Expression> conditions = new ArrayList<>(b.plain);
            onConditions(b.select.getFromItem(), b.select.getJoins(), conditions);
            collect(b, conditions, per);
        }
        Map<String, String> out = new LinkedHashMap<>();
        per.forEach((buffer, alternatives) -> {
            if (!alternatives.contains(null)) {
                out.put(buffer, alternatives.stream().distinct().map(a -> "(" + a + ")").collect(Collectors.joining(" OR ")));
            }
        });
        return out;
    }

    private static void collect(Branch b, List<Expression> conditions, Map<String, List<String>> per) {
        for (Occurrence o : b.occurrences) {
            List<String> own = new ArrayList<>();
            for (Expression c : conditions) {
                String implied = implied(c, o, b.occurrences.size() == 1);
                if (implied != null) {
                    own.add(implied);
                }
            }
            per.computeIfAbsent(o.source.buffer(), k -> new ArrayList<>()).add(own.isEmpty() ? null : String.join(" AND ", own));
        }
        for (Sublinks.Sublink s : b.sublinks) {
            collect(s.inner, s.own, per);
        }
        for (Sublinks.Sublink s : b.havingSublinks) {
            collect(s.inner, s.own, per);
        }
    }

    /** The inner joins' ON conditions, AND-ed parts, of a FROM clause (outer joins are refused before this). */
    private static void onConditions(FromItem from, List<Join> joins, List<Expression> out) {
        if (from instanceof ParenthesedFromItem p) {
            onConditions(p.getFromItem(), p.getJoins(), out);
        }
        if (joins != null) {
            for (Join j : joins) {
                onConditions(j.getRightItem(), null, out);
                for (Expression on : j.getOnExpressions()) {
                    out.addAll(Sublinks.conjuncts(on));
                }
            }
        }
    }

    /**
     * The weakest condition on occurrence {@code o} alone that {@code c} implies, over the buffer
     * row {@code b}; null for "none" (true). Through AND and OR: TPC-H Q19's
     * {@code (p.brand = ... AND l.quantity BETWEEN ...) OR (...)} implies, of lineitem,
     * {@code (l.quantity BETWEEN ...) OR (...)}, a few rows of its changes.
     */
    private static String implied(Expression c, Occurrence o, boolean alone) {
        Expression u = Sublinks.unparen(c);
        if (u instanceof AndExpression and) {
            String l = implied(and.getLeftExpression(), o, alone);
            String r = implied(and.getRightExpression(), o, alone);
            return l == null ? r : r == null ? l : l + " AND " + r;
        }
        if (u instanceof OrExpression or) {
            String l = implied(or.getLeftExpression(), o, alone);
            String r = implied(or.getRightExpression(), o, alone);
            return l == null || r == null ? null : "(" + l + " OR " + r + ")";
        }
        String renamed = renamed(u, o, alone);
        return renamed == null ? null : "(" + renamed + ")";
    }

    /**
     * {@code c} with its columns read from the buffer row {@code b}, or null when it reads anything
     * but occurrence {@code o}'s columns (another table, an outer query, a subquery) or reads none.
     * An unqualified column is {@code o}'s only in a FROM of one table: PostgreSQL qualifies every
     * column of a query with more tables, and of a subquery.
     */
    private static String renamed(Expression c, Occurrence o, boolean alone) {
        if (Sublinks.hasSubquery(c) || DeltaPlanner.aggregates(c)) {
            return null;
        }
        Expression copy;
        try {
            copy = DeltaPlanner.parseExpression(c.toString());
        } catch (PlanRefusedException e) {
            return null;
        }
        boolean[] foreign = {false};
        int[] columns = {0};
        copy.accept(new ExpressionVisitorAdapter<Void>() {
            @Override
            public <S> Void visit(Column column, S context) {
                Table t = column.getTable();
                String table = t == null ? null : t.getName();
                boolean mine = table == null ? alone && o.source.columns().contains(normal(column.getColumnName()))
                        : t.getSchemaName() == null && table.equals(o.alias);
                if (mine) {
                    column.setTable(new Table("b"));
                    columns[0]++;
                } else {
                    foreign[0] = true;
                }
                return null;
            }
        }, null);
        if (foreign[0] || columns[0] == 0) {
            return null;
        }
        String sql = copy.toString();
        // a column the visitor did not reach still names the occurrence: then leave the condition out
        return java.util.regex.Pattern.compile("(?<![\\w\"])" + java.util.regex.Pattern.quote(o.alias) + "\\s*\\.").matcher(sql).find()
                ? null : sql;
    }
}
