/**
 * The live page: static files, served as they are. No exported API: everything the page shows comes
 * over HTTP from {@code /pgtrickle/stream-tables} and {@code /pgtrickle/events} (docs/live.md).
 */
package io.pgtrickle.live.page;
