"""SQL of outbound webhook delivery: turning events into deliveries, claiming due deliveries
within the endpoints' and tenants' bounds, and recording each attempt."""

# Enabled endpoints of a tenant that subscribe to an event type.
SELECT_SUBSCRIBED = """
SELECT id FROM webhook_endpoints WHERE tenant_id = $1 AND enabled AND $2 = ANY (event_types)
"""

SELECT_CAMPAIGN_NAME = "SELECT name FROM campaigns WHERE tenant_id = $1 AND id = $2"

# Enabled endpoints subscribed to at least one recipient event: the feed reads nothing for
# tenants without one.
SELECT_RECIPIENT_SUBSCRIPTIONS = """
SELECT id, tenant_id, event_types FROM webhook_endpoints
WHERE enabled AND event_types && $1::text[]
"""

# Insert one delivery per (endpoint, event); an event seen again (a redelivered broker message, a
# feed read twice) finds its delivery there.
INSERT_DELIVERIES = """
INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_id, event_type, body)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[])
ON CONFLICT (endpoint_id, event_id) WHERE resend_of IS NULL DO NOTHING
"""

# The feed's position; one tracker at a time reads it (the others skip the locked row).
LOCK_FEED = "SELECT position, gaps FROM webhook_feed WHERE name = $1 FOR UPDATE SKIP LOCKED"

UPDATE_FEED = "UPDATE webhook_feed SET position = $2, gaps = $3::jsonb WHERE name = $1"

LATEST_EVENT_ID = "SELECT COALESCE(max(id), 0) FROM message_events"

EVENT_COLUMNS = """
me.id, me.tenant_id, me.campaign_id, me.recipient_id, me.from_state, me.to_state, me.error_code,
me.detail, me.at
"""

SELECT_EVENTS_AFTER = f"""
SELECT {EVENT_COLUMNS} FROM message_events me WHERE me.id > $1 ORDER BY me.id LIMIT $2
"""

SELECT_EVENTS_IN_GAPS = f"""
SELECT {EVENT_COLUMNS}
FROM unnest($1::bigint[], $2::bigint[]) AS g(low, high)
JOIN message_events me ON me.id BETWEEN g.low AND g.high
ORDER BY me.id
"""

# What a receiver needs to recognise the recipient: its number, the booking system's customer id
# and Twilio's message SID.
SELECT_RECIPIENT_DETAILS = """
SELECT r.id, r.phone_e164, r.twilio_sid, c.external_id AS customer_external_id
FROM recipients r LEFT JOIN customers c ON c.id = r.customer_id AND c.tenant_id = r.tenant_id
WHERE r.id = ANY ($1::bigint[]) AND r.tenant_id = ANY ($2::uuid[])
"""

# Endpoints with deliveries due, each locked for this claim (another tracker skips it, so the
# per-endpoint bound holds across trackers), with its deliveries in flight and due (counted up
# to the bound).
SELECT_DUE_ENDPOINTS = """
SELECT e.id, e.tenant_id,
       (SELECT count(*) FROM webhook_deliveries f
        WHERE f.endpoint_id = e.id AND f.state = 'delivering' AND f.lease_until > now()) AS in_flight,
       (SELECT count(*) FROM (
            SELECT 1 FROM webhook_deliveries d
            WHERE d.endpoint_id = e.id AND d.state = 'pending' AND d.next_attempt_at <= now()
            LIMIT $1) due) AS due
FROM webhook_endpoints e
WHERE e.enabled
  AND EXISTS (SELECT 1 FROM webhook_deliveries d
              WHERE d.endpoint_id = e.id AND d.state = 'pending' AND d.next_attempt_at <= now())
ORDER BY e.id
FOR NO KEY UPDATE OF e SKIP LOCKED
"""

SELECT_TENANT_IN_FLIGHT = """
SELECT tenant_id, count(*) AS in_flight FROM webhook_deliveries
WHERE state = 'delivering' AND lease_until > now() AND tenant_id = ANY ($1::uuid[])
GROUP BY tenant_id
"""

# $1, $2: endpoints and how many of each one's due deliveries to claim (oldest first); $3: the
# lease, after which a delivery whose tracker died is due again.
CLAIM = """
WITH picked AS (
    SELECT p.id FROM unnest($1::uuid[], $2::int[]) AS r(endpoint_id, room)
    CROSS JOIN LATERAL (
        SELECT d.id FROM webhook_deliveries d
        WHERE d.endpoint_id = r.endpoint_id AND d.state = 'pending' AND d.next_attempt_at <= now()
        ORDER BY d.next_attempt_at, d.id
        LIMIT r.room
    ) p
)
UPDATE webhook_deliveries d
SET state = 'delivering', attempts = d.attempts + 1, lease_until = now() + make_interval(secs => $3),
    updated_at = now()
FROM picked, webhook_endpoints e
WHERE d.id = picked.id AND e.id = d.endpoint_id
RETURNING d.id, d.tenant_id, d.endpoint_id, d.event_id, d.event_type, d.body, d.attempts, e.url,
          e.secret_enc
"""

INSERT_ATTEMPT = """
INSERT INTO webhook_attempts (tenant_id, delivery_id, attempt, duration_ms, status_code, response, error)
SELECT tenant_id, id, $2, $3, $4, $5, $6 FROM webhook_deliveries WHERE id = $1
"""

# $2: the new state; $3: seconds until the next attempt (pending only).
RECORD_OUTCOME = """
UPDATE webhook_deliveries
SET state = $2,
    next_attempt_at = CASE WHEN $2 = 'pending' THEN now() + make_interval(secs => $3)
                           ELSE next_attempt_at END,
    lease_until = NULL, last_attempt_at = now(), last_status_code = $4, last_response = $5,
    last_error = $6, updated_at = now()
WHERE id = $1 AND state = 'delivering'
"""

ENDPOINT_SUCCEEDED = """
UPDATE webhook_endpoints SET consecutive_failures = 0, failing_since = NULL, updated_at = now()
WHERE id = $1 AND (consecutive_failures <> 0 OR failing_since IS NOT NULL)
"""

ENDPOINT_FAILED = """
UPDATE webhook_endpoints
SET consecutive_failures = consecutive_failures + $2, failing_since = COALESCE(failing_since, now()),
    updated_at = now()
WHERE id = $1
RETURNING tenant_id, enabled, consecutive_failures, failing_since, now() AS now
"""

DISABLE_ENDPOINT = """
UPDATE webhook_endpoints SET enabled = false, disabled_at = now(), disabled_reason = $2, updated_at = now()
WHERE id = $1 AND enabled
RETURNING id
"""

# Deliveries whose tracker died mid-attempt are due again.
EXPIRE_LEASES = """
UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = now(), lease_until = NULL,
    last_error = 'the attempt was interrupted (its tracker stopped)', updated_at = now()
WHERE state = 'delivering' AND lease_until < now()
"""

# Retention: finished deliveries (and their attempts) older than the cut-off.
DELETE_FINISHED_DELIVERIES_BEFORE = """
DELETE FROM webhook_deliveries WHERE id IN (
    SELECT id FROM webhook_deliveries
    WHERE state IN ('succeeded', 'failed') AND updated_at < $1
    LIMIT $2
)
"""
