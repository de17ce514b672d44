package io.pgtrickle.launcher;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.function.Supplier;
import org.junit.jupiter.api.Assumptions;
import org.openqa.selenium.By;
import org.openqa.selenium.StaleElementReferenceException;
import org.openqa.selenium.WebDriver;
import org.openqa.selenium.chrome.ChromeDriver;
import org.openqa.selenium.chrome.ChromeDriverService;
import org.openqa.selenium.chrome.ChromeOptions;

/**
 * A real headless Chromium: Debian's {@code chromium}, driven through Debian's {@code chromedriver}
 * (the same build, so their versions always match).
 *
 * <p>Selenium rather than our own DevTools client over {@code java.net.http.WebSocket}: WebDriver is
 * the W3C standard, kept by the browser makers' project, and waiting on the DOM is all a test needs.
 * Its weight (about 25 jars with Guava and OpenTelemetry) is test scope only and comes from Maven
 * Central like everything else. Both paths are given explicitly, so Selenium Manager never looks for,
 * or downloads, a browser or a driver.
 */
final class Chromium {

    /** Debian's paths; the properties exist to see the skip happen ({@code -Dpgtrickle.it.chromium=/nowhere}). */
    static final Path BROWSER = Path.of(System.getProperty("pgtrickle.it.chromium", "/usr/bin/chromium"));
    static final Path DRIVER = Path.of(System.getProperty("pgtrickle.it.chromedriver", "/usr/bin/chromedriver"));

    /** Held, or the setting goes with the garbage: Selenium warns that it has no DevTools for this version, which no test uses. */
    private static final java.util.logging.Logger CDP = java.util.logging.Logger.getLogger("org.openqa.selenium.devtools");

    private Chromium() {
    }

    /** A fresh headless browser with its own profile in {@code profile}; the test is skipped, loudly, where there is none. */
    static WebDriver startOrSkip(Path profile) {
        if (!Files.isExecutable(BROWSER) || !Files.isExecutable(DRIVER)) {
            String why = "no headless browser: " + BROWSER + " or " + DRIVER + " is missing (apt-get install -y chromium "
                    + "chromium-driver; .ci/run installs them where it can)";
            System.err.println("\n*** SKIPPED: the real browser test of the live page did not run: " + why + " ***\n");
            Assumptions.abort(why);
        }
        CDP.setLevel(java.util.logging.Level.SEVERE);
        System.setProperty("webdriver.chrome.driver", DRIVER.toString());
        ChromeDriverService service = new ChromeDriverService.Builder().usingDriverExecutable(DRIVER.toFile())
                .usingAnyFreePort().build();
        ChromeOptions options = new ChromeOptions();
        options.setBinary(new File(BROWSER.toString()));
        // as root in a container: no sandbox; no GPU; and no traffic of its own (updates, sync, field trials)
        options.addArguments("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--user-data-dir=" + profile.toAbsolutePath(), "--window-size=1200,900");
        return new ChromeDriver(service, options);
    }

    /**
     * Polls {@code value} until it is true (bounded), and fails saying what the page showed. An element
     * that went stale meanwhile (the page redraws its list every few seconds) counts as not yet.
     */
    static void await(String what, Duration within, Supplier<Boolean> value, Supplier<String> shown) throws InterruptedException {
        long deadline = System.nanoTime() + within.toNanos();
        do {
            if (holds(value)) {
                return;
            }
            Thread.sleep(50);
        } while (System.nanoTime() < deadline);
        if (!holds(value)) {
            throw new AssertionError(what + " did not happen within " + within.toSeconds() + " s; the page shows: " + shown.get());
        }
    }

    private static boolean holds(Supplier<Boolean> value) {
        try {
            return Boolean.TRUE.equals(value.get());
        } catch (StaleElementReferenceException e) {
            return false;
        }
    }

    /** Clicks the element {@code css} selects, again if the page redrew it between finding and clicking. */
    static void click(WebDriver browser, String css) throws InterruptedException {
        await("a click on " + css, Duration.ofSeconds(30), () -> {
            browser.findElement(By.cssSelector(css)).click();
            return true;
        }, () -> browser.findElement(By.tagName("body")).getText());
    }
}
