package io.pgtrickle.api.refresh;

import java.sql.SQLException;
import org.osgi.annotation.versioning.ProviderType;

/**
 * Refreshes a stream table now, on behalf of an operator or an application.
 *
 * <p>This is the scheduler's own code path, not a second implementation: the refresh runs through
 * {@code pgtrickle.run_refresh} with {@code initiated_by = 'MANUAL'} in one transaction, every
 * registered {@link RefreshListener} is called inside that transaction, and only then does it commit.
 * If another session is refreshing the same stream table, the call waits for it to finish.
 *
 * <p>A failed refresh is rolled back and recorded like a scheduled one (a {@code FAILED} history row,
 * {@code consecutive_errors} incremented, suspension at {@code pg_trickle.max_consecutive_errors}),
 * then reported to the caller.
 */
@ProviderType
public interface RefreshService {

    /**
     * Refreshes one stream table and returns the {@code refresh_id} of its committed
     * {@code pgtrickle.pgt_refresh_history} row.
     *
     * @param streamTableName the stream table, {@code schema.name} or a name found through the
     *                        database's {@code search_path}, written as in SQL (quote identifiers
     *                        that need it)
     * @return the refresh id; the same id every listener saw in {@link RefreshEvent#refreshId()}
     * @throws SQLException when the name denotes no stream table, when the refresh fails (the
     *                      refresh is rolled back and nothing of it is visible), or when a listener
     *                      throws
     */
    long refresh(String streamTableName) throws SQLException;
}
