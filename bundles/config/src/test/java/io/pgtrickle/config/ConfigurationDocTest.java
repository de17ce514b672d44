package io.pgtrickle.config;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** docs/configuration.md lists every setting, with its environment variable and target property. */
class ConfigurationDocTest {

    @Test
    void everySettingIsDocumented() throws IOException {
        String doc = Files.readString(Path.of("../../docs/configuration.md"));
        List<String> missing = new ArrayList<>();
        for (Setting s : Setting.values()) {
            String row = "| `" + s.key() + "` | `" + s.environmentVariable() + "` | "
                    + s.pid().map(pid -> "`" + pid + "` / `" + s.property() + "`").orElse("launcher only") + " |";
            if (!doc.contains(row)) {
                missing.add(row);
            }
        }
        assertEquals(List.of(), missing, "rows missing from docs/configuration.md");
    }
}
