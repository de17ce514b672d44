package io.pgtrickle.catalog;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The database part of one bundle (a unit), as its {@value #HEADER} header and folder describe it:
 * <ul>
 *   <li>{@code <root>/schema/V<version>__<description>.sql}: versioned migrations (tables, columns,
 *       indexes), applied once, in version order, and never edited once released. Several files of
 *       one version ({@code V0.33.0__1_a.sql}, {@code V0.33.0__2_b.sql}) are one migration, joined in
 *       name order: one transaction, one checksum.</li>
 *   <li>{@code <root>/code/R__<nn>_<description>.sql}: repeatable scripts (functions, triggers,
 *       views), re-applied whenever their text changes, after the versioned ones, in name order.</li>
 * </ul>
 * The header names the folder and the units whose database part must be in place first:
 * {@code Pgtrickle-Schema: db;requires:="io.pgtrickle.refresh"}. The core unit, the catalog, always
 * comes first and need not be named.
 */
record UnitScripts(String unit, String bundleVersion, List<String> requires, List<Migration> migrations,
                   List<Repeatable> repeatables) {

    static final String HEADER = "Pgtrickle-Schema";
    static final String CORE = "io.pgtrickle.catalog";

    private static final Pattern VERSIONED = Pattern.compile("V(\\d+(?:\\.\\d+){2,3})__(\\w+)\\.sql");
    private static final Pattern REPEATABLE = Pattern.compile("R__(\\w+)\\.sql");
    private static final Pattern REQUIRES = Pattern.compile(";\\s*requires\\s*:?=\\s*\"?([^\";]*)\"?");

    /** A repeatable script, with the checksum that decides whether it runs again. */
    record Repeatable(String name, String sql, String checksum) {
        static Repeatable of(String name, String sql) {
            return new Repeatable(name, sql, Migration.checksum(sql));
        }
    }

    UnitScripts {
        requires = List.copyOf(requires);
        migrations = List.copyOf(migrations);
        repeatables = List.copyOf(repeatables);
    }

    boolean isCore() {
        return CORE.equals(unit);
    }

    /** The folder named by the header: its first clause. */
    static String root(String header) {
        String root = header.split(";", 2)[0].strip();
        if (root.isEmpty() || root.startsWith("/") || root.contains("..")) {
            throw new IllegalArgumentException(HEADER + " must name a folder inside the bundle, e.g. 'db': '" + header + "'");
        }
        return root;
    }

    static List<String> requires(String header) {
        Matcher m = REQUIRES.matcher(header);
        if (!m.find()) {
            return List.of();
        }
        return Arrays.stream(m.group(1).split(",")).map(String::strip).filter(s -> !s.isEmpty()).toList();
    }

    static UnitScripts load(String unit, String bundleVersion, String header, ScriptFolder folder) {
        List<Migration> migrations = migrations(unit, folder.scripts("schema"));
        List<Repeatable> repeatables = new ArrayList<>();
        for (Map.Entry<String, String> e : folder.scripts("code").entrySet()) {
            if (!REPEATABLE.matcher(e.getKey()).matches()) {
                throw new IllegalArgumentException(unit + ": code/" + e.getKey() + " is not named R__<order>_<description>.sql");
            }
            repeatables.add(Repeatable.of(e.getKey(), normalise(e.getValue())));
        }
        List<String> requires = new ArrayList<>(requires(header));
        requires.remove(CORE);
        return new UnitScripts(unit, bundleVersion, requires, migrations, repeatables);
    }

    /** Files of one version are joined in name order into one migration (see the class comment). */
    static List<Migration> migrations(String unit, Map<String, String> files) {
        List<Migration> result = new ArrayList<>();
        List<Map.Entry<MigrationVersion, Map.Entry<String, String>>> parsed = new ArrayList<>();
        for (Map.Entry<String, String> e : files.entrySet()) {
            Matcher m = VERSIONED.matcher(e.getKey());
            if (!m.matches()) {
                throw new IllegalArgumentException(unit + ": schema/" + e.getKey() + " is not named V<version>__<description>.sql");
            }
            parsed.add(Map.entry(MigrationVersion.parse(m.group(1)), Map.entry(m.group(2), normalise(e.getValue()))));
        }
        parsed.sort((a, b) -> {
            int c = a.getKey().compareTo(b.getKey());
            return c != 0 ? c : a.getValue().getKey().compareTo(b.getValue().getKey());
        });
        for (Map.Entry<MigrationVersion, Map.Entry<String, String>> p : parsed) {
            String description = p.getValue().getKey().replaceFirst("^\\d+_", "").replace('_', ' ');
            Migration previous = result.isEmpty() ? null : result.get(result.size() - 1);
            if (previous != null && previous.version().equals(p.getKey())) {
                result.set(result.size() - 1, Migration.of(p.getKey().toString(), previous.description() + "; " + description,
                        previous.sql() + p.getValue().getValue()));
            } else {
                result.add(Migration.of(p.getKey().toString(), description, p.getValue().getValue()));
            }
        }
        return result;
    }

    /** Unix line ends and a final newline, as the scripts were always read, so checksums stay put. */
    private static String normalise(String text) {
        String t = text.replace("\r\n", "\n");
        return t.isEmpty() || t.endsWith("\n") ? t : t + "\n";
    }
}
