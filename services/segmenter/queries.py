"""SQL of the segmenter's own tables: tenants, API keys, campaigns and the recipient snapshot."""

INSERT_TENANT = """
INSERT INTO tenants (id, name, twilio_account_sid, twilio_auth_token_enc, whatsapp_from,
                     messaging_service_sid, rate_per_second, timezone, default_region, locale,
                     business_name, test_numbers, opt_out_keywords, opt_in_keywords,
                     frequency_cap_messages, frequency_cap_days, messaging_limit)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
RETURNING *
"""

INSERT_API_KEY = "INSERT INTO api_keys (tenant_id, key_hash, prefix) VALUES ($1, $2, $3)"

API_KEY_COLUMNS = """id, name, prefix, created_at, expires_at, revoked_at,
    (SELECT used_at FROM api_key_last_use u WHERE u.key_id = api_keys.id) AS last_used_at"""

INSERT_NAMED_API_KEY = f"""
INSERT INTO api_keys (tenant_id, key_hash, prefix, name, expires_at) VALUES ($1, $2, $3, $4, $5)
RETURNING {API_KEY_COLUMNS}
"""

# Keys still usable: not revoked and not expired.
SELECT_API_KEYS = f"""
SELECT {API_KEY_COLUMNS} FROM api_keys
WHERE tenant_id = $1 AND ($2 OR (revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())))
ORDER BY id
"""

REVOKE_API_KEY = f"""
UPDATE api_keys SET revoked_at = now()
WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL
RETURNING {API_KEY_COLUMNS}
"""

# Rotation: the replaced keys stay valid for the overlap (never longer than they already would),
# so integrations can switch over without an outage.
EXPIRE_API_KEYS = f"""
UPDATE api_keys
SET expires_at = LEAST(coalesce(expires_at, 'infinity'), now() + make_interval(secs => $3))
WHERE tenant_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
  AND ($2::bigint IS NULL OR id = $2)
RETURNING {API_KEY_COLUMNS}
"""

INSERT_CREDIT_ACCOUNT = """
INSERT INTO credit_accounts (tenant_id, plan_monthly, plan_balance, purchased_balance)
VALUES ($1, $2, $2, $3)
"""

INSERT_CREDIT_GRANT = """
INSERT INTO credit_ledger (tenant_id, kind, bucket, amount, note) VALUES ($1, $2, $3, $4, $5)
"""

SELECT_TENANT = "SELECT * FROM tenants WHERE id = $1"

UPDATE_TENANT = """
UPDATE tenants SET
    rate_per_second = CASE WHEN $2::boolean THEN $3::integer ELSE rate_per_second END,
    timezone = coalesce($4, timezone),
    default_region = coalesce($5, default_region),
    locale = coalesce($6, locale),
    business_name = coalesce($7, business_name),
    whatsapp_from = coalesce($8, whatsapp_from),
    messaging_service_sid = coalesce($9, messaging_service_sid),
    twilio_account_sid = coalesce($10, twilio_account_sid),
    twilio_auth_token_enc = coalesce($11, twilio_auth_token_enc),
    test_numbers = coalesce($12, test_numbers),
    opt_out_keywords = coalesce($13, opt_out_keywords),
    opt_in_keywords = coalesce($14, opt_in_keywords),
    active = coalesce($15, active),
    frequency_cap_messages = CASE WHEN $16::boolean THEN $17::integer ELSE frequency_cap_messages END,
    frequency_cap_days = CASE WHEN $16::boolean THEN $18::integer ELSE frequency_cap_days END,
    messaging_limit = CASE WHEN $19::boolean THEN $20::integer ELSE messaging_limit END,
    updated_at = now()
WHERE id = $1
RETURNING *
"""

SELECT_TENANT_IDS = "SELECT id FROM tenants"

# The operator's tenant list, newest first, each with its credit account (absent for a tenant
# created before credits existed). Pages go on after ($3, $4) as the campaign list does.
LIST_TENANTS = """
SELECT t.id, t.name, t.active, t.rate_per_second, t.messaging_limit, t.created_at,
       ca.plan_monthly, ca.plan_balance, ca.plan_period_start, ca.purchased_balance, ca.reserved
FROM tenants t LEFT JOIN credit_accounts ca ON ca.tenant_id = t.id
WHERE ($1::text IS NULL OR strpos(lower(t.name), lower($1)) > 0)
  AND ($2::boolean IS NULL OR t.active = $2)
  AND ($3::timestamptz IS NULL OR t.created_at < $3 OR (t.created_at = $3 AND t.id < $4::uuid))
ORDER BY t.created_at DESC, t.id DESC
LIMIT $5
"""

TENANT_FREQUENCY_CAP = (
    "SELECT frequency_cap_messages AS messages, frequency_cap_days AS days FROM tenants WHERE id = $1"
)

# Messaging limits (the sender's CLAIM keeps the count; see there). When the operator sets a
# tier, the tenant's count starts from what it really sent in the window ($2 seconds): every
# number claimed in it, at its last claim. Run in one transaction: the lock (LOCK_SEND_LIMIT, the
# same as the sender's), the contacts, then the count.
LOCK_SEND_LIMIT = """
INSERT INTO tenant_send_limits AS w (tenant_id) VALUES ($1)
ON CONFLICT (tenant_id) DO UPDATE SET tenant_id = w.tenant_id
"""

SEED_CONTACTS = """
INSERT INTO tenant_contacts AS tc (tenant_id, phone_e164, last_contacted_at)
SELECT $1, phone_e164, max(claimed_at) FROM recipients
WHERE tenant_id = $1 AND claimed_at > now() - make_interval(secs => $2)
GROUP BY phone_e164
ON CONFLICT (tenant_id, phone_e164) DO UPDATE
SET last_contacted_at = greatest(tc.last_contacted_at, EXCLUDED.last_contacted_at)
"""

RECOUNT_SEND_LIMIT = """
UPDATE tenant_send_limits w
SET in_window = (SELECT count(*) FROM tenant_contacts tc
                 WHERE tc.tenant_id = $1
                   AND tc.last_contacted_at > greatest(now(), w.counted_at) - make_interval(secs => $2)),
    counted_at = greatest(now(), w.counted_at)
WHERE w.tenant_id = $1
"""

INSERT_CAMPAIGN = """
INSERT INTO campaigns (id, tenant_id, name, kind, audience, template, options, idempotency_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING *
"""

SELECT_CAMPAIGN = "SELECT * FROM campaigns WHERE tenant_id = $1 AND id = $2"

SELECT_CAMPAIGN_BY_KEY = "SELECT * FROM campaigns WHERE tenant_id = $1 AND idempotency_key = $2"

# Newest first. The page goes on after ($2, $3): the last campaign of the previous page (created
# before $2, or at $2 with a lower id); $2 alone keeps the older "created before" meaning.
LIST_CAMPAIGNS = """
SELECT * FROM campaigns
WHERE tenant_id = $1
  AND ($2::timestamptz IS NULL OR created_at < $2 OR (created_at = $2 AND id < $3::uuid))
  AND ($5::text[] IS NULL OR state = ANY ($5))
  AND ($6::text[] IS NULL OR kind = ANY ($6))
  AND ($7::text IS NULL OR strpos(lower(name), lower($7)) > 0)
  AND ($8::timestamptz IS NULL OR created_at >= $8)
  AND ($9::timestamptz IS NULL OR created_at < $9)
ORDER BY created_at DESC, id DESC
LIMIT $4
"""

# Lifecycle transitions are conditional on the current state so concurrent requests settle on one.
MARK_STARTED = """
UPDATE campaigns SET state = 'running', started_at = now(), updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND state IN ('draft', 'scheduled')
RETURNING *
"""

MARK_PAUSED = """
UPDATE campaigns SET state = 'paused', pause_reason = $3, paused_at = now(), updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND state = 'running'
RETURNING *
"""

MARK_RESUMED = """
UPDATE campaigns SET state = 'running', pause_reason = NULL, paused_at = NULL, updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND state = 'paused'
RETURNING *
"""

MARK_CANCELLED = """
UPDATE campaigns SET state = 'cancelled', completed_at = now(), updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND state IN ('draft', 'scheduled', 'running', 'paused')
RETURNING *
"""

# Scheduling and rescheduling: a draft or a campaign still waiting for its time.
MARK_SCHEDULED = """
UPDATE campaigns SET state = 'scheduled', scheduled_at = $3, schedule_timezone = $4, updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND state IN ('draft', 'scheduled')
RETURNING *
"""

# Campaigns whose time has come ($1: now), started by whichever segmenter claims them first:
# SKIP LOCKED leaves a row another segmenter is starting to it, and the state condition makes a
# second start of the same campaign (a slower replica, a replay) change nothing.
START_DUE = """
UPDATE campaigns c SET state = 'running', started_at = $1, updated_at = now()
FROM (
    SELECT id FROM campaigns
    WHERE state = 'scheduled' AND scheduled_at <= $1
    ORDER BY scheduled_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
) due
WHERE c.id = due.id AND c.state = 'scheduled'
RETURNING c.*
"""

# Running campaigns of tenants with a sending window in the tenant's zone, with their hold.
WINDOWED_CAMPAIGNS = """
SELECT c.tenant_id, c.id, c.hold_reason, c.hold_until, t.timezone, t.sending_window
FROM campaigns c JOIN tenants t ON t.id = c.tenant_id
WHERE c.state = 'running' AND (t.sending_window IS NOT NULL OR c.hold_reason = $1)
"""

SET_HOLD = """
UPDATE campaigns SET hold_reason = $3, hold_until = $4, updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND state = 'running' AND hold_reason IS NULL
RETURNING *
"""

# A hold already set moves its end (the window changed); only holds of this reason.
MOVE_HOLD = """
UPDATE campaigns SET hold_until = $4, updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND hold_reason = $3 AND hold_until IS DISTINCT FROM $4
"""

RELEASE_HOLD = """
UPDATE campaigns SET hold_reason = NULL, hold_until = NULL, updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND state = 'running' AND hold_reason = $3
RETURNING *
"""

SET_SENDING_WINDOW = "UPDATE tenants SET sending_window = $2, updated_at = now() WHERE id = $1 RETURNING *"

MARK_COMPLETED = """
UPDATE campaigns SET state = 'completed', completed_at = now(), updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND state = 'running'
RETURNING *
"""

REOPEN_FOR_RETRY = """
UPDATE campaigns SET state = 'running', completed_at = NULL, hold_reason = NULL, hold_until = NULL,
    updated_at = now()
WHERE tenant_id = $1 AND id = $2 AND state = 'completed'
RETURNING *
"""

# The history records the state each row was really in (an UPDATE's RETURNING only sees the new
# one); rows are locked first, so one a sender claims meanwhile is no longer waiting and is skipped.
CANCEL_LEFT_RECIPIENTS = """
WITH waiting AS (
    SELECT id, state FROM recipients
    WHERE tenant_id = $1 AND campaign_id = $2 AND state IN ('pending', 'queued', 'retry_wait')
    FOR UPDATE
), cancelled AS (
    UPDATE recipients r SET state = 'cancelled', updated_at = now()
    FROM waiting w
    WHERE r.id = w.id
    RETURNING r.id, w.state AS from_state
)
INSERT INTO message_events (tenant_id, campaign_id, recipient_id, from_state, to_state, source)
SELECT $1, $2, id, from_state, 'cancelled', 'api' FROM cancelled
"""

REQUEUE_FAILED = """
WITH requeued AS (
    UPDATE recipients SET state = 'queued', attempts = 0, deferrals = 0, updated_at = now()
    WHERE tenant_id = $1 AND campaign_id = $2 AND state = 'failed'
    RETURNING id
)
INSERT INTO message_events (tenant_id, campaign_id, recipient_id, from_state, to_state, source)
SELECT $1, $2, id, 'failed', 'queued', 'api' FROM requeued
"""

# Snapshot -----------------------------------------------------------------------------------

# The next phone-range boundary: the phone ``$3`` distinct phones after ``$2`` in index order.
NEXT_PHONE_BOUNDARY = """
SELECT phone_e164 FROM customers
WHERE tenant_id = $1 AND phone_e164 IS NOT NULL AND ($2::text IS NULL OR phone_e164 > $2)
ORDER BY phone_e164
OFFSET $3 LIMIT 1
"""

SNAPSHOT_CHUNK = """
INSERT INTO recipients (tenant_id, campaign_id, customer_id, appointment_id, phone_e164)
SELECT {tenant}::uuid, {campaign}::uuid, audience.customer_id, audience.appointment_id, audience.phone_e164
FROM ({audience}) AS audience
ORDER BY audience.phone_e164
RETURNING id
"""

SET_SNAPSHOT_CURSOR = "UPDATE campaigns SET snapshot_cursor = $3 WHERE tenant_id = $1 AND id = $2"

FINISH_SNAPSHOT = """
UPDATE campaigns
SET snapshot_completed_at = now(),
    total = (SELECT count(*) FROM recipients WHERE campaign_id = $2),
    updated_at = now()
WHERE tenant_id = $1 AND id = $2
"""

# Rows waiting for the broker, in id order from the publisher's cursor.
NEXT_UNPUBLISHED = """
SELECT id FROM recipients
WHERE campaign_id = $1 AND id > $2 AND state IN ('pending', 'queued')
ORDER BY id
LIMIT $3
"""

SET_PUBLISHED_UPTO = """
UPDATE campaigns SET published_upto = greatest(published_upto, $3) WHERE tenant_id = $1 AND id = $2
"""

# Rows already handed to the broker that a pause or a lost message left without a live message.
REPUBLISHABLE = """
SELECT id FROM recipients
WHERE campaign_id = $1 AND id > $2 AND id <= $3 AND state IN ('pending', 'queued', 'retry_wait')
ORDER BY id
LIMIT $4
"""

MAX_RECIPIENT_ID = "SELECT coalesce(max(id), 0) FROM recipients WHERE campaign_id = $1"

# Campaigns that need a runner: snapshot or publication unfinished (a segmenter may have died).
UNFINISHED_CAMPAIGNS = """
SELECT tenant_id, id FROM campaigns
WHERE state = 'running' AND kind = 'campaign' AND snapshot_completed_at IS NULL
"""

RUNNING_CAMPAIGNS = """
SELECT c.tenant_id, c.id, c.published_upto, c.snapshot_completed_at
FROM campaigns c
WHERE c.state = 'running'
"""

# Completed campaigns with recipients sent back to wait by a refusal their status callback
# reported after the campaign completed (WhatsApp's 131048 or 131056: not delivered, to be sent
# again): they run again until those are settled. Read through the small partial index of such
# recipients (migration 1680).
COMPLETED_WITH_REFUSED_WAITING = """
SELECT DISTINCT c.tenant_id, c.id
FROM recipients r
JOIN campaigns c ON c.id = r.campaign_id AND c.tenant_id = r.tenant_id
WHERE r.state = 'retry_wait' AND r.error_code IN (131048, 131056) AND c.state = 'completed'
LIMIT $1
"""

# Running again, it holds as its tenant does (a spam refusal may have held the tenant meanwhile).
REOPEN_FOR_REFUSED = """
UPDATE campaigns c
SET state = 'running', completed_at = NULL, updated_at = now(),
    hold_reason = coalesce(h.hold_reason, c.hold_reason), hold_until = coalesce(h.hold_until, c.hold_until)
FROM (SELECT $2::uuid AS id) k
LEFT JOIN tenant_send_limits h ON h.tenant_id = $1 AND h.hold_until > now()
WHERE c.tenant_id = $1 AND c.id = k.id AND c.state = 'completed'
  AND EXISTS (SELECT 1 FROM recipients r
              WHERE r.tenant_id = $1 AND r.campaign_id = $2 AND r.state = 'retry_wait'
                AND r.error_code IN (131048, 131056))
RETURNING c.*
"""

HAS_UNSETTLED = """
SELECT EXISTS (
    SELECT 1 FROM recipients
    WHERE campaign_id = $1 AND state IN ('pending', 'queued', 'sending', 'retry_wait', 'unknown')
)
"""

HAS_UNPUBLISHED = """
SELECT EXISTS (
    SELECT 1 FROM recipients WHERE campaign_id = $1 AND id > $2 AND state IN ('pending', 'queued')
)
"""

# Planner statistics of the audience tables (services/segmenter/audience/statistics.py): rows as
# the planner estimates them (-1: never counted), rows changed since the last analysis, and how
# many analyses there have been (the function skips a table whose count moved meanwhile).
AUDIENCE_TABLE_COUNTERS = """
SELECT c.relname AS name, c.reltuples::float8 AS estimated_rows,
       coalesce(s.n_mod_since_analyze, 0) AS changed,
       coalesce(s.analyze_count + s.autoanalyze_count, 0) AS analyses
FROM pg_class c
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND c.relname = ANY ($1::text[])
ORDER BY c.relname
"""

ANALYZE_AUDIENCE_TABLES = "SELECT analyze_audience_tables($1::text[], $2::bigint[])"

# The owner's vacuum process (shared/audience_vacuum.py) listens on the channel.
REQUEST_AUDIENCE_VACUUM = "SELECT pg_notify($1, $2)"
