/**
 * Server-sent events of announced refreshes. No exported API: the protocol is HTTP, described in
 * {@code docs/live.md}.
 */
package io.pgtrickle.http.events;
