package io.pgtrickle.testing;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;

/**
 * Everything about the catalog schemas that a fresh install and an upgrade must agree on, one line
 * per fact, sorted: columns (order, type, nullability, default, identity), constraints, indexes,
 * functions (full definitions), sequences, triggers, views, and the grants on schemas and relations.
 */
public final class SchemaSignature {

    private static final String SCHEMAS = "('pgtrickle', 'pgtrickle_changes')";

    private static final String[] QUERIES = {
        "SELECT format('schema %s owner-is-current=%s acl=%s', n.nspname, n.nspowner = (SELECT oid FROM pg_roles WHERE rolname = current_user), n.nspacl)"
            + " FROM pg_namespace n WHERE n.nspname IN " + SCHEMAS,
        "SELECT format('relation %s.%s kind=%s persistence=%s acl=%s', n.nspname, c.relname, c.relkind, c.relpersistence, c.relacl)"
            + " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN " + SCHEMAS,
        "SELECT format('column %s.%s #%s %s %s notnull=%s default=%s identity=%s', n.nspname, c.relname, a.attnum, a.attname,"
            + " format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity)"
            + " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            + " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
            + " WHERE n.nspname IN " + SCHEMAS + " AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm')",
        "SELECT format('constraint %s.%s %s %s', n.nspname, c.relname, k.conname, pg_get_constraintdef(k.oid))"
            + " FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            + " WHERE n.nspname IN " + SCHEMAS,
        "SELECT format('index %s', pg_get_indexdef(i.indexrelid))"
            + " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            + " WHERE n.nspname IN " + SCHEMAS,
        "SELECT format('function %s', pg_get_functiondef(p.oid))"
            + " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname IN " + SCHEMAS,
        "SELECT format('sequence %s.%s %s start=%s inc=%s owned-by=%s', n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement,"
            + " (SELECT d.refobjid::regclass || '.' || d.refobjsubid FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'a' AND d.classid = 'pg_class'::regclass))"
            + " FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            + " WHERE n.nspname IN " + SCHEMAS,
        "SELECT format('trigger %s', pg_get_triggerdef(t.oid))"
            + " FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            + " WHERE n.nspname IN " + SCHEMAS + " AND NOT t.tgisinternal",
        "SELECT format('function-acl %s %s', p.oid::regprocedure, p.proacl)"
            + " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname IN " + SCHEMAS,
        "SELECT format('event trigger %s on %s tags=%s runs %s enabled=%s', e.evtname, e.evtevent, e.evttags, e.evtfoid::regproc, e.evtenabled)"
            + " FROM pg_event_trigger e",
        "SELECT format('view %s.%s %s', n.nspname, c.relname, pg_get_viewdef(c.oid))"
            + " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN " + SCHEMAS + " AND c.relkind IN ('v', 'm')",
    };

    private SchemaSignature() {
    }

    public static List<String> of(Connection c) throws SQLException {
        List<String> lines = new ArrayList<>();
        try (Statement s = c.createStatement()) {
            for (String q : QUERIES) {
                try (ResultSet rs = s.executeQuery(q)) {
                    while (rs.next()) {
                        lines.add(rs.getString(1));
                    }
                }
            }
        }
        lines.sort(null);
        return lines;
    }
}
