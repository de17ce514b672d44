package io.pgtrickle.catalog;

import java.util.Arrays;
import java.util.stream.Collectors;

/** A catalog migration version: a release {@code 0.33.0}, or a step within one, {@code 0.33.0.1}. */
record MigrationVersion(int[] parts) implements Comparable<MigrationVersion> {

    static MigrationVersion parse(String text) {
        String[] tokens = text.trim().split("\\.");
        if (tokens.length < 3 || tokens.length > 4) {
            throw new IllegalArgumentException("not a catalog version (expected 0.33.0 or 0.33.0.1): '" + text + "'");
        }
        int[] parts = new int[4];
        for (int i = 0; i < tokens.length; i++) {
            try {
                parts[i] = Integer.parseInt(tokens[i]);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("not a catalog version (expected 0.33.0 or 0.33.0.1): '" + text + "'", e);
            }
            if (parts[i] < 0) {
                throw new IllegalArgumentException("not a catalog version: '" + text + "'");
            }
        }
        return new MigrationVersion(parts);
    }

    /** The release this migration belongs to, {@code major.minor.micro}. */
    String release() {
        return parts[0] + "." + parts[1] + "." + parts[2];
    }

    @Override
    public int compareTo(MigrationVersion o) {
        return Arrays.compare(parts, o.parts);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof MigrationVersion v && Arrays.equals(parts, v.parts);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(parts);
    }

    @Override
    public String toString() {
        return parts[3] == 0 ? release() : Arrays.stream(parts).mapToObj(Integer::toString).collect(Collectors.joining("."));
    }
}
