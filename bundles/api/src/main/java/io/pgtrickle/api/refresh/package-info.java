/**
 * Refreshing stream tables: the {@link io.pgtrickle.api.refresh.RefreshService} that refreshes one on
 * demand, and the {@link io.pgtrickle.api.refresh.RefreshListener} whiteboard through which other
 * bundles (notifications, shadow evolution, third parties) take part in every refresh transaction.
 */
@Export
@Version("1.0.0")
package io.pgtrickle.api.refresh;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
