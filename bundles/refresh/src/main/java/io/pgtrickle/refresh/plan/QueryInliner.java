package io.pgtrickle.refresh.plan;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.function.Consumer;
import net.sf.jsqlparser.JSQLParserException;
import net.sf.jsqlparser.expression.Alias;
import net.sf.jsqlparser.expression.AnalyticExpression;
import net.sf.jsqlparser.expression.CaseExpression;
import net.sf.jsqlparser.expression.DoubleValue;
import net.sf.jsqlparser.expression.Expression;
import net.sf.jsqlparser.expression.ExpressionVisitorAdapter;
import net.sf.jsqlparser.expression.ExtractExpression;
import net.sf.jsqlparser.expression.Function;
import net.sf.jsqlparser.expression.LongValue;
import net.sf.jsqlparser.expression.NullValue;
import net.sf.jsqlparser.expression.StringValue;
import net.sf.jsqlparser.expression.operators.relational.ExistsExpression;
import net.sf.jsqlparser.parser.CCJSqlParserUtil;
import net.sf.jsqlparser.schema.Column;
import net.sf.jsqlparser.schema.Table;
import net.sf.jsqlparser.statement.Statement;
import net.sf.jsqlparser.statement.select.AllColumns;
import net.sf.jsqlparser.statement.select.AllTableColumns;
import net.sf.jsqlparser.statement.select.FromItem;
import net.sf.jsqlparser.statement.select.Join;
import net.sf.jsqlparser.statement.select.LateralSubSelect;
import net.sf.jsqlparser.statement.select.OrderByElement;
import net.sf.jsqlparser.statement.select.ParenthesedFromItem;
import net.sf.jsqlparser.statement.select.ParenthesedSelect;
import net.sf.jsqlparser.statement.select.PlainSelect;
import net.sf.jsqlparser.statement.select.Select;
import net.sf.jsqlparser.statement.select.SelectItem;
import net.sf.jsqlparser.statement.select.SetOperationList;
import net.sf.jsqlparser.statement.select.WithItem;

/**
 * Inlines subqueries in FROM and references to non-recursive WITH queries into the query that reads
 * them, as PostgreSQL's {@code pull_up_subqueries} does, so that the differential planner sees one
 * flat SELECT over tables. A subquery {@code (SELECT ...) alias [(col aliases)]}, or a WITH query
 * named in FROM, is inlinable when it is a plain SELECT over tables and subqueries without
 * aggregates, GROUP BY, HAVING, DISTINCT, window functions, ORDER BY, LIMIT/OFFSET, set operations,
 * subqueries in expressions, set-returning or volatile-looking calls. Then its FROM items and joins
 * take its place in the enclosing FROM (renamed when a name is taken), its WHERE is ANDed into the
 * enclosing WHERE (or into the ON of the inner join it is the right side of), and every reference
 * {@code alias.col} of the enclosing query becomes the subquery's expression for {@code col}. Only
 * positions in inner joins are inlined (outer joins need PostgreSQL's placeholder variables); a WITH
 * query is inlined at every reference (a copy each) and dropped once none is left. What is not
 * inlinable stays as written: the planner then refuses it with a reason naming the construct.
 *
 * <p>One inlining per step, each on a fresh parse of the previous step's text, so every step sees a
 * consistent tree. A query with nothing to inline comes back as given, byte for byte.
 */
final class QueryInliner {

    private static final int MAX_STEPS = 500;

    /** Aggregates a subquery may call (see DeltaPlanner's list); any of them makes it not inlinable. */
    private static final Set<String> AGGREGATES = Set.of("count", "sum", "avg", "min", "max", "string_agg", "array_agg",
            "bool_and", "bool_or", "every", "bit_and", "bit_or", "bit_xor", "json_agg", "jsonb_agg", "json_object_agg",
            "jsonb_object_agg", "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp", "corr",
            "covar_pop", "covar_samp", "xmlagg", "range_agg", "range_intersect_agg", "any_value", "mode",
            "percentile_cont", "percentile_disc", "regr_count", "regr_sum", "regr_avgx", "regr_avgy", "regr_intercept",
            "regr_r2", "regr_slope", "regr_sxx", "regr_sxy", "regr_syy", "json_arrayagg", "json_objectagg");

    /** Set-returning functions: in a select list they multiply rows, so the subquery stays. */
    private static final Set<String> SET_RETURNING = Set.of("generate_series", "generate_subscripts", "unnest",
            "regexp_matches", "regexp_split_to_table", "string_to_table", "json_each", "json_each_text", "jsonb_each",
            "jsonb_each_text", "json_array_elements", "json_array_elements_text", "jsonb_array_elements",
            "jsonb_array_elements_text", "json_object_keys", "jsonb_object_keys", "jsonb_path_query", "json_populate_recordset",
            "jsonb_populate_recordset", "json_to_recordset", "jsonb_to_recordset", "ts_stat", "ts_debug", "pg_options_to_table");

    /** Volatile calls: inlined, a call evaluated once per subquery row could be evaluated more often. */
    private static final Set<String> VOLATILE = Set.of("random", "random_normal", "setseed", "nextval", "setval", "currval",
            "lastval", "clock_timestamp", "timeofday", "gen_random_uuid", "uuidv4", "uuidv7", "uuid_generate_v1",
            "uuid_generate_v1mc", "uuid_generate_v4", "txid_current", "pg_current_xact_id", "pg_sleep", "pg_notify",
            "set_config", "dblink", "pg_advisory_lock", "pg_try_advisory_lock", "lo_import", "lo_export");

    /** Words that read as unqualified columns but are not: never qualified with a table name. */
    private static final Set<String> NOT_COLUMNS = Set.of("current_user", "current_role", "session_user", "user",
            "system_user", "current_date", "current_time", "current_timestamp", "localtime", "localtimestamp",
            "current_catalog", "current_schema", "true", "false", "null", "default");

    private QueryInliner() {
    }

    /**
     * The query with every inlinable subquery in FROM and every reference to an inlinable WITH query
     * inlined; the query itself, unchanged, when there is nothing to inline or it cannot be read.
     */
    static String inline(String query) throws PlanRefusedException {
        Statement statement;
        try {
            statement = CCJSqlParserUtil.parse(DeltaPlanner.readable(query));
        } catch (JSQLParserException e) {
            return query; // the planner reports it
        }
        if (!(statement instanceof Select)) {
            return query;
        }
        boolean changed = false;
        for (int step = 0;; step++) {
            if (step == MAX_STEPS) {
                throw new PlanRefusedException("the query nests more subqueries and WITH queries than the engine inlines");
            }
            Select select = (Select) statement;
            String text = select.toString();
            if (!new Step(text).select(select, Scope.EMPTY, List.of()) && !dropUnused(select)) {
                break;
            }
            changed = true;
            try {
                statement = CCJSqlParserUtil.parse(select.toString());
            } catch (JSQLParserException e) {
                throw new PlanRefusedException("the engine could not read the query back after inlining a subquery: "
                        + firstLine(e));
            }
        }
        return changed ? statement.toString() : query;
    }

    // ---------------------------------------------------------------- names

    /** A name as PostgreSQL compares it: unquoted folds to lower case, quoted is exact. */
    static String norm(String name) {
        if (name.length() >= 2 && name.startsWith("\"") && name.endsWith("\"")) {
            return name.substring(1, name.length() - 1).replace("\"\"", "\"");
        }
        return name.toLowerCase(Locale.ROOT);
    }

    /** The name a table of a FROM list is known by in the query: its alias, else its own name (normalised). */
    static String knownAs(Table t) {
        return norm(t.getAlias() != null ? t.getAlias().getName() : t.getName());
    }

    /** The identifiers of a text (outside string literals), normalised. */
    static List<Token> tokens(String sql) {
        List<Token> out = new ArrayList<>();
        int i = 0;
        int n = sql.length();
        while (i < n) {
            char ch = sql.charAt(i);
            if (ch == '\'') {
                int end = i + 1;
                while (end < n && !(sql.charAt(end) == '\'' && (end + 1 >= n || sql.charAt(end + 1) != '\''))) {
                    end += sql.charAt(end) == '\'' ? 2 : 1;
                }
                i = end + 1;
            } else if (ch == '"') {
                int end = i + 1;
                while (end < n && !(sql.charAt(end) == '"' && (end + 1 >= n || sql.charAt(end + 1) != '"'))) {
                    end += sql.charAt(end) == '"' ? 2 : 1;
                }
                end = Math.min(end + 1, n);
                out.add(new Token(norm(sql.substring(i, end)), i > 0 && sql.charAt(i - 1) == '.', end < n && sql.charAt(end) == '.'));
                i = end;
            } else if (Character.isLetter(ch) || ch == '_') {
                int end = i + 1;
                while (end < n && (Character.isLetterOrDigit(sql.charAt(end)) || sql.charAt(end) == '_' || sql.charAt(end) == '$')) {
                    end++;
                }
                boolean afterDot = i > 0 && sql.charAt(i - 1) == '.';
                if (i == 0 || !(Character.isDigit(sql.charAt(i - 1)))) {
                    out.add(new Token(norm(sql.substring(i, end)), afterDot, end < n && sql.charAt(end) == '.'));
                }
                i = end;
            } else {
                i++;
            }
        }
        return out;
    }

    record Token(String name, boolean afterDot, boolean beforeDot) {
    }

    /** A scope of WITH queries: name to its definition, or null where a recursive one hides the name. */
    record Scope(Map<String, WithItem<?>> names) {
        static final Scope EMPTY = new Scope(Map.of());

        Scope with(String name, WithItem<?> item) {
            Map<String, WithItem<?>> m = new HashMap<>(names);
            m.put(name, item);
            return new Scope(m);
        }
    }

    // ---------------------------------------------------------------- join lists

    /** A FROM list or a parenthesised join: a first item and the joins after it. */
    private interface Container {
        FromItem first();

        void first(FromItem item);

        List<Join> joins();

        void joins(List<Join> joins);

        boolean parenthesised();
    }

    private static Container of(PlainSelect s) {
        return new Container() {
            public FromItem first() {
                return s.getFromItem();
            }

            public void first(FromItem item) {
                s.setFromItem(item);
            }

            public List<Join> joins() {
                return s.getJoins() == null ? List.of() : s.getJoins();
            }

            public void joins(List<Join> joins) {
                s.setJoins(joins.isEmpty() ? null : joins);
            }

            public boolean parenthesised() {
                return false;
            }
        };
    }

    private static Container of(ParenthesedFromItem p) {
        return new Container() {
            public FromItem first() {
                return p.getFromItem();
            }

            public void first(FromItem item) {
                p.setFromItem(item);
            }

            public List<Join> joins() {
                return p.getJoins() == null ? List.of() : p.getJoins();
            }

            public void joins(List<Join> joins) {
                p.setJoins(joins.isEmpty() ? null : joins);
            }

            public boolean parenthesised() {
                return true;
            }
        };
    }

    /** A position in a join list: the first item (join -1) or the right item of join {@code join}. */
    private record Slot(Container in, int join) {
        FromItem item() {
            return join < 0 ? in.first() : in.joins().get(join).getRightItem();
        }

        Join theJoin() {
            return join < 0 ? null : in.joins().get(join);
        }
    }

    static boolean innerOn(Join j) {
        return !j.isSimple() && !j.isCross() && !j.isOuter() && !j.isLeft() && !j.isRight() && !j.isFull() && !j.isNatural()
                && !j.isSemi() && !j.isApply() && !j.isStraight() && (j.getUsingColumns() == null || j.getUsingColumns().isEmpty())
                && j.getOnExpressions() != null && !j.getOnExpressions().isEmpty();
    }

    static boolean crossOrComma(Join j) {
        return (j.isSimple() || j.isCross()) && !j.isOuter() && !j.isLeft() && !j.isRight() && !j.isFull() && !j.isNatural()
                && !j.isSemi() && !j.isApply() && (j.getOnExpressions() == null || j.getOnExpressions().isEmpty())
                && (j.getUsingColumns() == null || j.getUsingColumns().isEmpty());
    }

    /**
     * The slots of a FROM clause and the names its items define, or false when it has something
     * inlining cannot see through (an outer, NATURAL, USING or LATERAL join, an aliased join, a
     * function or VALUES): then nothing in this FROM is inlined.
     */
    private static boolean layout(Container c, List<Slot> slots, List<String> names) {
        if (!item(c.first(), new Slot(c, -1), slots, names)) {
            return false;
        }
        for (int i = 0; i < c.joins().size(); i++) {
            Join j = c.joins().get(i);
            if (!innerOn(j) && !crossOrComma(j)) {
                return false;
            }
            if (!item(j.getRightItem(), new Slot(c, i), slots, names)) {
                return false;
            }
        }
        return true;
    }

    private static boolean item(FromItem item, Slot slot, List<Slot> slots, List<String> names) {
        if (item instanceof Table t) {
            if (t.getSampleClause() != null || t.getPivot() != null || t.getUnPivot() != null) {
                return false;
            }
            names.add(knownAs(t));
            slots.add(slot);
            return true;
        }
        if (item instanceof LateralSubSelect) {
            return false;
        }
        if (item instanceof ParenthesedSelect p) {
            if (p.getAlias() == null || p.getPivot() != null || p.getUnPivot() != null || p.getSampleClause() != null) {
                return false;
            }
            names.add(norm(p.getAlias().getName()));
            slots.add(slot);
            return true;
        }
        if (item instanceof ParenthesedFromItem p && p.getAlias() == null && p.getPivot() == null && p.getUnPivot() == null
                && p.getSampleClause() == null) {
            return layout(of(p), slots, names);
        }
        return false;
    }

    // ---------------------------------------------------------------- expressions

    /** Every expression of a SELECT's own clauses, its FROM's ON conditions included. */
    static void clauses(PlainSelect s, Consumer<Expression> to) {
        for (SelectItem<?> i : s.getSelectItems()) {
            to.accept(i.getExpression());
        }
        if (s.getDistinct() != null && s.getDistinct().getOnSelectItems() != null) {
            for (SelectItem<?> i : s.getDistinct().getOnSelectItems()) {
                to.accept(i.getExpression());
            }
        }
        to.accept(s.getWhere());
        if (s.getGroupBy() != null && s.getGroupBy().getGroupByExpressionList() != null) {
            for (Object e : s.getGroupBy().getGroupByExpressionList()) {
                to.accept((Expression) e);
            }
        }
        to.accept(s.getHaving());
        if (s.getOrderByElements() != null) {
            for (OrderByElement o : s.getOrderByElements()) {
                to.accept(o.getExpression());
            }
        }
        ons(s.getFromItem(), s.getJoins(), to);
    }

    private static void ons(FromItem first, List<Join> joins, Consumer<Expression> to) {
        List<FromItem> items = new ArrayList<>();
        items.add(first);
        if (joins != null) {
            for (Join j : joins) {
                if (j.getOnExpressions() != null) {
                    j.getOnExpressions().forEach(to);
                }
                items.add(j.getRightItem());
            }
        }
        for (FromItem i : items) {
            if (i instanceof ParenthesedFromItem p) {
                ons(p.getFromItem(), p.getJoins(), to);
            }
        }
    }

    /** What a subquery's expressions contain: its columns, and whatever makes it not inlinable. */
    private static final class Scan extends ExpressionVisitorAdapter<Void> {
        final List<Column> columns = new ArrayList<>();
        boolean blocked;

        void scan(Expression e) {
            if (e != null) {
                e.accept(this, null);
            }
        }

        @Override
        public <S> Void visit(Column column, S context) {
            columns.add(column);
            return super.visit(column, context);
        }

        @Override
        public <S> Void visit(Function function, S context) {
            List<String> name = function.getMultipartName();
            String last = name == null || name.isEmpty() ? "" : norm(name.get(name.size() - 1));
            if (AGGREGATES.contains(last) || SET_RETURNING.contains(last) || VOLATILE.contains(last)) {
                blocked = true;
            }
            return super.visit(function, context);
        }

        @Override
        public <S> Void visit(AnalyticExpression expression, S context) {
            blocked = true;
            return null;
        }

        @Override
        public <S> Void visit(ParenthesedSelect select, S context) {
            blocked = true;
            return null;
        }

        @Override
        public <S> Void visit(Select select, S context) {
            blocked = true;
            return null;
        }

        @Override
        public <S> Void visit(ExistsExpression exists, S context) {
            blocked = true;
            return null;
        }

        @Override
        public <S> Void visit(AllTableColumns columns, S context) {
            blocked = true;
            return null;
        }

        @Override
        public <S> Void visit(AllColumns columns, S context) {
            blocked = true;
            return null;
        }
    }

    /**
     * The references of an enclosing query to one FROM item: {@code alias.col} in its own clauses and
     * in the subqueries nested in its expressions (unless one of them defines the name again).
     */
    static final class References extends ExpressionVisitorAdapter<Void> {
        final String alias;
        final boolean bareToo;
        final List<Column> found = new ArrayList<>();
        boolean unresolved;
        private int depth;

        /** @param bareToo whether unqualified columns of the query's own clauses refer to the item */
        References(String alias, boolean bareToo) {
            this.alias = alias;
            this.bareToo = bareToo;
        }

        void scan(Expression e) {
            if (e != null) {
                e.accept(this, null);
            }
        }

        @Override
        public <S> Void visit(Column column, S context) {
            Table t = column.getTable();
            if (t == null || t.getName() == null) {
                if (!NOT_COLUMNS.contains(norm(column.getColumnName()))) {
                    if (bareToo && depth == 0) {
                        found.add(column);
                    } else if (depth > 0 || !bareToo) {
                        // unqualified in a nested subquery, or beside other FROM items: not resolvable here
                        unresolved = true;
                    }
                }
            } else if (t.getSchemaName() == null && norm(t.getName()).equals(alias)) {
                found.add(column);
            }
            return super.visit(column, context);
        }

        @Override
        public <S> Void visit(AllTableColumns columns, S context) {
            if (columns.getTable() != null && norm(columns.getTable().getName()).equals(alias)) {
                unresolved = true;
            }
            return null;
        }

        /**
         * A window's PARTITION BY and ORDER BY read columns too (JSqlParser's adapter visits only
         * its arguments); its frame offsets are constants.
         */
        @Override
        public <S> Void visit(AnalyticExpression a, S context) {
            scan(a.getExpression());
            scan(a.getOffset());
            scan(a.getDefaultValue());
            scan(a.getFilterExpression());
            if (a.getPartitionExpressionList() != null) {
                for (Object e : a.getPartitionExpressionList()) {
                    scan((Expression) e);
                }
            }
            if (a.getOrderByElements() != null) {
                for (OrderByElement o : a.getOrderByElements()) {
                    scan(o.getExpression());
                }
            }
            return null;
        }

        @Override
        public <S> Void visit(ParenthesedSelect select, S context) {
            nested(select);
            return null;
        }

        @Override
        public <S> Void visit(Select select, S context) {
            nested(select);
            return null;
        }

        @Override
        public <S> Void visit(ExistsExpression exists, S context) {
            scan(exists.getRightExpression());
            return null;
        }

        private void nested(Select s) {
            if (s instanceof ParenthesedSelect p) {
                nested(p.getSelect());
                return;
            }
            if (s.getWithItemsList() != null) {
                for (WithItem<?> w : s.getWithItemsList()) {
                    if (w.getSelect() != null) {
                        nested(w.getSelect());
                    }
                }
            }
            if (s instanceof SetOperationList u) {
                for (Select b : u.getSelects()) {
                    nested(b);
                }
            } else if (s instanceof PlainSelect ps) {
                List<Slot> slots = new ArrayList<>();
                List<String> names = new ArrayList<>();
                if (ps.getFromItem() != null && !layout(of(ps), slots, names)) {
                    unresolved = true; // cannot tell what it names
                    return;
                }
                if (names.contains(alias)) {
                    return; // the name means something else in there
                }
                depth++;
                clauses(ps, this::scan);
                for (Slot slot : slots) {
                    if (slot.item() instanceof ParenthesedSelect p) {
                        nested(p.getSelect()); // a subquery in a nested FROM may be correlated to outer levels
                    }
                }
                depth--;
            } else {
                unresolved = true;
            }
        }
    }

    // ---------------------------------------------------------------- one step

    /** Finds the first inlinable subquery or WITH reference of the statement and inlines it. */
    private static final class Step {
        private final Set<String> used = new HashSet<>();

        Step(String text) {
            for (Token t : tokens(text)) {
                used.add(t.name());
            }
        }

        boolean select(Select s, Scope scope, List<String> outer) throws PlanRefusedException {
            if (s instanceof ParenthesedSelect p) {
                return select(p.getSelect(), scope, outer);
            }
            Scope inner = scope;
            if (s.getWithItemsList() != null && !s.getWithItemsList().isEmpty()) {
                for (WithItem<?> w : s.getWithItemsList()) {
                    if (w.isRecursive() || w.getSelect() == null) {
                        return false; // WITH RECURSIVE (or a data-modifying WITH): left as written
                    }
                }
                for (WithItem<?> w : s.getWithItemsList()) {
                    if (select(w.getSelect(), inner, outer)) {
                        return true;
                    }
                    inner = inner.with(norm(w.getAlias().getName()), w);
                }
            }
            if (s instanceof SetOperationList u) {
                for (Select b : u.getSelects()) {
                    if (select(b, inner, outer)) {
                        return true;
                    }
                }
                return false;
            }
            return s instanceof PlainSelect ps && plain(ps, inner, outer);
        }

        private boolean plain(PlainSelect e, Scope scope, List<String> outer) throws PlanRefusedException {
            List<Slot> slots = new ArrayList<>();
            List<String> names = new ArrayList<>();
            boolean eligible = e.getFromItem() != null && layout(of(e), slots, names);
            if (eligible) {
                for (int i = 0; i < slots.size(); i++) {
                    if (inline(e, slots.get(i), i, names, scope, outer)) {
                        return true;
                    }
                }
            }
            // then inside: the subqueries of its FROM and of its expressions
            List<String> here = new ArrayList<>(outer);
            here.addAll(names);
            List<Select> nested = new ArrayList<>();
            collectFromSubqueries(e.getFromItem(), e.getJoins(), nested);
            ExpressionVisitorAdapter<Void> sublinks = new ExpressionVisitorAdapter<>() {
                @Override
                public <S> Void visit(ParenthesedSelect select, S context) {
                    nested.add(select);
                    return null;
                }

                @Override
                public <S> Void visit(Select select, S context) {
                    nested.add(select);
                    return null;
                }
            };
            clauses(e, x -> {
                if (x != null) {
                    x.accept(sublinks, null);
                }
            });
            for (Select n : nested) {
                if (select(n, scope, here)) {
                    return true;
                }
            }
            return false;
        }

        private static void collectFromSubqueries(FromItem first, List<Join> joins, List<Select> out) {
            List<FromItem> items = new ArrayList<>();
            items.add(first);
            if (joins != null) {
                joins.forEach(j -> items.add(j.getRightItem()));
            }
            for (FromItem i : items) {
                if (i instanceof ParenthesedSelect p) {
                    out.add(p);
                } else if (i instanceof ParenthesedFromItem p) {
                    collectFromSubqueries(p.getFromItem(), p.getJoins(), out);
                }
            }
        }

        /** Inlines the item at {@code slot} of {@code e} if it can; false (and nothing changed) if not. */
        private boolean inline(PlainSelect e, Slot slot, int index, List<String> names, Scope scope, List<String> outer)
                throws PlanRefusedException {
            FromItem item = slot.item();
            String alias = names.get(index);
            PlainSelect s;
            List<String> renamed = new ArrayList<>();
            if (item instanceof ParenthesedSelect p && !(item instanceof LateralSubSelect) && p.getSelect() instanceof PlainSelect ps) {
                s = ps;
                if (p.getAlias().getAliasColumns() != null) {
                    p.getAlias().getAliasColumns().forEach(c -> renamed.add(norm(c.name)));
                }
            } else if (item instanceof Table t && t.getSchemaName() == null && scope.names().get(norm(t.getName())) != null) {
                WithItem<?> w = scope.names().get(norm(t.getName()));
                if (!(w.getSelect().getSelect() instanceof PlainSelect)) {
                    return false;
                }
                s = copy(w.getSelect().getSelect());
                if (s == null || readsUnqualifiedTables(s)) {
                    return false; // a WITH query naming another: its meaning could change where it is copied to
                }
                if (w.getWithItemList() != null) {
                    w.getWithItemList().forEach(c -> renamed.add(norm(c.getExpression().toString())));
                }
                if (t.getAlias() != null && t.getAlias().getAliasColumns() != null) {
                    List<Alias.AliasColumn> cs = t.getAlias().getAliasColumns();
                    for (int i = 0; i < cs.size(); i++) {
                        if (i < renamed.size()) {
                            renamed.set(i, norm(cs.get(i).name));
                        } else {
                            renamed.add(norm(cs.get(i).name));
                        }
                    }
                }
            } else {
                return false;
            }
            if (!inlinable(s)) {
                return false;
            }

            // the subquery's own FROM items and expressions
            List<Slot> innerSlots = new ArrayList<>();
            List<String> innerNames = new ArrayList<>();
            if (!layout(of(s), innerSlots, innerNames)) {
                return false;
            }
            // subqueries AND-ed in its WHERE move with it into the enclosing WHERE, as PostgreSQL pulls
            // such a subquery up too (TPC-H Q22); anywhere else one keeps it where it is
            Expression ownWhere = s.getWhere();
            List<Expression> sublinked = new ArrayList<>();
            List<Expression> plain = new ArrayList<>();
            for (Expression c : Sublinks.conjuncts(ownWhere)) {
                (Sublinks.hasSubquery(c) ? sublinked : plain).add(c);
            }
            Scan scan = new Scan();
            s.setWhere(null);
            clauses(s, scan::scan);
            s.setWhere(ownWhere);
            plain.forEach(scan::scan);
            if (scan.blocked) {
                return false;
            }
            if (!sublinked.isEmpty()) {
                // where it lands, an unqualified column could name another item's column
                References unqualified = new References("", false);
                sublinked.forEach(unqualified::scan);
                if (unqualified.unresolved) {
                    return false;
                }
            }
            List<Column> bare = new ArrayList<>();
            for (Column c : scan.columns) {
                if (c.getTable() == null || c.getTable().getName() == null) {
                    if (!NOT_COLUMNS.contains(norm(c.getColumnName()))) {
                        bare.add(c);
                    }
                } else if (c.getTable().getSchemaName() != null) {
                    return false;
                }
            }
            if (!bare.isEmpty() && innerNames.size() != 1) {
                return false;
            }

            // the enclosing query's references to it
            boolean single = names.size() == 1;
            References refs = new References(alias, single);
            clauses(e, refs::scan);
            if (refs.unresolved) {
                return false;
            }
            List<String> outputs = new ArrayList<>();
            for (int i = 0; i < s.getSelectItems().size(); i++) {
                SelectItem<?> si = s.getSelectItems().get(i);
                String name = i < renamed.size() ? renamed.get(i)
                        : si.getAlias() != null ? norm(si.getAlias().getName())
                        : si.getExpression() instanceof Column c ? norm(c.getColumnName()) : null;
                outputs.add(name);
            }
            List<Integer> targets = new ArrayList<>();
            for (Column c : refs.found) {
                String name = norm(c.getColumnName());
                int at = outputs.indexOf(name);
                if (at < 0 || outputs.lastIndexOf(name) != at) {
                    return false;
                }
                targets.add(at);
            }

            // names the subquery's items would take from others: renamed
            Set<String> taken = new HashSet<>(outer);
            for (int i = 0; i < names.size(); i++) {
                if (i != index) {
                    taken.add(names.get(i));
                }
            }
            taken.add(alias);
            Map<String, String> renames = new HashMap<>();
            for (String n : innerNames) {
                if (taken.contains(n)) {
                    renames.put(n, fresh(n));
                }
            }
            if (!renames.isEmpty() && !sublinked.isEmpty()) {
                return false; // the scan does not see the columns of the subqueries, which would keep the old name
            }
            if (!renames.isEmpty()) {
                // every reference to a renamed item must be a column the scan found, or one stays behind
                StringBuilder own = new StringBuilder();
                clauses(s, x -> own.append(' ').append(x));
                for (String n : renames.keySet()) {
                    long textual = tokens(own.toString()).stream().filter(t -> t.name().equals(n) && !t.afterDot() && t.beforeDot())
                            .count();
                    long seen = scan.columns.stream().filter(c -> c.getTable() != null && c.getTable().getName() != null
                            && norm(c.getTable().getName()).equals(n)).count();
                    if (textual != seen) {
                        return false;
                    }
                }
            }

            // a reference that is a whole select item, GROUP BY or ORDER BY element or function
            // argument takes the expression as it is (so a select item and its GROUP BY key still
            // read alike), others take it in parentheses unless it is one term already
            List<Column> whole = new ArrayList<>();
            for (SelectItem<?> si : e.getSelectItems()) {
                if (si.getExpression() instanceof Column c) {
                    whole.add(c);
                }
            }
            List<Column> keys = new ArrayList<>();
            if (e.getGroupBy() != null && e.getGroupBy().getGroupByExpressionList() != null) {
                for (Object x : e.getGroupBy().getGroupByExpressionList()) {
                    if (x instanceof Column c) {
                        keys.add(c);
                    }
                }
            }
            if (e.getOrderByElements() != null) {
                for (OrderByElement o : e.getOrderByElements()) {
                    if (o.getExpression() instanceof Column c) {
                        keys.add(c);
                    }
                }
            }
            for (Column c : keys) {
                int at = identityIndex(refs.found, c);
                if (at >= 0 && (s.getSelectItems().get(targets.get(at)).getExpression() instanceof LongValue
                        || s.getSelectItems().get(targets.get(at)).getExpression() instanceof DoubleValue)) {
                    return false; // GROUP BY 1 would mean the first column
                }
            }
            whole.addAll(keys);
            // and so is a function's argument: sum(s.volume) reads sum(l.price * (1 - l.discount))
            ExpressionVisitorAdapter<Void> arguments = new ExpressionVisitorAdapter<>() {
                @Override
                public <S> Void visit(Function function, S context) {
                    if (function.getParameters() != null) {
                        for (Object x : function.getParameters()) {
                            if (x instanceof Column c) {
                                whole.add(c);
                            }
                        }
                    }
                    return super.visit(function, context);
                }
            };
            clauses(e, x -> {
                if (x != null) {
                    x.accept(arguments, null);
                }
            });
            // the enclosing select list keeps its column names
            for (SelectItem<?> si : e.getSelectItems()) {
                int at = si.getExpression() instanceof Column c ? identityIndex(refs.found, c) : -1;
                if (si.getAlias() == null && at >= 0) {
                    Column c = refs.found.get(at);
                    Expression x = s.getSelectItems().get(targets.get(at)).getExpression();
                    if (!(x instanceof Column xc && norm(xc.getColumnName()).equals(norm(c.getColumnName())))) {
                        si.setAlias(new Alias(c.getColumnName(), true));
                    }
                }
            }
            Join j = slot.theJoin();
            if (j != null && innerOn(j) && s.getWhere() != null && (j.getOnExpressions().size() != 1 || !sublinked.isEmpty())) {
                return false; // (subqueries in an ON are not maintained)
            }

            // nothing was refused: from here on the tree changes
            for (Slot is : innerSlots) {
                FromItem fi = is.item();
                String n = fi instanceof Table t ? knownAs(t)
                        : norm(((ParenthesedSelect) fi).getAlias().getName());
                String to = renames.get(n);
                if (to == null) {
                    continue;
                }
                if (fi instanceof Table t) {
                    Alias a = new Alias(to, false);
                    if (t.getAlias() != null) {
                        a.setAliasColumns(t.getAlias().getAliasColumns());
                    }
                    t.setAlias(a);
                } else {
                    ParenthesedSelect p = (ParenthesedSelect) fi;
                    Alias a = new Alias(to, p.getAlias().isUseAs());
                    a.setAliasColumns(p.getAlias().getAliasColumns());
                    p.setAlias(a);
                }
            }
            for (Column c : scan.columns) {
                if (c.getTable() != null && c.getTable().getName() != null) {
                    String to = renames.get(norm(c.getTable().getName()));
                    if (to != null) {
                        c.setTable(new Table(to));
                    }
                }
            }
            for (Column c : bare) {
                c.setTable(new Table(quoteIfNeeded(innerNames.get(0), renames)));
            }

            for (int i = 0; i < refs.found.size(); i++) {
                Column c = refs.found.get(i);
                c.setTable(null);
                Expression x = s.getSelectItems().get(targets.get(i)).getExpression();
                c.setColumnName(identityIndex(whole, c) >= 0 || oneTerm(x) ? x.toString() : "(" + x + ")");
            }

            // its FROM takes its place, its WHERE joins the enclosing one
            Expression where = s.getWhere();
            List<Join> innerJoins = s.getJoins() == null ? new ArrayList<>() : new ArrayList<>(s.getJoins());
            List<Join> outerJoins = new ArrayList<>(slot.in().joins());
            if (j != null && innerOn(j)) {
                FromItem put = s.getFromItem();
                if (!innerJoins.isEmpty()) {
                    innerJoins.forEach(QueryInliner::cross);
                    ParenthesedFromItem p = new ParenthesedFromItem(s.getFromItem());
                    p.setJoins(innerJoins);
                    put = p;
                }
                j.setRightItem(put);
                if (where != null) {
                    j.setOnExpressions(List.of(and(j.getOnExpressions().iterator().next(), where)));
                }
            } else {
                boolean nextExplicit = slot.join() + 1 < outerJoins.size() && !outerJoins.get(slot.join() + 1).isSimple();
                if (slot.in().parenthesised() || (j != null && !j.isSimple()) || nextExplicit) {
                    innerJoins.forEach(QueryInliner::cross);
                }
                if (j == null) {
                    slot.in().first(s.getFromItem());
                } else {
                    j.setRightItem(s.getFromItem());
                }
                outerJoins.addAll(slot.join() + 1, innerJoins);
                slot.in().joins(outerJoins);
                if (where != null) {
                    e.setWhere(e.getWhere() == null ? where : and(e.getWhere(), where));
                }
            }
            return true;
        }

        private String fresh(String name) {
            for (int k = 1;; k++) {
                String candidate = name + "_" + k;
                if (used.add(candidate)) {
                    return candidate;
                }
            }
        }
    }

    private static boolean oneTerm(Expression x) {
        return x instanceof Column || x instanceof Function || x instanceof ExtractExpression || x instanceof CaseExpression
                || x instanceof StringValue || x instanceof LongValue || x instanceof DoubleValue || x instanceof NullValue;
    }

    private static int identityIndex(List<Column> list, Column c) {
        for (int i = 0; i < list.size(); i++) {
            if (list.get(i) == c) {
                return i;
            }
        }
        return -1;
    }

    private static String quoteIfNeeded(String name, Map<String, String> renames) {
        String n = renames.getOrDefault(name, name);
        return n.matches("[a-z_][a-z0-9_$]*") ? n : "\"" + n.replace("\"", "\"\"") + "\"";
    }

    private static void cross(Join j) {
        if (j.isSimple()) {
            j.setSimple(false);
            j.setCross(true);
        }
    }

    private static Expression and(Expression a, Expression b) throws PlanRefusedException {
        return DeltaPlanner.parseExpression("(" + a + ") AND (" + b + ")");
    }

    /** A plain SELECT with nothing that makes PostgreSQL keep it a subquery of its own. */
    private static boolean inlinable(PlainSelect s) {
        return (s.getWithItemsList() == null || s.getWithItemsList().isEmpty()) && s.getDistinct() == null
                && s.getGroupBy() == null && s.getHaving() == null && s.getLimit() == null && s.getOffset() == null
                && s.getFetch() == null && (s.getOrderByElements() == null || s.getOrderByElements().isEmpty())
                && s.getWindowDefinitions() == null && s.getIntoTables() == null && s.getQualify() == null
                && s.getForUpdateTable() == null && s.getForMode() == null && s.getFromItem() != null && s.getTop() == null
                && s.getFirst() == null && s.getSkip() == null && s.getOracleHierarchical() == null;
    }

    private static PlainSelect copy(Select s) {
        try {
            return CCJSqlParserUtil.parse(s.toString()) instanceof PlainSelect ps ? ps : null;
        } catch (JSQLParserException e) {
            return null;
        }
    }

    /** Whether a query names a relation without a schema anywhere in its FROM clauses (a WITH query, or pg_catalog). */
    private static boolean readsUnqualifiedTables(PlainSelect s) {
        List<Select> todo = new ArrayList<>(List.of(s));
        while (!todo.isEmpty()) {
            Select x = todo.remove(todo.size() - 1);
            if (x instanceof ParenthesedSelect p) {
                todo.add(p.getSelect());
                continue;
            }
            if (x.getWithItemsList() != null) {
                return true;
            }
            if (x instanceof SetOperationList u) {
                todo.addAll(u.getSelects());
            } else if (x instanceof PlainSelect ps) {
                if (!unqualifiedFree(ps.getFromItem(), ps.getJoins(), todo)) {
                    return true;
                }
                List<Select> found = new ArrayList<>();
                ExpressionVisitorAdapter<Void> v = new ExpressionVisitorAdapter<>() {
                    @Override
                    public <S> Void visit(ParenthesedSelect select, S context) {
                        found.add(select);
                        return null;
                    }

                    @Override
                    public <S> Void visit(Select select, S context) {
                        found.add(select);
                        return null;
                    }
                };
                clauses(ps, e -> {
                    if (e != null) {
                        e.accept(v, null);
                    }
                });
                todo.addAll(found);
            } else {
                return true;
            }
        }
        return false;
    }

    private static boolean unqualifiedFree(FromItem first, List<Join> joins, List<Select> todo) {
        List<FromItem> items = new ArrayList<>();
        if (first != null) {
            items.add(first);
        }
        if (joins != null) {
            joins.forEach(j -> items.add(j.getRightItem()));
        }
        for (FromItem i : items) {
            if (i instanceof Table t) {
                if (t.getSchemaName() == null) {
                    return false;
                }
            } else if (i instanceof ParenthesedSelect p) {
                todo.add(p);
            } else if (i instanceof ParenthesedFromItem p) {
                if (!unqualifiedFree(p.getFromItem(), p.getJoins(), todo)) {
                    return false;
                }
            } else {
                return false;
            }
        }
        return true;
    }

    /**
     * Drops one WITH query that is named nowhere (any more: every reference inlined), in the text of
     * the statement that holds it, the definition aside; PostgreSQL does not run it either.
     * Conservative: any identifier of that name not after a dot counts as a use.
     */
    private static boolean dropUnused(Select top) {
        List<Select> todo = new ArrayList<>(List.of(top));
        while (!todo.isEmpty()) {
            Select x = todo.remove(todo.size() - 1);
            if (x instanceof ParenthesedSelect p) {
                todo.add(p.getSelect());
                continue;
            }
            if (x.getWithItemsList() != null && !x.getWithItemsList().isEmpty()
                    && x.getWithItemsList().stream().noneMatch(WithItem::isRecursive)) {
                String text = x.toString();
                List<Token> tokens = tokens(text);
                for (WithItem<?> w : x.getWithItemsList()) {
                    String name = norm(w.getAlias().getName());
                    if (w.getSelect() == null) {
                        continue;
                    }
                    long uses = tokens.stream().filter(t -> t.name().equals(name) && !t.afterDot()).count();
                    if (uses == 1) {
                        List<WithItem<?>> rest = new ArrayList<>(x.getWithItemsList());
                        rest.remove(w);
                        x.setWithItemsList(rest.isEmpty() ? null : rest);
                        return true;
                    }
                }
                for (WithItem<?> w : x.getWithItemsList()) {
                    if (w.getSelect() != null) {
                        todo.add(w.getSelect());
                    }
                }
            }
            if (x instanceof SetOperationList u) {
                todo.addAll(u.getSelects());
            } else if (x instanceof PlainSelect ps) {
                List<Select> found = new ArrayList<>();
                Step.collectFromSubqueries(ps.getFromItem(), ps.getJoins(), found);
                ExpressionVisitorAdapter<Void> v = new ExpressionVisitorAdapter<>() {
                    @Override
                    public <S> Void visit(ParenthesedSelect select, S context) {
                        found.add(select);
                        return null;
                    }

                    @Override
                    public <S> Void visit(Select select, S context) {
                        found.add(select);
                        return null;
                    }
                };
                clauses(ps, e -> {
                    if (e != null) {
                        e.accept(v, null);
                    }
                });
                todo.addAll(found);
            }
        }
        return false;
    }

    private static String firstLine(Exception e) {
        String m = String.valueOf(e.getMessage());
        int nl = m.indexOf('\n');
        return nl < 0 ? m : m.substring(0, nl);
    }
}
