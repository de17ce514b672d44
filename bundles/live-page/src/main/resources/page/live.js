// The live page: a reactive UI on pgtrickle with nothing but the browser (docs/live.md).
// fetch() lists the stream tables (GET stream-tables), an EventSource follows one (GET events).
// No framework and no build step: copy it and change what you like.
'use strict';

const $ = id => document.getElementById(id);
const LIST_EVERY_MS = 5000; // staleness grows between refreshes: the list is read again this often
const LOG_MAX = 100;        // live entries kept on the page
const REOPEN_MS = 5000;     // after the browser gave up on an error answer, open a new EventSource this much later

// The token arrives in the URL fragment (/pgtrickle/#token=...): browsers never send a fragment to
// the server, so it stays out of access logs. It is kept in sessionStorage (gone with the tab) and
// taken off the address bar, so it is not bookmarked or pasted along with the link.
function takeToken() {
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromUrl) {
    sessionStorage.setItem('pgtrickle.token', fromUrl);
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem('pgtrickle.token');
}

let token = takeToken();
let source = null; // the live panel's EventSource
let reopening = null; // the timer that opens the next one after the browser gave up

function say(text) {
  $('message').textContent = text;
}

function askForToken(why) {
  say(why);
  $('token-form').hidden = false;
}

$('token-form').addEventListener('submit', e => {
  e.preventDefault();
  token = $('token').value.trim();
  sessionStorage.setItem('pgtrickle.token', token);
  $('token-form').hidden = true;
  loadList();
});

// The list answers to the same token and privileges as the events: it shows only what the token's
// role may SELECT. The token goes in a header here; only EventSource needs it in the URL.
async function loadList() {
  if (!token) {
    askForToken('Open this page as /pgtrickle/#token=YOUR_TOKEN, or enter the token.');
    return;
  }
  let response;
  try {
    response = await fetch('stream-tables', { headers: { Authorization: 'Bearer ' + token }, cache: 'no-store' });
  } catch (e) {
    say('The server cannot be reached; trying again.');
    return;
  }
  if (response.status === 401) {
    askForToken('This token is not accepted.');
    return;
  }
  if (!response.ok) {
    say(`The list is not available (${response.status}); trying again.`);
    return;
  }
  render(await response.json());
  say('');
}

function render(tables) {
  const rows = tables.map(t => {
    const tr = document.createElement('tr');
    tr.dataset.name = t.name;
    const r = t.last_refresh;
    cell(tr, t.name);
    cell(tr, t.status);
    cell(tr, t.refresh_mode);
    cell(tr, t.staleness_seconds == null ? 'never refreshed' : age(t.staleness_seconds));
    cell(tr, r ? `${clock(r.at)} ${r.action} ${r.status.toLowerCase()} +${r.rows_inserted} -${r.rows_deleted}` : '');
    const live = cell(tr, '');
    if (t.events) {
      const follow = document.createElement('button');
      follow.textContent = 'Follow';
      follow.addEventListener('click', () => followTable(t.name));
      live.append(follow);
    } else {
      // only stream tables subscribed to channel pgtrickle_sse have events
      live.textContent = 'no events';
      live.title = `SELECT pgtrickle.subscribe('${t.name}', 'pgtrickle_sse')`;
    }
    return tr;
  });
  $('tables').tBodies[0].replaceChildren(...rows);
}

// textContent, never innerHTML: names and payloads are data, and a name may contain anything
function cell(tr, text) {
  const td = tr.insertCell();
  td.textContent = text;
  return td;
}

function age(seconds) {
  return seconds < 120 ? `${Math.round(seconds)} s` : seconds < 7200 ? `${Math.round(seconds / 60)} min` : `${Math.round(seconds / 3600)} h`;
}

function clock(timestamp) {
  return new Date(timestamp).toLocaleTimeString();
}

function followTable(name, after) {
  if (source) {
    source.close();
  }
  clearTimeout(reopening);
  $('live-name').textContent = name;
  if (after === undefined) {
    $('live-log').replaceChildren();
  }
  state('connecting');
  // EventSource cannot send headers, hence access_token in the query string. It reconnects by itself
  // (after the server's retry: interval) and sends the last id it saw as Last-Event-ID; the server
  // resumes right after it, so a dropped connection loses and repeats nothing. No code for that here.
  const resume = after ? `&last_event_id=${encodeURIComponent(after)}` : '';
  const es = new EventSource(`events?stream_table=${encodeURIComponent(name)}&access_token=${encodeURIComponent(token)}${resume}`);
  source = es;
  let lastId = after;
  es.onopen = () => state('live');
  // CLOSED: the server answered with an error (a 503 while the database is away, ...) and the browser
  // gives up for good. Open a new one after a while, resuming after the last event seen: the server
  // takes it as last_event_id, since a new EventSource cannot send the header.
  es.onerror = () => {
    state('reconnecting');
    if (es.readyState === EventSource.CLOSED) {
      reopening = setTimeout(() => followTable(name, lastId), REOPEN_MS);
    }
  };
  es.addEventListener('refresh', e => {
    lastId = e.lastEventId;
    const n = JSON.parse(e.data);
    const several = n.refreshes > 1 ? ` (${n.refreshes} refreshes)` : '';
    entry('refresh', `refresh ${n.refresh_id}: +${n.inserted_count} -${n.deleted_count}${several}`, e.lastEventId, n.refresh_id);
    loadList(); // its staleness and last refresh just changed
  });
  // Resumed from further back than the server keeps: some refreshes were missed, so whatever was
  // built from them must be read again. Here that is the list; an app would SELECT its stream table.
  es.addEventListener('resync', e => {
    lastId = e.lastEventId;
    entry('resync', 'missed refreshes: reloaded', e.lastEventId);
    loadList();
  });
  // The token's role lost SELECT: the server ends the stream, and the browser must not reconnect.
  es.addEventListener('revoked', () => {
    es.close();
    clearTimeout(reopening);
    state('revoked');
    loadList();
  });
}

function state(s) {
  $('live-state').textContent = s;
  $('live-state').dataset.state = s;
}

function entry(kind, text, eventId, refreshId) {
  const li = document.createElement('li');
  li.className = kind;
  li.dataset.eventId = eventId;
  if (refreshId !== undefined) {
    li.dataset.refreshId = refreshId;
  }
  li.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  const log = $('live-log');
  log.prepend(li);
  while (log.children.length > LOG_MAX) {
    log.lastElementChild.remove();
  }
}

loadList();
setInterval(loadList, LIST_EVERY_MS);
