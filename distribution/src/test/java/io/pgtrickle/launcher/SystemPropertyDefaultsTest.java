package io.pgtrickle.launcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SystemPropertyDefaultsTest {

    private static final String SET_BY_FILE = "pgtrickle.test.defaults.fromFile";
    private static final String GIVEN_WITH_D = "pgtrickle.test.defaults.fromCommandLine";

    private String commonPool;

    @BeforeEach
    void remember() {
        commonPool = System.clearProperty(SystemPropertyDefaults.COMMON_POOL_PARALLELISM);
    }

    @AfterEach
    void clear() {
        System.clearProperty(SET_BY_FILE);
        System.clearProperty(GIVEN_WITH_D);
        if (commonPool == null) {
            System.clearProperty(SystemPropertyDefaults.COMMON_POOL_PARALLELISM);
        } else {
            System.setProperty(SystemPropertyDefaults.COMMON_POOL_PARALLELISM, commonPool);
        }
    }

    @Test
    void aCommonPoolOfTwoOnSmallMachinesUnlessGiven() {
        SystemPropertyDefaults.keepACommonPool(8);
        assertNull(System.getProperty(SystemPropertyDefaults.COMMON_POOL_PARALLELISM), "the JDK's default (7) stays");
        SystemPropertyDefaults.keepACommonPool(2);
        assertEquals("2", System.getProperty(SystemPropertyDefaults.COMMON_POOL_PARALLELISM));
        System.setProperty(SystemPropertyDefaults.COMMON_POOL_PARALLELISM, "1");
        SystemPropertyDefaults.keepACommonPool(1);
        assertEquals("1", System.getProperty(SystemPropertyDefaults.COMMON_POOL_PARALLELISM), "-D wins");
    }

    @Test
    void fileSetsOnlyWhatIsNotAlreadySet(@TempDir Path tmp) throws Exception {
        Path file = tmp.resolve("system.properties");
        Files.writeString(file, SET_BY_FILE + "=file\n" + GIVEN_WITH_D + "=file\n");
        System.setProperty(GIVEN_WITH_D, "command line");
        SystemPropertyDefaults.apply(file);
        assertEquals("file", System.getProperty(SET_BY_FILE));
        assertEquals("command line", System.getProperty(GIVEN_WITH_D));
    }

    @Test
    void missingFileIsFine(@TempDir Path tmp) throws Exception {
        SystemPropertyDefaults.apply(tmp.resolve("system.properties"));
        assertEquals(null, System.getProperty(SET_BY_FILE));
    }
}
