package io.pgtrickle.catalog;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.MalformedURLException;
import java.net.URL;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.jar.Attributes;
import java.util.jar.Manifest;
import org.osgi.framework.Bundle;
import org.osgi.framework.FrameworkUtil;
import org.osgi.framework.wiring.BundleWiring;

/**
 * Units found on a plain class path (tests, benchmarks, tools): every {@code META-INF/MANIFEST.MF}
 * carrying {@value UnitScripts#HEADER}, read as the OSGi extender reads an installed bundle.
 */
final class ClasspathUnits {

    private static final String MANIFEST = "META-INF/MANIFEST.MF";

    private ClasspathUnits() {
    }

    /** Every unit visible to the loader, the core first, then each after the units it requires. */
    static List<UnitScripts> find(ClassLoader loader) {
        Map<String, UnitScripts> units = new LinkedHashMap<>();
        try {
            for (URL url : Collections.list(loader.getResources(MANIFEST))) {
                Manifest manifest;
                try (InputStream in = url.openStream()) {
                    manifest = new Manifest(in);
                }
                Attributes main = manifest.getMainAttributes();
                String header = main.getValue(UnitScripts.HEADER);
                String name = main.getValue("Bundle-SymbolicName");
                if (header == null || name == null) {
                    continue;
                }
                String unit = name.split(";", 2)[0].strip();
                String base = url.toString().substring(0, url.toString().length() - MANIFEST.length());
                units.putIfAbsent(unit, UnitScripts.load(unit, String.valueOf(main.getValue("Bundle-Version")), header,
                        ScriptFolder.of(new URL(base), UnitScripts.root(header))));
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the class path's manifests", e);
        }
        if (!units.containsKey(UnitScripts.CORE)) {
            // the catalog's classes without their manifest (an IDE's build): its folder is still known
            units.put(UnitScripts.CORE, new UnitScripts(UnitScripts.CORE, "0.0.0", List.of(), Migration.shipped(), List.of()));
        }
        return order(units);
    }

    /** The core first, then every unit after those it requires; ties in name order. */
    static List<UnitScripts> order(Map<String, UnitScripts> units) {
        List<UnitScripts> ordered = new ArrayList<>();
        List<String> names = new ArrayList<>(units.keySet());
        Collections.sort(names);
        names.remove(UnitScripts.CORE);
        names.add(0, UnitScripts.CORE);
        List<String> placed = new ArrayList<>();
        while (placed.size() < names.size()) {
            boolean progress = false;
            for (String n : names) {
                UnitScripts u = units.get(n);
                if (u == null || placed.contains(n)) {
                    continue;
                }
                List<String> missing = u.requires().stream().filter(r -> !units.containsKey(r)).toList();
                if (!missing.isEmpty()) {
                    throw new IllegalStateException("unit " + n + " requires " + String.join(", ", missing) + ", which is not installed");
                }
                if (placed.containsAll(u.requires())) {
                    ordered.add(u);
                    placed.add(n);
                    progress = true;
                    break;
                }
            }
            if (!progress) {
                throw new IllegalStateException("the units' requirements form a cycle: "
                        + names.stream().filter(n -> !placed.contains(n)).toList());
            }
        }
        return ordered;
    }

    /** The {@code db} folder of the unit that holds {@code anchor}: from its bundle, or its class-path root. */
    static ScriptFolder ownFolder(Class<?> anchor) {
        Bundle bundle = FrameworkUtil.getBundle(anchor);
        if (bundle != null) {
            return ScriptFolder.of(bundle.adapt(BundleWiring.class), "db");
        }
        URL location = anchor.getProtectionDomain().getCodeSource().getLocation();
        try {
            URL base = location.getPath().endsWith(".jar") ? new URL("jar:" + location + "!/") : location;
            return ScriptFolder.of(base, "db");
        } catch (MalformedURLException e) {
            throw new IllegalStateException("cannot locate the scripts of " + anchor.getName() + " at " + location, e);
        }
    }
}
