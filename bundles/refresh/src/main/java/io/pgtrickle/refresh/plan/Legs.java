package io.pgtrickle.refresh.plan;

import io.pgtrickle.refresh.plan.DeltaPlanner.Gate;
import java.util.List;
import java.util.Set;

/**
 * Marks the pieces of a differential statement that only changes of certain sources make worth
 * running: a term of changes (a leg of a UNION ALL) and the "less its changes" half of an old
 * state. Before running the statement, {@code pgtrickle.live_legs} (R__50_refresh.sql) leaves out
 * the pieces whose sources have no changes in the window.
 *
 * <p>Why not leave that to PostgreSQL: each term is gated by the refresh's list of buffers with
 * changes, which PostgreSQL folds to false while planning, but it still spends time on every term
 * it then excludes. TPC-H Q8's statement has 65 terms; with only lineitem changed, planning it took
 * 7 ms, and 1.2 ms without the 63 terms of other sources. An old state written as a table less its
 * changes is a UNION ALL that PostgreSQL can only hash whole; without changes it is the table.
 *
 * <p>The marks are SQL comments ({@code /*pgt:live all;any*}{@code /} ... {@code /*pgt:end*}{@code /}),
 * after {@value #MARKED} at its start, so the statement as stored still runs as it is (and does
 * when the refresh does not know which sources changed). While the plan is built they are NUL characters, which no query's text can
 * hold (PostgreSQL's text cannot), so {@link #union} can find them; {@link #marked} turns them into
 * comments, or drops them from a statement whose query text has such a comment of its own.
 */
final class Legs {
    private static final char MARK = '\0';
    private static final String END = MARK + "end" + MARK;
    /** What a statement with marks starts with: only such a statement's comments are read as marks. */
    static final String MARKED = "/*pgt:marks*/";

    private Legs() {
    }

    /** A leg, marked with what its gate needs; {@link #union} closes the mark. */
    static String needing(Gate gate, String leg) {
        return markable(gate) ? open(gate) + leg : leg;
    }

    /** A piece of SQL left out when what {@code gate} needs has no changes. */
    static String section(Gate gate, String sql) {
        return markable(gate) ? open(gate) + sql + END : sql;
    }

    /**
     * The legs as one UNION ALL, each marked leg with one of the separators next to it, so that
     * any of them can be left out. One leg always stays (a union cannot be empty): one that needs
     * nothing if there is such a leg, else the first, which PostgreSQL then excludes by its gate.
     */
    static String union(List<String> legs) {
        int kept = 0;
        for (int i = 0; i < legs.size(); i++) {
            if (mark(legs.get(i)) == null) {
                kept = i;
                break;
            }
        }
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < legs.size(); i++) {
            String leg = legs.get(i);
            String mark = mark(leg);
            String body = mark == null ? leg : leg.substring(mark.length());
            if (i == kept) {
                b.append(body);
            } else if (mark == null) {
                b.append(i < kept ? body + "\n UNION ALL " : "\n UNION ALL " + body);
            } else {
                b.append(mark).append(i < kept ? body + "\n UNION ALL " : "\n UNION ALL " + body).append(END);
            }
        }
        return b.toString();
    }

    /** The statement with its marks as comments, or without them if its text has such a comment already. */
    static String marked(String sql) {
        if (sql == null) {
            return null;
        }
        String plain = sql.replaceAll(MARK + "[^" + MARK + "]*" + MARK, "");
        if (plain.contains("/*pgt:")) {
            return plain;
        }
        if (plain.length() == sql.length()) {
            return sql;
        }
        return MARKED + sql.replace(END, "/*pgt:end*/").replaceAll(MARK + "live ([^" + MARK + "]*)" + MARK, "/*pgt:live $1*/");
    }

    private static String open(Gate gate) {
        return MARK + "live " + String.join(",", gate.all()) + ";" + String.join(",", gate.any()) + MARK;
    }

    /** The mark a leg starts with, or null. */
    private static String mark(String leg) {
        if (!leg.startsWith(MARK + "live ")) {
            return null;
        }
        return leg.substring(0, leg.indexOf(MARK, 1) + 1);
    }

    /** Whether the gate needs something, by names the marks can carry (buffers are named by the engine). */
    private static boolean markable(Gate gate) {
        if (gate.all().isEmpty() && gate.any().isEmpty()) {
            return false;
        }
        return plainNames(gate.all()) && plainNames(gate.any());
    }

    private static boolean plainNames(Set<String> names) {
        return names.stream().allMatch(n -> !n.isEmpty() && n.chars().noneMatch(c -> c == MARK || c == ',' || c == ';' || c == '*' || c == '/'));
    }
}
