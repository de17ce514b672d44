package io.pgtrickle.versionsync;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The rules of {@code check-version-sync}: each returns the disagreements it finds, so a mismatch
 * is reported with where it is, not just that there is one.
 */
final class VersionSync {

    /** "pgtrickle 0.33.0", "pgtrickle-0.33.0", "pgtrickle v0.33.0": how docs state the product version. */
    static final Pattern STATED_VERSION = Pattern.compile("pgtrickle[- ]v?(\\d+\\.\\d+\\.\\d+)");

    /**
     * "catalog at version 0.33.0.1" (the catalog bundle's log line), "catalog version 0.33.0.1": how docs
     * state the catalog's version, which is the newest migration, a release or a step within one.
     */
    static final Pattern STATED_CATALOG_VERSION = Pattern.compile("catalog (?:at )?version (\\d+\\.\\d+\\.\\d+(?:\\.\\d+)?)");

    /** psql's answer to {@code SELECT max(version) FROM pgtrickle.pgt_schema_version;}, as the README shows it. */
    static final Pattern SHOWN_CATALOG_VERSION = Pattern.compile(
            "max\\(version\\) FROM pgtrickle\\.pgt_schema_version;\\s*\\n\\s*max\\s*\\n\\s*-+\\s*\\n\\s*(\\S+)");

    private static final Pattern FEATURES_NAME = Pattern.compile("<features[^>]*\\sname=\"pgtrickle-([^\"]+)\"");
    private static final Pattern OUR_BUNDLE = Pattern.compile("mvn:io\\.pgtrickle/([^/]+)/([^/<\\s]+)");
    private static final Pattern FEATURE_VERSION = Pattern.compile("<feature\\s[^>]*name=\"(pgtrickle-[^\"]+)\"[^>]*version=\"([^\"]+)\"");

    private VersionSync() {
    }

    /** The project version without a -SNAPSHOT suffix must equal the catalog's newest release. */
    static List<String> checkCatalog(String projectVersion, String catalogRelease) {
        String release = projectVersion.replace("-SNAPSHOT", "");
        return release.equals(catalogRelease) ? List.of()
                : List.of("catalog migrations end at " + catalogRelease + " but the project version is " + projectVersion);
    }

    /** The built features XML: repository name, every pgtrickle feature version and bundle version. */
    static List<String> checkFeatures(String projectVersion, String featuresXml) {
        List<String> problems = new ArrayList<>();
        Matcher name = FEATURES_NAME.matcher(featuresXml);
        if (!name.find()) {
            problems.add("features XML has no repository named pgtrickle-<version>");
        } else if (!name.group(1).equals(projectVersion)) {
            problems.add("features repository is pgtrickle-" + name.group(1) + ", project is " + projectVersion);
        }
        Matcher bundle = OUR_BUNDLE.matcher(featuresXml);
        int bundles = 0;
        while (bundle.find()) {
            bundles++;
            if (!bundle.group(2).equals(projectVersion)) {
                problems.add("features XML installs " + bundle.group(1) + " " + bundle.group(2) + ", project is " + projectVersion);
            }
        }
        if (bundles == 0) {
            problems.add("features XML installs no io.pgtrickle bundle");
        }
        Matcher feature = FEATURE_VERSION.matcher(featuresXml);
        while (feature.find()) {
            if (!feature.group(2).equals(projectVersion)) {
                problems.add("feature " + feature.group(1) + " has version " + feature.group(2) + ", project is " + projectVersion);
            }
        }
        return problems;
    }

    /** Every version a document states for pgtrickle must be the project's. */
    static List<String> checkDocument(String projectVersion, String documentName, String text) {
        List<String> problems = new ArrayList<>();
        Matcher m = STATED_VERSION.matcher(text);
        while (m.find()) {
            if (!m.group(1).equals(projectVersion)) {
                int line = text.substring(0, m.start()).split("\n", -1).length;
                problems.add(documentName + ":" + line + " states '" + m.group() + "', project is " + projectVersion);
            }
        }
        return problems;
    }

    /** Every catalog version a document states or shows must be the newest migration's. */
    static List<String> checkCatalogStatements(String newestMigration, String documentName, String text) {
        List<String> problems = new ArrayList<>();
        for (Pattern pattern : List.of(STATED_CATALOG_VERSION, SHOWN_CATALOG_VERSION)) {
            Matcher m = pattern.matcher(text);
            while (m.find()) {
                if (!m.group(1).equals(newestMigration)) {
                    int line = text.substring(0, m.start(1)).split("\n", -1).length;
                    problems.add(documentName + ":" + line + " states catalog version " + m.group(1) + ", the newest migration is "
                            + newestMigration);
                }
            }
        }
        return problems;
    }

    static boolean statesVersion(String projectVersion, String text) {
        Matcher m = STATED_VERSION.matcher(text);
        while (m.find()) {
            if (m.group(1).equals(projectVersion)) {
                return true;
            }
        }
        return false;
    }
}
