package io.pgtrickle.refresh.plan;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Savepoint;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Plans stream tables that run DIFFERENTIAL and have no differential statement yet: derives it with
 * {@link DeltaPlanner}, checks that PostgreSQL can plan it, creates the index that locates stored
 * rows, and stores it with {@code pgtrickle.set_refresh_plan}. A query the planner refuses is stored
 * as refused with the reason, and the stream table runs FULL (visible in explain_refresh_mode).
 */
public final class RefreshPlanner {

    private static final Logger LOG = LoggerFactory.getLogger(RefreshPlanner.class);

    /**
     * Ends the differential statement of a query with temporal filters ({@link TemporalFilters}):
     * run_refresh runs it at every refresh, since the clock moves when no source changed.
     */
    static final String CLOCK_MARK = "/*pgtrickle clock*/";

    /** Stream tables waiting for a plan. */
    public static List<Long> unplanned(Connection c) throws SQLException {
        List<Long> ids = new ArrayList<>();
        try (Statement s = c.createStatement();
             ResultSet rs = s.executeQuery("SELECT pgt_id FROM pgtrickle.pgt_stream_tables"
                     + " WHERE refresh_mode = 'DIFFERENTIAL' AND delta_sql IS NULL ORDER BY pgt_id")) {
            while (rs.next()) {
                ids.add(rs.getLong(1));
            }
        }
        return ids;
    }

    /**
     * Plans one stream table in the caller's transaction (auto-commit off), unless it has a plan, does
     * not run DIFFERENTIAL, or another session holds it (that session plans it).
     *
     * @return whether a plan or a refusal was stored
     */
    public static boolean planIfNeeded(Connection c, long pgtId) throws SQLException {
        String query;
        String target;
        long relid;
        String schema;
        try (PreparedStatement ps = c.prepareStatement(
                "SELECT defining_query, format('%I.%I', pgt_schema, pgt_name), pgt_relid, pgt_schema"
                        + " FROM pgtrickle.pgt_stream_tables WHERE pgt_id = ? AND refresh_mode = 'DIFFERENTIAL'"
                        + " AND delta_sql IS NULL FOR UPDATE SKIP LOCKED")) {
            ps.setLong(1, pgtId);
            try (ResultSet rs = ps.executeQuery()) {
                if (!rs.next()) {
                    return false;
                }
                query = rs.getString(1);
                target = rs.getString(2);
                relid = rs.getLong(3);
                schema = rs.getString(4);
            }
        }
        String sql = null;
        String reason = null;
        String stateTable = "pgtrickle_changes." + quote("state_" + pgtId);
        String stateSql = null;
        Map<String, List<String>> read = Map.of();
        List<Derived> derived = List.of();
        Columns stored = columns(c, relid);
        RowKey key = rowKey(c, relid);
        DeltaPlanner.Target to = new DeltaPlanner.Target(target, stored.names(), stored.types(), stateTable, stored.identical(),
                key.columns());
        String misread = misreading(c, query);
        if (misread != null) {
            reason = misread;
        }
        // consolidated first; a source column without equality (json, point) makes that invalid SQL
        boolean[] consolidation = misread != null ? new boolean[0] : new boolean[] {true, false};
        // scalar subqueries' values as derived tables where their aggregates can be kept so, else as written
        boolean scalars = true;
        for (int attempt = 0; attempt < consolidation.length; attempt++) {
            boolean consolidate = consolidation[attempt];
            Savepoint before = c.setSavepoint();
            DerivedTables.Extraction extraction = null;
            try {
                extraction = DerivedTables.extract(query, n -> "pgtrickle_changes.derived_" + pgtId + "_" + n,
                        indexes(c), scalars);
                List<Derived> made = new ArrayList<>();
                // a derived table's own plan may read the ones made before it
                Source.Lookup lookup = name -> {
                    for (Derived d : made) {
                        if (d.table().equals(name.replace("\"", "").toLowerCase(java.util.Locale.ROOT))) {
                            return d.source();
                        }
                    }
                    return source(c, name);
                };
                for (DerivedTables.Derived d : extraction.derived()) {
                    made.add(derive(c, d, consolidate, lookup, made));
                }
                DeltaPlanner.Plan plan = DeltaPlanner.plan(extraction.query(), to, lookup, consolidate);
                String keyMark = "";
                if (plan.rowKeyed()) {
                    // the stream table's unique index finds its rows (DeltaPlanner.applyRows), and
                    // run_refresh checks that it still does
                    try (Statement s = c.createStatement()) {
                        s.execute("DROP INDEX IF EXISTS " + quote(schema) + "." + quote("pgt_" + pgtId + "_row_hash"));
                    }
                    keyMark = "\n/*pgtrickle row_key " + key.attnums() + "*/";
                } else {
                    createRowIndex(c, schema, "pgt_" + pgtId + "_row_hash", target, plan.keyColumns());
                }
                try (Statement s = c.createStatement()) {
                    s.execute("DROP TABLE IF EXISTS " + stateTable);
                    if (plan.stateDdl() != null) {
                        s.execute(plan.stateDdl());
                        explain(c, "INSERT INTO " + stateTable + " " + plan.stateSql());
                    }
                }
                explain(c, plan.deltaSql());
                // the result moves with the clock: run_refresh runs the statement when no source changed too
                String clockMark = made.stream().anyMatch(d -> TemporalFilters.isClock(d.table())) ? "\n" + CLOCK_MARK : "";
                sql = plan.deltaSql() + keyMark + clockMark;
                // a FULL refresh refills the running totals in the statement that refills the
                // derived tables, so from the sources, not from the derived tables
                stateSql = plan.stateSql() == null ? null : Derived.fromSources(plan.stateSql(), made);
                Map<String, List<String>> reads = new LinkedHashMap<>(plan.columnsRead());
                for (Derived d : made) {
                    reads.remove(d.table());
                    d.read().forEach((k, v) -> reads.merge(k, v, (x, y) -> Stream.concat(x.stream(), y.stream()).distinct().toList()));
                }
                read = reads;
                derived = made;
                reason = null;
                break;
            } catch (PlanRefusedException e) {
                // nothing of a refused plan stays (its derived tables)
                c.rollback(before);
                reason = e.getMessage();
                if (extraction != null && extraction.scalars()) {
                    scalars = false;
                    attempt--;
                    continue;
                }
                break;
            } catch (SQLException e) {
                c.rollback(before);
                if (isTransient(e)) {
                    // a lock or statement timeout, a deadlock, a lost connection: no verdict on the
                    // query, so no FULL for good; the next tick plans it again
                    throw e;
                }
                reason = "the engine's differential statement is not valid SQL (" + e.getMessage() + ")";
                LOG.debug("stream table {}: {} (consolidated: {}); query: {}", target, reason, consolidate, query);
            } catch (RuntimeException e) {
                // a planner bug must cost this stream table a FULL refresh, not stop the scheduler
                c.rollback(before);
                reason = "the engine's planner failed on this query (" + e + ")";
                LOG.warn("stream table {}: {}; query: {}", target, reason, query, e);
                break;
            }
        }
        if (sql == null && reason != null && reason.startsWith("the engine's")) {
            LOG.warn("stream table {}: {}; it will refresh FULL", target, reason);
        }
        if (stateSql == null) {
            try (Statement s = c.createStatement()) {
                s.execute("DROP TABLE IF EXISTS " + stateTable);
            }
        }
        try (PreparedStatement ps = c.prepareStatement("SELECT pgtrickle.set_refresh_plan(?, ?, ?, ?, ?, ?,"
                + " (SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object('table', u.t, 'buffer', u.b, 'query', u.q,"
                + "         'delta_sql', u.d, 'state_table', u.st, 'state_sql', u.ss)) ORDER BY u.n)"
                + "    FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[]) WITH ORDINALITY"
                + "         AS u(t, b, q, d, st, ss, n)))")) {
            ps.setLong(1, pgtId);
            ps.setString(2, query);
            ps.setString(3, sql);
            ps.setString(4, reason);
            ps.setString(5, stateSql == null ? null : stateTable);
            ps.setString(6, stateSql);
            List<Derived> ds = sql == null ? List.of() : derived;
            ps.setArray(7, c.createArrayOf("text", ds.stream().map(Derived::table).toArray()));
            ps.setArray(8, c.createArrayOf("text", ds.stream().map(Derived::buffer).toArray()));
            ps.setArray(9, c.createArrayOf("text", ds.stream().map(Derived::fill).toArray()));
            ps.setArray(10, c.createArrayOf("text", ds.stream().map(Derived::deltaSql).toArray()));
            ps.setArray(11, c.createArrayOf("text", ds.stream().map(Derived::stateTable).toArray()));
            ps.setArray(12, c.createArrayOf("text", ds.stream().map(Derived::stateSql).toArray()));
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                if (rs.getBoolean(1)) {
                    columnsUsed(c, pgtId, sql == null ? Map.of() : read);
                }
            }
        }
        if (reason != null) {
            LOG.info("stream table {} refreshes FULL: {}", target, reason);
        } else {
            LOG.debug("stream table {} refreshes DIFFERENTIAL", target);
        }
        return true;
    }

    /**
     * Whether an index of {@code table} has one of {@code columns} (as the query spells them) as its
     * first column; true for a table not found, so that its subquery stays as written.
     */
    /** The indexes of the query's tables, read from the catalog as the extraction asks. */
    private static ExistsCounts.Indexes indexes(Connection c) {
        return new ExistsCounts.Indexes() {
            @Override
            public boolean leadsWithOneOf(String table, Set<String> columns) {
                return leadingIndex(c, table, columns);
            }

            @Override
            public boolean uniqueOn(String table, Set<String> columns) {
                return uniqueIndex(c, table, columns);
            }
        };
    }

    /**
     * Whether a unique index of the table (valid, immediate, not partial, of plain columns) has all
     * its columns among {@code columns}: then the rows equal on those columns are one at most.
     */
    private static boolean uniqueIndex(Connection c, String table, Set<String> columns) {
        try (PreparedStatement ps = c.prepareStatement("SELECT EXISTS (SELECT FROM pg_index i WHERE i.indrelid = to_regclass(?)"
                + " AND i.indisunique AND i.indisvalid AND i.indimmediate AND i.indpred IS NULL AND i.indexprs IS NULL"
                + " AND NOT EXISTS (SELECT FROM unnest(i.indkey::int2[]) k(att) JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.att"
                + " WHERE NOT (a.attname = ANY (?))))")) {
            ps.setString(1, table);
            ps.setArray(2, c.createArrayOf("text", columns.stream().map(QueryInliner::norm).toArray()));
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getBoolean(1);
            }
        } catch (SQLException e) {
            throw new IllegalStateException("could not read the indexes of " + table, e);
        }
    }

    private static boolean leadingIndex(Connection c, String table, Set<String> columns) {
        try (PreparedStatement ps = c.prepareStatement("SELECT x.r IS NULL OR EXISTS (SELECT FROM pg_index i JOIN pg_attribute a"
                + " ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] WHERE i.indrelid = x.r AND a.attname = ANY (?))"
                + " FROM (SELECT to_regclass(?) AS r) x")) {
            ps.setArray(1, c.createArrayOf("text", columns.stream()
                    .map(QueryInliner::norm)
                    .toArray()));
            ps.setString(2, table);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                return rs.getBoolean(1);
            }
        } catch (SQLException e) {
            throw new IllegalStateException("could not read the indexes of " + table, e);
        }
    }

    /**
     * A derived table as planned (see {@link DerivedTables}): where it and its changes are, the query
     * that fills it, its statement, its running totals if any, and how the query's plan reads it.
     */
    private record Derived(String table, String buffer, String fill, String deltaSql, String stateTable, String stateSql,
            Source source, Map<String, List<String>> read) {

        /** SQL over derived tables, reading their queries instead: the same rows, from the sources. */
        static String fromSources(String sql, List<Derived> derived) {
            for (Derived d : derived) {
                sql = sql.replaceAll(Pattern.quote(d.table()) + "(?![A-Za-z0-9_$])", Matcher.quoteReplacement("(" + d.fill() + ")"));
            }
            return sql;
        }
    }

    /**
     * Creates a derived table, its buffer and the triggers that fill the buffer, and plans its
     * statement: that statement empties the buffer, then maintains the table, whose writes the
     * triggers record (R__52_derived_tables.sql).
     */
    private static Derived derive(Connection c, DerivedTables.Derived d, boolean consolidate, Source.Lookup lookup, List<Derived> before)
            throws SQLException, PlanRefusedException {
        String table = d.table();
        String buffer = table + "_changes";
        String stateTable = table + "_state";
        long relid;
        try (Statement s = c.createStatement()) {
            s.execute("DROP TABLE IF EXISTS " + table + ", " + buffer + ", " + stateTable);
            s.execute("CREATE TABLE " + table + (d.columns() == null ? "" : " (" + String.join(", ", d.columns()) + ")")
                    + " AS SELECT * FROM (" + d.query() + ") __pgt_q WITH NO DATA");
            s.execute("CREATE TABLE " + buffer + " (xid xid8 NOT NULL DEFAULT pg_current_xact_id(), action \"char\" NOT NULL, LIKE "
                    + table + ")");
            for (String[] event : new String[][] {{"insert", "INSERT", "NEW TABLE AS pgt_new"}, {"delete", "DELETE", "OLD TABLE AS pgt_old"},
                    {"update", "UPDATE", "OLD TABLE AS pgt_old NEW TABLE AS pgt_new"}}) {
                s.execute("CREATE TRIGGER pgt_capture_" + event[0] + " AFTER " + event[1] + " ON " + table + " REFERENCING " + event[2]
                        + " FOR EACH STATEMENT WHEN (current_setting('pgtrickle.derived_capture', true) = 'on')"
                        + " EXECUTE FUNCTION pgtrickle.capture_derived_changes('" + buffer + "')");
            }
            try (ResultSet rs = s.executeQuery("SELECT '" + table + "'::regclass::oid")) {
                rs.next();
                relid = rs.getLong(1);
            }
        }
        Columns columns = columns(c, relid);
        if (d.clock()) {
            return clock(c, d, table, buffer, columns);
        }
        DeltaPlanner.Plan plan;
        try {
            plan = DeltaPlanner.plan(d.query(), new DeltaPlanner.Target(table, columns.names(), columns.types(), stateTable,
                    columns.identical()), lookup, consolidate);
        } catch (PlanRefusedException e) {
            throw new PlanRefusedException("an aggregating subquery or WITH query (kept as a derived table): " + e.getMessage());
        }
        String unqualified = table.substring(table.indexOf('.') + 1);
        createRowIndex(c, "pgtrickle_changes", unqualified + "_row_hash", table, plan.keyColumns());
        try (Statement s = c.createStatement()) {
            if (plan.strategy() != DeltaPlanner.Strategy.ROWS && !plan.keyColumns().isEmpty()) {
                // the query joins a derived table on its group key more often than not
                s.execute("CREATE INDEX " + unqualified + "_key ON " + table + " (" + String.join(", ", plan.keyColumns()) + ")");
            }
            if (plan.stateDdl() != null) {
                s.execute(plan.stateDdl());
                explain(c, "INSERT INTO " + stateTable + " " + plan.stateSql());
            }
        }
        // the marks' header (Legs) stays first
        String marks = plan.deltaSql().startsWith(Legs.MARKED) ? Legs.MARKED : "";
        String statement = plan.deltaSql().substring(marks.length());
        if (!statement.startsWith("WITH ")) {
            throw new PlanRefusedException("the engine cannot maintain a derived table with a " + plan.strategy() + " statement");
        }
        String deltaSql = marks + "WITH __pgt_clear AS (DELETE FROM " + buffer + "),\n" + statement.substring("WITH ".length());
        explain(c, deltaSql);
        // refilled in one statement with those before it, so from the sources, as fromSources says
        return new Derived(table, buffer, Derived.fromSources("SELECT * FROM (" + d.query() + ") __pgt_q(" + String.join(", ", columns.names())
                + ")", before), deltaSql, plan.stateDdl() == null ? null : stateTable,
                plan.stateSql() == null ? null : Derived.fromSources(plan.stateSql(), before),
                new Source(table, buffer, columns.names(), columns.storedTypes(), columns.identical()), plan.columnsRead());
    }

    /**
     * A clock's derived table ({@link TemporalFilters}): its statement sets the one row to the
     * clock's value in this transaction when it moved, which the triggers record as the row deleted
     * and inserted, and reports a missing row (never filled) as a row its statement could not find,
     * so that the refresh recomputes in FULL and fills it.
     */
    private static Derived clock(Connection c, DerivedTables.Derived d, String table, String buffer, Columns columns)
            throws SQLException {
        String value = ScalarAggregates.COLUMN;
        String deltaSql = "WITH __pgt_clear AS (DELETE FROM " + buffer + "),\n"
                + "__pgt_moved AS (UPDATE " + table + " t SET " + value + " = v." + value + " FROM (" + d.query() + ") v"
                + " WHERE t." + value + " IS DISTINCT FROM v." + value + " RETURNING 1)\n"
                + "SELECT (SELECT count(*) FROM __pgt_moved), (SELECT count(*) FROM __pgt_moved), pg_current_snapshot()::text, false,"
                + " CASE WHEN EXISTS (SELECT FROM " + table + ") THEN 0 ELSE 1 END";
        explain(c, deltaSql);
        return new Derived(table, buffer, "SELECT * FROM (" + d.query() + ") __pgt_q(" + value + ")", deltaSql, null, null,
                new Source(table, buffer, columns.names(), columns.storedTypes(), columns.identical()), Map.of());
    }

    private static final AtomicLong READ_BACKS = new AtomicLong();

    /**
     * Why the engine must not plan the query, or null: its SQL parser reads it otherwise than
     * PostgreSQL does. Every statement the planner derives is the parse tree printed back, so the
     * query printed back must mean what the query means: both go through PostgreSQL as views, and
     * their definitions as PostgreSQL normalises them must be the same text. This catches what no
     * list of known parser gaps would (an operator read as two, a clause dropped), before it can
     * become a differential statement that runs and returns other rows.
     */
    private static String misreading(Connection c, String query) throws SQLException {
        String deparsed;
        try {
            deparsed = DeltaPlanner.deparsed(query);
        } catch (PlanRefusedException e) {
            return e.getMessage();
        }
        return misreading(c, query, deparsed);
    }

    /** The check itself, for a query and the text the parser printed back. */
    static String misreading(Connection c, String query, String deparsed) throws SQLException {
        long n = READ_BACKS.incrementAndGet();
        String original = "pg_temp.pgt_read_back_" + n + "_q";
        String printed = "pg_temp.pgt_read_back_" + n + "_p";
        Savepoint before = c.setSavepoint();
        try (Statement s = c.createStatement()) {
            // as the query was normalised when it was set: every name but pg_catalog's qualified
            s.execute("SET LOCAL search_path = pg_catalog");
            s.execute("CREATE TEMPORARY VIEW " + original.substring("pg_temp.".length()) + " AS "
                    + DeltaPlanner.withoutIntervalFields(query));
            s.execute("CREATE TEMPORARY VIEW " + printed.substring("pg_temp.".length()) + " AS " + deparsed);
            try (ResultSet rs = s.executeQuery("SELECT pg_get_viewdef('" + original + "'::regclass, true)"
                    + " = pg_get_viewdef('" + printed + "'::regclass, true)")) {
                rs.next();
                return rs.getBoolean(1) ? null : "the engine's SQL parser reads the query otherwise than PostgreSQL does";
            }
        } catch (SQLException e) {
            if (isTransient(e)) {
                throw e;
            }
            return "the engine's SQL parser reads the query otherwise than PostgreSQL does (" + e.getMessage() + ")";
        } finally {
            // the views, and the search_path, go with the savepoint
            c.rollback(before);
        }
    }

    /**
     * SQLSTATE classes and codes of failures that say nothing about the query: connection
     * exceptions (08), transaction rollbacks such as serialization failures and deadlocks (40),
     * lock_not_available (55P03), query_canceled (57014, statement_timeout), operator intervention
     * (57P0x: shutdown, crash recovery), insufficient resources (53).
     */
    static boolean isTransient(SQLException e) {
        String state = e.getSQLState();
        return state == null || state.startsWith("08") || state.startsWith("40") || state.startsWith("53")
                || state.equals("55P03") || state.equals("57014") || state.startsWith("57P");
    }

    /**
     * A relation's columns, in order: quoted names; types without typmods (the planner asks what a
     * value is, numeric, not how it is stored) and with them (numeric(12,2): a fixed scale); and
     * whether two equal values always print the same, so that equality is identity: integers,
     * booleans, dates and times, uuid, bytea, and text types under a deterministic collation. Not
     * numeric (1.0 = 1.00), interval ('1 day' = '24 hours'), floats (0 = -0), jsonb ({"a": 1.0} =
     * {"a": 1}), arrays and records of those, or anything unknown.
     */
    private record Columns(List<String> names, List<String> types, List<String> storedTypes, List<Boolean> identical) {
    }

    private static Columns columns(Connection c, long relid) throws SQLException {
        List<String> names = new ArrayList<>();
        List<String> types = new ArrayList<>();
        List<String> storedTypes = new ArrayList<>();
        List<Boolean> identical = new ArrayList<>();
        try (PreparedStatement ps = c.prepareStatement("SELECT quote_ident(a.attname), format_type(a.atttypid, NULL),"
                + " format_type(a.atttypid, a.atttypmod),"
                + " format_type(a.atttypid, NULL) IN ('smallint', 'integer', 'bigint', 'boolean', 'date',"
                + "   'timestamp without time zone', 'timestamp with time zone', 'time without time zone', 'uuid', 'bytea', 'oid',"
                + "   'text', 'character varying', 'name')"
                + "   AND coalesce((SELECT co.collisdeterministic FROM pg_collation co WHERE co.oid = a.attcollation), true)"
                + " FROM pg_attribute a WHERE a.attrelid = ? AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum")) {
            ps.setLong(1, relid);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    names.add(rs.getString(1));
                    types.add(rs.getString(2));
                    storedTypes.add(rs.getString(3));
                    identical.add(rs.getBoolean(4));
                }
            }
        }
        return new Columns(names, types, storedTypes, identical);
    }

    /**
     * Records in pgt_dependencies.columns_used the columns of each source the differential statement
     * reads (NULL for a source it does not read, and for all when there is none): the columns of its
     * change buffer worth statistics (pgtrickle.refresh_change_statistics).
     */
    private static void columnsUsed(Connection c, long pgtId, Map<String, List<String>> read) throws SQLException {
        try (PreparedStatement clear = c.prepareStatement("UPDATE pgtrickle.pgt_dependencies SET columns_used = NULL WHERE pgt_id = ?");
                PreparedStatement set = c.prepareStatement("UPDATE pgtrickle.pgt_dependencies d SET columns_used = ARRAY("
                        + "SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = d.source_relid AND a.attnum > 0 AND NOT a.attisdropped"
                        + " AND quote_ident(a.attname) = ANY (?::text[]) ORDER BY a.attnum) WHERE d.pgt_id = ? AND d.source_relid = ?::regclass")) {
            clear.setLong(1, pgtId);
            clear.executeUpdate();
            for (Map.Entry<String, List<String>> e : read.entrySet()) {
                set.setArray(1, c.createArrayOf("text", e.getValue().toArray()));
                set.setLong(2, pgtId);
                set.setString(3, e.getKey());
                set.executeUpdate();
            }
        }
    }

    /** A relation named in the normalised query, which names it as PostgreSQL resolved it. */
    private static Source source(Connection c, String name) throws PlanRefusedException {
        try (PreparedStatement ps = c.prepareStatement(
                "SELECT format('%I.%I', n.nspname, r.relname), pgtrickle.change_buffer(r.oid)::text, r.oid,"
                        + " (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = r.oid AND a.attnum > 0"
                        + "   AND NOT a.attisdropped AND NOT EXISTS (SELECT FROM pg_attribute b"
                        + "     WHERE b.attrelid = pgtrickle.change_buffer(r.oid) AND b.attname = a.attname AND NOT b.attisdropped)),"
                        + " r.reltuples::float8"
                        + " FROM pg_class r JOIN pg_namespace n ON n.oid = r.relnamespace WHERE r.oid = to_regclass(?)")) {
            ps.setString(1, name);
            try (ResultSet rs = ps.executeQuery()) {
                if (!rs.next()) {
                    throw new PlanRefusedException("the query names " + name + ", which the engine cannot find");
                }
                if (rs.getString(2) == null) {
                    throw new PlanRefusedException("the changes of " + rs.getString(1) + " are not captured");
                }
                if (rs.getLong(4) > 0) {
                    throw new PlanRefusedException("the columns of " + rs.getString(1) + " changed since its capture began");
                }
                Columns columns = columns(c, rs.getLong(3));
                return new Source(rs.getString(1), rs.getString(2), columns.names(), columns.storedTypes(), columns.identical(),
                        rs.getDouble(5), uniqueKeys(c, rs.getLong(3)));
            }
        } catch (SQLException e) {
            throw new PlanRefusedException("the engine could not look up " + name + ": " + e.getMessage());
        }
    }

    /** The key columns (quoted) of each valid unique index of {@code relid} without predicate or expression. */
    private static List<List<String>> uniqueKeys(Connection c, long relid) throws SQLException {
        List<List<String>> keys = new ArrayList<>();
        try (PreparedStatement ps = c.prepareStatement(
                "SELECT (SELECT array_agg(quote_ident(a.attname) ORDER BY k.n) FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n)"
                        + "   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum WHERE k.n <= i.indnkeyatts)"
                        + " FROM pg_index i WHERE i.indrelid = ? AND i.indisunique AND i.indisvalid"
                        + " AND i.indpred IS NULL AND i.indexprs IS NULL ORDER BY i.indexrelid")) {
            ps.setLong(1, relid);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    keys.add(List.of((String[]) rs.getArray(1).getArray()));
                }
            }
        }
        return keys;
    }

    /**
     * Stored rows are found by the hash of their key columns; this index makes that a lookup. An index
     * already built on the same keys (its comment names them) is kept: rebuilding it would hold an
     * exclusive lock on the stream table, against its readers, for as long as the build takes. An
     * evolution's swap hands over the shadow's index under this name for that reason.
     */
    private static void createRowIndex(Connection c, String schema, String index, String target, List<String> keyColumns)
            throws SQLException {
        String keys = String.join(", ", keyColumns);
        try (PreparedStatement ps = c.prepareStatement("SELECT obj_description(i.indexrelid, 'pg_class') = ?"
                + " FROM pg_index i WHERE i.indexrelid = to_regclass(?) AND i.indrelid = to_regclass(?)")) {
            ps.setString(1, keys);
            ps.setString(2, quote(schema) + "." + quote(index));
            ps.setString(3, target);
            try (ResultSet rs = ps.executeQuery()) {
                if (rs.next() && rs.getBoolean(1)) {
                    return;
                }
            }
        }
        try (Statement s = c.createStatement()) {
            s.execute("DROP INDEX IF EXISTS " + quote(schema) + "." + quote(index));
            s.execute("CREATE INDEX " + quote(index) + " ON " + target + " (hash_record_extended(ROW(" + keys + "), 0))");
            s.execute("COMMENT ON INDEX " + quote(schema) + "." + quote(index) + " IS '" + keys.replace("'", "''") + "'");
        }
    }

    /**
     * The unique index a differential refresh may find the stream table's rows by
     * (pgtrickle.row_key, R__50_refresh.sql): its columns, quoted (none: no such index), and their
     * attribute numbers as the plan's mark names them.
     */
    private record RowKey(List<String> columns, String attnums) {
    }

    private static RowKey rowKey(Connection c, long relid) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("SELECT quote_ident(a.attname), u.k FROM unnest(pgtrickle.row_key(?)) WITH ORDINALITY AS u(k, n)"
                + " JOIN pg_attribute a ON a.attrelid = ? AND a.attnum = u.k ORDER BY u.n")) {
            ps.setLong(1, relid);
            ps.setLong(2, relid);
            List<String> columns = new ArrayList<>();
            List<String> attnums = new ArrayList<>();
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    columns.add(rs.getString(1));
                    attnums.add(rs.getString(2));
                }
            }
            return new RowKey(columns, String.join(",", attnums));
        }
    }

    private static final AtomicLong CHECKS = new AtomicLong();

    /**
     * Plans the statement (without running it), so that a planner bug costs a FULL refresh, not a
     * failed one. Prepared with its parameter, never by putting a value into its text: the query's
     * own literals may contain "$1".
     */
    private static void explain(Connection c, String deltaSql) throws SQLException {
        String name = "pgt_plan_check_" + CHECKS.incrementAndGet();
        try (Statement s = c.createStatement()) {
            Savepoint before = c.setSavepoint();
            s.execute("PREPARE " + name + "(pg_snapshot, text[]) AS " + deltaSql);
            try {
                s.execute("EXPLAIN EXECUTE " + name + "('1:1:', NULL)");
            } catch (SQLException e) {
                // the failed EXPLAIN aborted the transaction; a prepared statement outlives that
                c.rollback(before);
                s.execute("DEALLOCATE " + name);
                throw e;
            }
            s.execute("DEALLOCATE " + name);
        }
    }

    private static String quote(String identifier) {
        return '"' + identifier.replace("\"", "\"\"") + '"';
    }

    private RefreshPlanner() {
    }
}
