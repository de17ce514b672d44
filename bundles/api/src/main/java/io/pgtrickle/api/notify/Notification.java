package io.pgtrickle.api.notify;

import java.time.Instant;
import java.util.Objects;

/**
 * One notification for one sink: a refresh that changed a stream table, or several folded by
 * coalescing, announced on a subscription channel.
 *
 * @param id             stable across retries and replays ({@code pgt-<outbox id>}): receivers de-duplicate on it
 * @param sinkId         the sink it is for ({@code type:name})
 * @param streamTable    the stream table, schema-qualified as when it was announced
 * @param channel        the subscription channel
 * @param refreshId      the (latest) refresh announced, a {@code pgtrickle.pgt_refresh_history} id
 * @param firstRefreshId the first refresh folded into it ({@code refreshId} when it announces one)
 * @param refreshes      how many refreshes it folds
 * @param insertedCount  rows inserted by those refreshes
 * @param deletedCount   rows deleted by those refreshes
 * @param payload        the JSON sent with {@code NOTIFY}: what a receiver should get
 * @param createdAt      when it was announced
 * @param attempt        1 for the first delivery, 2 for the first retry, ...
 */
public record Notification(String id, String sinkId, String streamTable, String channel, long refreshId, long firstRefreshId,
                           int refreshes, long insertedCount, long deletedCount, String payload, Instant createdAt, int attempt) {

    public Notification {
        Objects.requireNonNull(id, "id");
        Objects.requireNonNull(sinkId, "sinkId");
        Objects.requireNonNull(streamTable, "streamTable");
        Objects.requireNonNull(channel, "channel");
        Objects.requireNonNull(payload, "payload");
        Objects.requireNonNull(createdAt, "createdAt");
        if (refreshes < 1 || attempt < 1 || insertedCount < 0 || deletedCount < 0 || firstRefreshId > refreshId) {
            throw new IllegalArgumentException("inconsistent notification " + id + ": refreshes " + refreshes + ", attempt "
                    + attempt + ", +" + insertedCount + " -" + deletedCount + ", refreshes " + firstRefreshId + ".." + refreshId);
        }
    }
}
