package io.pgtrickle.launcher;

import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A strict reader of Prometheus' text exposition format 0.0.4 (prometheus.io/docs/instrumenting/exposition_formats):
 * every line is a HELP, a TYPE or a sample of the family last typed; names, label names, escapes and
 * values as the format defines them; a histogram's buckets cumulative, ending in +Inf equal to its
 * count. Anything else throws, naming the line. (No Java parser library for the text format is among
 * the packages served here; the Prometheus Java client only writes it.)
 */
final class PrometheusText {

    private static final Pattern NAME = Pattern.compile("[a-zA-Z_:][a-zA-Z0-9_:]*");
    private static final Pattern LABEL = Pattern.compile("([a-zA-Z_][a-zA-Z0-9_]*)=\"((?:[^\"\\\\\\n]|\\\\[\\\\\"n])*)\"");
    private static final Set<String> TYPES = Set.of("counter", "gauge", "histogram", "summary", "untyped");

    /** A sample: metric name and labels (sorted), and its value. */
    record Sample(String name, Map<String, String> labels, double value) {
    }

    final Map<String, String> types = new LinkedHashMap<>();
    /** The text parsed. */
    String text;
    final List<Sample> samples = new java.util.ArrayList<>();

    static PrometheusText parse(String text) {
        PrometheusText p = new PrometheusText();
        p.text = text;
        String family = null;
        Set<String> helped = new HashSet<>();
        int n = 0;
        for (String line : text.split("\n", -1)) {
            n++;
            if (line.isEmpty()) {
                continue;
            }
            if (line.startsWith("# HELP ")) {
                String name = line.substring(7).split(" ", 2)[0];
                check(NAME.matcher(name).matches() && helped.add(name), n, line);
                continue;
            }
            if (line.startsWith("# TYPE ")) {
                String[] parts = line.substring(7).split(" ");
                check(parts.length == 2 && NAME.matcher(parts[0]).matches() && TYPES.contains(parts[1])
                        && !p.types.containsKey(parts[0]), n, line);
                p.types.put(parts[0], parts[1]);
                family = parts[0];
                continue;
            }
            check(!line.startsWith("#"), n, line);
            int brace = line.indexOf('{');
            int space = line.indexOf(' ');
            String name = brace >= 0 && brace < space ? line.substring(0, brace) : line.substring(0, space);
            check(NAME.matcher(name).matches(), n, line);
            Map<String, String> labels = new TreeMap<>();
            String rest;
            if (brace >= 0 && brace < space) {
                int close = line.indexOf("} ", brace);
                check(close > 0, n, line);
                String inside = line.substring(brace + 1, close);
                Matcher m = LABEL.matcher(inside);
                int at = 0;
                while (at < inside.length()) {
                    check(m.find(at) && m.start() == at, n, line);
                    check(labels.put(m.group(1), m.group(2).replace("\\n", "\n").replace("\\\"", "\"").replace("\\\\", "\\")) == null, n, line);
                    at = m.end();
                    if (at < inside.length()) {
                        check(inside.charAt(at) == ',', n, line);
                        at++;
                    }
                }
                rest = line.substring(close + 2);
            } else {
                rest = line.substring(space + 1);
            }
            String[] value = rest.split(" ");
            check(value.length == 1 || value.length == 2, n, line);
            double v = switch (value[0]) {
                case "+Inf" -> Double.POSITIVE_INFINITY;
                case "-Inf" -> Double.NEGATIVE_INFINITY;
                case "NaN" -> Double.NaN;
                default -> Double.parseDouble(value[0]);
            };
            check(family != null && belongs(name, family, p.types.get(family)), n, line + " (outside its family " + family + ")");
            p.samples.add(new Sample(name, labels, v));
        }
        p.checkHistograms();
        return p;
    }

    private static boolean belongs(String name, String family, String type) {
        if (type.equals("histogram")) {
            return name.equals(family + "_bucket") || name.equals(family + "_sum") || name.equals(family + "_count");
        }
        return name.equals(family);
    }

    private void checkHistograms() {
        Map<Map<String, String>, double[]> last = new HashMap<>();
        for (Sample s : samples) {
            if (s.name().endsWith("_bucket")) {
                Map<String, String> series = new TreeMap<>(s.labels());
                series.remove("le");
                series.put("__name__", s.name());
                double[] previous = last.get(series);
                if (previous != null && s.value() < previous[0]) {
                    throw new IllegalArgumentException("bucket counts decrease: " + s);
                }
                last.put(series, new double[] {s.value()});
                if (s.labels().get("le").equals("+Inf")) {
                    String family = s.name().substring(0, s.name().length() - "_bucket".length());
                    Map<String, String> labels = new TreeMap<>(s.labels());
                    labels.remove("le");
                    if (value(family + "_count", labels) != s.value()) {
                        throw new IllegalArgumentException("+Inf bucket is not the count: " + s);
                    }
                }
            }
        }
    }

    /** The value of one sample, or NaN when there is none. */
    double value(String name, Map<String, String> labels) {
        for (Sample s : samples) {
            if (s.name().equals(name) && s.labels().equals(new TreeMap<>(labels))) {
                return s.value();
            }
        }
        return Double.NaN;
    }

    /** The {@code le} label, as written, of the bucket of {@code family} with {@code labels} whose bound is {@code bound}. */
    String le(String family, Map<String, String> labels, double bound) {
        for (Sample s : samples) {
            String le = s.labels().get("le");
            if (s.name().equals(family + "_bucket") && le != null && !le.equals("+Inf") && Double.parseDouble(le) == bound) {
                Map<String, String> rest = new TreeMap<>(s.labels());
                rest.remove("le");
                if (rest.equals(new TreeMap<>(labels))) {
                    return le;
                }
            }
        }
        throw new IllegalArgumentException("no bucket le=" + bound + " of " + family + labels);
    }

    /** The sum over the samples of a name whose labels include {@code labels}. */
    double sum(String name, Map<String, String> labels) {
        double total = 0;
        for (Sample s : samples) {
            if (s.name().equals(name) && s.labels().entrySet().containsAll(labels.entrySet())) {
                total += s.value();
            }
        }
        return total;
    }

    private static void check(boolean ok, int line, String text) {
        if (!ok) {
            throw new IllegalArgumentException("line " + line + " is not the Prometheus text format: " + text);
        }
    }
}
