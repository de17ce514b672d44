package io.pgtrickle.refresh;

import io.pgtrickle.api.refresh.RefreshListener;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * The {@link RefreshListener} whiteboard as the refresh transaction sees it: an immutable snapshot
 * sorted by {@code service.ranking} (highest first), then by service id (registered first), which is
 * OSGi's own service order. Each refresh calls the snapshot taken when it starts, so a listener
 * arriving or leaving mid-refresh never reorders or skips the others.
 */
final class Listeners {

    /** One registered listener; {@code key} is its service id (any unique number outside OSGi). */
    record Entry(RefreshListener listener, int ranking, long key) {
        String label() {
            return listener.getClass().getName();
        }
    }

    private static final Comparator<Entry> ORDER =
            Comparator.comparingInt(Entry::ranking).reversed().thenComparingLong(Entry::key);

    private volatile List<Entry> sorted = List.of();

    /** Adds or, for a known key, re-ranks a listener. */
    synchronized void put(RefreshListener listener, int ranking, long key) {
        List<Entry> next = new ArrayList<>(sorted);
        next.removeIf(e -> e.key == key);
        next.add(new Entry(listener, ranking, key));
        next.sort(ORDER);
        sorted = List.copyOf(next);
    }

    synchronized void remove(long key) {
        List<Entry> next = new ArrayList<>(sorted);
        if (next.removeIf(e -> e.key == key)) {
            sorted = List.copyOf(next);
        }
    }

    List<Entry> snapshot() {
        return sorted;
    }
}
