"""Every SQL statement of the tracker, written out and parameterised.

Batches go through ``unnest`` of parallel arrays, so a batch of hundreds of callbacks costs one
round trip per statement. Tenant-facing reads always filter on the tenant id; the operator jobs
(metrics sampling, retention) are the only cross-tenant statements.
"""

from __future__ import annotations

# Webhooks ----------------------------------------------------------------------------------------

TENANT_AUTH_TOKEN = "SELECT twilio_auth_token_enc FROM tenants WHERE id = $1 AND active"
ACTIVE_TENANT_IDS = "SELECT id FROM tenants WHERE active"
TENANT_IS_ACTIVE = "SELECT active FROM tenants WHERE id = $1"

# Status callbacks --------------------------------------------------------------------------------

INSERT_RECEIPTS = """
INSERT INTO callback_receipts (tenant_id, dedupe_key)
SELECT * FROM unnest($1::uuid[], $2::text[])
ON CONFLICT DO NOTHING
RETURNING tenant_id::text, dedupe_key
"""

# Locked in id order, so two batches touching the same recipients queue up instead of deadlocking.
# Each row is found through its SID's unique index (the tenant compared so that no index serves
# it), one callback at a time (a LATERAL subquery with a LIMIT is never turned into a join),
# whatever the statistics say. A new campaign's are always stale: as a join, the planner went from
# the campaign through the (tenant, campaign) index and walked all its rows for every callback
# (24 million rows, 19.5 s, for 241 callbacks of a 100,000-recipient campaign).
LOCK_RECIPIENTS_BY_SID = """
SELECT r.id, r.tenant_id::text AS tenant_id, r.campaign_id::text AS campaign_id, r.phone_e164,
       r.state, r.twilio_sid, r.error_code, r.error_message,
       extract(epoch FROM r.delivered_at)::float8 AS delivered_at,
       extract(epoch FROM r.read_at)::float8 AS read_at,
       extract(epoch FROM r.failed_at)::float8 AS failed_at,
       (SELECT c.state FROM campaigns c WHERE c.id = r.campaign_id) AS campaign_state
FROM unnest($1::uuid[], $2::text[]) AS k(tenant_id, sid),
     LATERAL (SELECT found.id FROM recipients found
              WHERE found.twilio_sid = k.sid AND found.tenant_id IS NOT DISTINCT FROM k.tenant_id
              LIMIT 1) AS hit
JOIN recipients r ON r.id = hit.id
ORDER BY r.id
FOR UPDATE OF r
"""

# Timestamps already set are kept: an earlier callback's time is the better one.
# A recipient sent back to wait by a refusal its callback reported (``retry_wait``) keeps the
# refusal as its last error, gives its attempt back (``attempts_change``), is due at
# ``next_attempt_at``, and is no longer ``sent_at``: that acceptance was of a message that failed.
# A waiting one whose refused message is delivered after all takes the attempt back, is due no
# more, and drops the refusal; its ``sent_at`` is its delivery's when the refusal cleared it.
UPDATE_RECIPIENTS = """
UPDATE recipients r
SET state = u.state,
    error_code = CASE WHEN u.state IN ('undelivered', 'failed_delivery', 'retry_wait') THEN u.error_code
                      WHEN r.state IN ('queued', 'retry_wait') THEN NULL
                      ELSE r.error_code END,
    error_message = CASE WHEN u.state IN ('undelivered', 'failed_delivery', 'retry_wait') THEN u.error_message
                         WHEN r.state IN ('queued', 'retry_wait') THEN NULL
                         ELSE r.error_message END,
    attempts = greatest(r.attempts + u.attempts_change, 0),
    deferrals = greatest(r.deferrals - u.attempts_change, 0),
    next_attempt_at = CASE WHEN u.state = 'retry_wait' THEN to_timestamp(u.next_attempt_at)
                           WHEN u.attempts_change <> 0 THEN NULL
                           ELSE r.next_attempt_at END,
    sent_at = CASE WHEN u.state = 'retry_wait' THEN NULL
                   ELSE coalesce(r.sent_at, to_timestamp(u.delivered_at), to_timestamp(u.read_at)) END,
    -- Never before the row's sent_at: a callback can overtake the create's answer by a little.
    delivered_at = COALESCE(r.delivered_at, greatest(to_timestamp(u.delivered_at), r.sent_at)),
    read_at = COALESCE(r.read_at, greatest(to_timestamp(u.read_at), r.sent_at)),
    failed_at = COALESCE(r.failed_at, to_timestamp(u.failed_at)),
    updated_at = now()
FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::float8[], $6::float8[], $7::float8[],
            $8::int[], $9::float8[])
     AS u(id, state, error_code, error_message, delivered_at, read_at, failed_at, attempts_change,
          next_attempt_at)
WHERE r.id = u.id
"""

INSERT_EVENTS = """
INSERT INTO message_events
    (tenant_id, campaign_id, recipient_id, from_state, to_state, source, error_code, detail, at)
SELECT e.tenant_id, e.campaign_id, e.recipient_id, e.from_state, e.to_state, $9, e.error_code, e.detail,
       to_timestamp(e.at)
FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::int[], $7::text[], $8::float8[])
     AS e(tenant_id, campaign_id, recipient_id, from_state, to_state, error_code, detail, at)
"""

INSERT_ORPHANS = """
INSERT INTO orphan_callbacks (tenant_id, message_sid, status, error_code, payload, received_at)
SELECT o.tenant_id, o.message_sid, o.status, o.error_code, o.payload, to_timestamp(o.at)
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::jsonb[], $6::float8[])
     AS o(tenant_id, message_sid, status, error_code, payload, at)
ON CONFLICT (tenant_id, message_sid, status) DO NOTHING
"""

# An existing suppression (of any source) stands as it is; only a new one is an event.
ADD_SUPPRESSIONS = """
WITH added AS (
    INSERT INTO suppressions (tenant_id, phone_e164, source, reason)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
    ON CONFLICT DO NOTHING
    RETURNING tenant_id, phone_e164, source, reason
)
INSERT INTO suppression_events (tenant_id, phone_e164, action, source, reason)
SELECT tenant_id, phone_e164, 'added', source, reason FROM added
RETURNING tenant_id::text, phone_e164, source
"""

# Orphans whose recipient now has its SID recorded and its send settled. SKIP LOCKED lets several
# tracker replicas run the pass at once without applying an orphan twice.
LOCK_MATCHABLE_ORPHANS = """
SELECT o.id, o.tenant_id::text AS tenant_id, o.payload, extract(epoch FROM o.received_at)::float8 AS at
FROM orphan_callbacks o
WHERE o.matched_at IS NULL
  AND EXISTS (
      SELECT 1 FROM recipients r
      WHERE r.twilio_sid = o.message_sid AND r.tenant_id = o.tenant_id
        AND r.state NOT IN ('pending', 'queued', 'sending', 'retry_wait', 'unknown'))
ORDER BY o.id
LIMIT $1
FOR UPDATE OF o SKIP LOCKED
"""

MARK_ORPHANS_MATCHED = "UPDATE orphan_callbacks SET matched_at = now() WHERE id = ANY($1::bigint[])"

# Inbound messages --------------------------------------------------------------------------------

TENANT_KEYWORDS = """
SELECT default_region, opt_out_keywords, opt_in_keywords FROM tenants WHERE id = $1
"""

# The message a reply answers: the last one the engine sent that number in the 24 hours before
# the reply arrived ($3, epoch seconds), whatever its campaign's kind. Only campaigns that were
# running in that window can hold it, and each is probed by its unique (campaign, phone) key, so
# the recipients table needs no index by phone for this.
REPLY_ATTRIBUTION = """
SELECT r.id AS recipient_id, r.campaign_id
FROM campaigns c
JOIN recipients r ON r.campaign_id = c.id AND r.phone_e164 = $2
WHERE c.tenant_id = $1 AND c.started_at <= to_timestamp($3)
  AND (c.completed_at IS NULL OR c.completed_at >= to_timestamp($3) - interval '24 hours')
  AND r.tenant_id = $1
  AND r.sent_at > to_timestamp($3) - interval '24 hours' AND r.sent_at <= to_timestamp($3)
ORDER BY r.sent_at DESC, r.id DESC
LIMIT 1
"""

INSERT_INBOUND = """
INSERT INTO inbound_messages (tenant_id, message_sid, phone_e164, body, action, received_at, campaign_id,
                              recipient_id)
VALUES ($1, $2, $3, $4, $5, to_timestamp($6), $7, $8)
ON CONFLICT (tenant_id, message_sid) DO NOTHING
RETURNING id
"""

# Only an opt-out the person made by message can be undone by message; a suppression an operator
# added stays.
REMOVE_INBOUND_SUPPRESSION = """
WITH removed AS (
    DELETE FROM suppressions
    WHERE tenant_id = $1 AND phone_e164 = $2 AND source = 'inbound'
    RETURNING tenant_id, phone_e164
)
INSERT INTO suppression_events (tenant_id, phone_e164, action, source, reason)
SELECT tenant_id, phone_e164, 'removed', 'inbound', $3 FROM removed
RETURNING id
"""

# Tenant reads ------------------------------------------------------------------------------------

# A campaign's state and hold with its tenant's configured rate and back-off record
# (shared/pacing.py).
CAMPAIGN_PROGRESS = """
SELECT c.state, c.pause_reason, t.rate_per_second, p.factor, p.changed_at, p.hold_until,
       c.hold_reason AS campaign_hold_reason, c.hold_until AS campaign_hold_until, c.scheduled_at,
       t.timezone, t.sending_window
FROM campaigns c
JOIN tenants t ON t.id = c.tenant_id
LEFT JOIN tenant_pacing p ON p.tenant_id = c.tenant_id
WHERE c.id = $1 AND c.tenant_id = $2
"""

CAMPAIGN = """
SELECT id, state, pause_reason FROM campaigns WHERE id = $1 AND tenant_id = $2
"""

# The recipient log, in id order after $3. Replies are counted for the campaign's replies in one
# pass (a hash join), not probed row by row. Only the filters asked for are in the statement (see
# recipient_rows), each with an index that yields its rows in id order (migration 1601), so a page
# stops at its size however deep or rare.
_RECIPIENT_ROWS = """
SELECT r.id, r.phone_e164, r.state, r.skip_reason, r.attempts, r.error_code, r.error_message, r.twilio_sid,
       r.sent_at, r.delivered_at, r.read_at, r.failed_at, c.first_name, c.last_name,
       coalesce(rp.n, 0) AS replies
FROM recipients r
LEFT JOIN customers c ON c.id = r.customer_id AND c.tenant_id = r.tenant_id
LEFT JOIN (
    SELECT recipient_id, count(*)::int AS n FROM inbound_messages
    WHERE tenant_id = $1 AND campaign_id = $2
    GROUP BY recipient_id
) rp ON rp.recipient_id = r.id
WHERE r.tenant_id = $1 AND r.campaign_id = $2 AND r.id > $3{filters}
ORDER BY r.id
"""

# The CSV export's pages: the recipients alone, in id order after $3, then the names and reply
# counts of each page's rows by their keys (primary key, inbound_messages_recipient). Three
# statements whose plans no statistics can spoil: one join over a campaign the planner had not
# seen yet (estimated at one row) streamed 100,000 rows at 2–15 ms each.
_EXPORT_RECIPIENTS = """
SELECT r.id, r.customer_id, r.phone_e164, r.state, r.skip_reason, r.attempts, r.error_code,
       r.error_message, r.twilio_sid, r.sent_at, r.delivered_at, r.read_at, r.failed_at
FROM recipients r
WHERE r.tenant_id = $1 AND r.campaign_id = $2 AND r.id > $3{filters}
ORDER BY r.id
"""

CUSTOMER_NAMES = """
SELECT id, first_name, last_name FROM customers WHERE tenant_id = $1 AND id = ANY($2::bigint[])
"""

REPLIES_BY_RECIPIENT = """
SELECT recipient_id, count(*)::int AS n FROM inbound_messages
WHERE tenant_id = $1 AND campaign_id = $2 AND recipient_id = ANY($3::bigint[])
GROUP BY recipient_id
"""

RECIPIENT_FILTERS = {
    "state": "r.state = ${}::text",
    "states": "r.state = ANY(${}::text[])",
    "error_code": "r.error_code = ${}::int",
    "phone_e164": "r.phone_e164 = ${}::text",
}


def recipient_rows(filters: list[str]) -> str:
    """A page of the log: the statement with the named filters (keys of RECIPIENT_FILTERS) as $4,
    $5, … and the page's size last. A filter absent is absent from the text, not a `$n IS NULL OR …`
    test: a prepared statement's generic plan cannot know which filters are NULL, and without its
    own condition no index leads with a filter's column."""
    return _RECIPIENT_ROWS.format(filters=_conditions(filters)) + f"LIMIT ${4 + len(filters)}\n"


def export_recipients(filters: list[str]) -> str:
    """A page of the CSV export: like ``recipient_rows(filters)``, without the joins."""
    return _EXPORT_RECIPIENTS.format(filters=_conditions(filters)) + f"LIMIT ${4 + len(filters)}\n"


def _conditions(filters: list[str]) -> str:
    return "".join(f"\n  AND {RECIPIENT_FILTERS[name].format(4 + n)}" for n, name in enumerate(filters))


# A campaign's recipients per state: the folded counts plus the deltas appended since (migration
# 1600), in one statement so a concurrent fold is seen wholly or not at all. A few rows, however
# large the campaign (counting its rows took 0.4 s at a million).
STATE_COUNTS = """
SELECT state, sum(n)::int AS n
FROM (
    SELECT state, n FROM recipient_state_counts WHERE tenant_id = $1 AND campaign_id = $2
    UNION ALL
    SELECT state, delta FROM recipient_state_deltas WHERE tenant_id = $1 AND campaign_id = $2
) counted
GROUP BY state
HAVING sum(n) <> 0
"""

SENT_IN_WINDOW = """
SELECT count(*)::int FROM recipients
WHERE tenant_id = $1 AND campaign_id = $2 AND sent_at >= now() - make_interval(secs => $3)
"""

REPLY_COUNTS = """
SELECT count(*)::int AS replies, count(DISTINCT recipient_id)::int AS replied FROM inbound_messages
WHERE tenant_id = $1 AND campaign_id = $2
"""

_REPLY_COLUMNS = """
SELECT id, message_sid, phone_e164, body, action, received_at, campaign_id, recipient_id
FROM inbound_messages
"""

# Replies in id order after $2 (keyset pages); optional filters: a NULL parameter means "any".
TENANT_REPLIES_PAGE = (
    _REPLY_COLUMNS
    + """WHERE tenant_id = $1 AND id > $2 AND ($3::text IS NULL OR phone_e164 = $3)
ORDER BY id
LIMIT $4
"""
)

CAMPAIGN_REPLIES_PAGE = (
    _REPLY_COLUMNS
    + """WHERE tenant_id = $1 AND campaign_id = $2 AND id > $3
ORDER BY id
LIMIT $4
"""
)

RECIPIENT_REPLIES_PAGE = (
    _REPLY_COLUMNS
    + """WHERE tenant_id = $1 AND recipient_id = $2 AND campaign_id = $3 AND id > $4
ORDER BY id
LIMIT $5
"""
)

CAMPAIGN_EVENTS_PAGE = """
SELECT id, recipient_id, from_state, to_state, source, error_code, detail, at
FROM message_events
WHERE tenant_id = $1 AND campaign_id = $2 AND id > $3
ORDER BY id
LIMIT $4
"""

RECIPIENT_EXISTS = """
SELECT 1 FROM recipients WHERE id = $1 AND campaign_id = $2 AND tenant_id = $3
"""

RECIPIENT_EVENTS = """
SELECT id, recipient_id, from_state, to_state, source, error_code, detail, at
FROM message_events
WHERE tenant_id = $1 AND recipient_id = $2 AND campaign_id = $3
ORDER BY id
"""

# Operator jobs -----------------------------------------------------------------------------------

RUNNING_PROGRESS = """
SELECT c.tenant_id::text AS tenant, k.state, sum(k.n)::bigint AS n
FROM campaigns c
JOIN (
    SELECT campaign_id, tenant_id, state, n FROM recipient_state_counts
    UNION ALL
    SELECT campaign_id, tenant_id, state, delta FROM recipient_state_deltas
) k ON k.campaign_id = c.id AND k.tenant_id = c.tenant_id
WHERE c.state = 'running'
GROUP BY c.tenant_id, k.state
HAVING sum(k.n) <> 0
"""

RUNNING_CAMPAIGNS = """
SELECT tenant_id::text AS tenant, count(*)::bigint AS n
FROM campaigns
WHERE state = 'running'
GROUP BY tenant_id
"""

HELD_CAMPAIGNS = """
SELECT tenant_id::text AS tenant, hold_reason AS reason, count(*)::bigint AS n
FROM campaigns
WHERE state = 'running' AND hold_until > now()
GROUP BY tenant_id, hold_reason
"""

TENANT_IDS = "SELECT id::text AS id FROM tenants ORDER BY id"

# Folding recipient state deltas (services/tracker/state_counts.py): the oldest $1 deltas are
# deleted and added to their campaigns' counts in one statement; the counts it wrote come back so
# those left at zero (a deleted campaign's) can go.
FOLD_STATE_DELTAS = """
WITH folded AS (
    DELETE FROM recipient_state_deltas
    WHERE id IN (SELECT id FROM recipient_state_deltas ORDER BY id LIMIT $1)
    RETURNING campaign_id, state, tenant_id, delta
), counted AS (
    INSERT INTO recipient_state_counts AS c (campaign_id, state, tenant_id, n)
    SELECT campaign_id, state, tenant_id, sum(delta) FROM folded
    GROUP BY campaign_id, state, tenant_id
    ORDER BY campaign_id, state
    ON CONFLICT (campaign_id, state) DO UPDATE SET n = c.n + excluded.n
    RETURNING campaign_id, state, n
)
SELECT campaign_id, state, n, (SELECT count(*) FROM folded)::int AS deltas FROM counted
"""

DROP_EMPTY_STATE_COUNTS = """
DELETE FROM recipient_state_counts c
USING unnest($1::uuid[], $2::text[]) AS e(campaign_id, state)
WHERE c.campaign_id = e.campaign_id AND c.state = e.state AND c.n = 0
"""

# Retention deletes in slices so no statement holds locks on millions of rows at once.
DELETE_EVENTS_BEFORE = """
DELETE FROM message_events
WHERE id IN (SELECT id FROM message_events WHERE at < $1 ORDER BY id LIMIT $2)
"""

DELETE_RECEIPTS_BEFORE = """
DELETE FROM callback_receipts c
USING (SELECT tenant_id, dedupe_key FROM callback_receipts WHERE received_at < $1 LIMIT $2) d
WHERE c.tenant_id = d.tenant_id AND c.dedupe_key = d.dedupe_key
"""

DELETE_INBOUND_BEFORE = """
DELETE FROM inbound_messages
WHERE id IN (SELECT id FROM inbound_messages WHERE received_at < $1 ORDER BY id LIMIT $2)
"""

DELETE_ORPHANS_BEFORE = """
DELETE FROM orphan_callbacks
WHERE id IN (SELECT id FROM orphan_callbacks WHERE received_at < $1 ORDER BY id LIMIT $2)
"""
