"""SQL of the sender: claims, outcomes, credits, leases, reconciliation and the stuck-row sweep.

Every statement filters on the tenant. Outcomes are written for a whole chunk at once
(``unnest`` arrays), never one round trip per message.
"""

# Tenants and campaigns ------------------------------------------------------------------------

SELECT_TENANT = """
SELECT id, name, business_name, twilio_account_sid, twilio_auth_token_enc, whatsapp_from,
       messaging_service_sid, timezone, locale, active
FROM tenants WHERE id = $1
"""

SELECT_CAMPAIGN = (
    "SELECT id, tenant_id, kind, state, template FROM campaigns WHERE tenant_id = $1 AND id = $2"
)

CAMPAIGN_STATES = "SELECT id, state FROM campaigns WHERE id = ANY($1::uuid[])"

# Claim ----------------------------------------------------------------------------------------

# Rows of the chunk that may be sent now, with what their message mentions. SKIP LOCKED: a row
# another sender is claiming this instant is that sender's; waiting for it gains nothing.
CLAIMABLE = """
SELECT r.id, r.state, r.phone_e164, r.vars,
       (s.phone_e164 IS NOT NULL) AS suppressed,
       cu.first_name, cu.last_name, cu.email,
       a.starts_at, a.status AS appointment_status,
       sv.name AS service_name, l.name AS location_name, l.address AS location_address, st.name AS staff_name
FROM recipients r
LEFT JOIN suppressions s ON s.tenant_id = r.tenant_id AND s.phone_e164 = r.phone_e164
LEFT JOIN customers cu ON cu.id = r.customer_id AND cu.tenant_id = r.tenant_id
LEFT JOIN appointments a ON a.id = r.appointment_id AND a.tenant_id = r.tenant_id
LEFT JOIN services sv ON sv.id = a.service_id
LEFT JOIN locations l ON l.id = a.location_id
LEFT JOIN staff st ON st.id = a.staff_id
WHERE r.tenant_id = $1 AND r.campaign_id = $2 AND r.id = ANY($3::bigint[])
  AND r.state IN ('pending', 'queued', 'retry_wait')
  AND EXISTS (SELECT 1 FROM campaigns c WHERE c.id = $2 AND c.tenant_id = $1 AND c.state = 'running')
ORDER BY r.id
FOR UPDATE OF r SKIP LOCKED
"""

LOCK_CREDIT_ACCOUNT = """
SELECT enabled, plan_monthly, plan_balance, plan_period_start, purchased_balance, reserved
FROM credit_accounts WHERE tenant_id = $1
FOR UPDATE
"""

ROLL_CREDIT_PERIOD = """
WITH rolled AS (
    UPDATE credit_accounts
    SET plan_balance = $3, plan_period_start = $4, updated_at = now()
    WHERE tenant_id = $1
    RETURNING tenant_id
)
INSERT INTO credit_ledger (tenant_id, kind, bucket, amount, note)
SELECT $1, kind, 'plan', amount, $5
FROM rolled, (VALUES ('plan_expiry', -$2::integer), ('plan_grant', $3::integer)) AS v(kind, amount)
WHERE amount <> 0
"""

# Claimed rows go to ``sending`` under a lease; suppressed ones to ``suppressed``; one event each.
CLAIM = """
WITH claimed AS (
    UPDATE recipients
    SET state = 'sending', attempts = attempts + 1, claimed_at = now(),
        lease_until = now() + make_interval(secs => $4), credit_held = $5,
        next_attempt_at = NULL, updated_at = now()
    WHERE tenant_id = $1 AND id = ANY($3::bigint[])
    RETURNING id, attempts, claimed_at
), suppressed AS (
    UPDATE recipients SET state = 'suppressed', updated_at = now()
    WHERE tenant_id = $1 AND id = ANY($6::bigint[])
    RETURNING id
), reserve AS (
    UPDATE credit_accounts SET reserved = reserved + $7, updated_at = now()
    WHERE tenant_id = $1 AND $7 > 0
), logged AS (
    INSERT INTO message_events (tenant_id, campaign_id, recipient_id, from_state, to_state, source, detail)
    SELECT $1, $2, e.id, e.from_state, e.to_state, 'sender', e.detail
    FROM unnest($8::bigint[], $9::text[], $10::text[], $11::text[]) AS e(id, from_state, to_state, detail)
)
SELECT id, attempts, claimed_at FROM claimed
"""

# Outcomes -------------------------------------------------------------------------------------

# A chunk's outcomes in one statement. Only the claim that is recorded (same ``claimed_at``)
# may be settled, so a late answer can never overwrite a later claim of the same row.
RECORD_OUTCOMES = """
WITH outcome AS (
    SELECT * FROM unnest($2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::integer[], $7::text[],
                         $8::boolean[], $9::timestamptz[])
        AS o(id, claimed_at, to_state, sid, error_code, error_message, uncount, next_attempt_at)
), settled AS (
    UPDATE recipients r
    SET state = o.to_state,
        twilio_sid = coalesce(o.sid, r.twilio_sid),
        error_code = o.error_code,
        error_message = o.error_message,
        attempts = CASE WHEN o.uncount THEN greatest(r.attempts - 1, 0) ELSE r.attempts END,
        sent_at = CASE WHEN o.to_state = 'sent' THEN coalesce(r.sent_at, now()) ELSE r.sent_at END,
        failed_at = CASE WHEN o.to_state = 'failed' THEN now() ELSE r.failed_at END,
        lease_until = NULL,
        next_attempt_at = o.next_attempt_at,
        credit_held = (o.to_state = 'unknown' AND before.credit_held),
        updated_at = now()
    FROM outcome o JOIN recipients before ON before.id = o.id
    WHERE r.id = o.id AND r.tenant_id = $1 AND r.state IN ('sending', 'unknown')
      AND r.claimed_at = o.claimed_at
    RETURNING r.id, r.campaign_id, before.state AS from_state, o.to_state, o.error_code, o.error_message,
              before.credit_held AS held
), logged AS (
    INSERT INTO message_events
        (tenant_id, campaign_id, recipient_id, from_state, to_state, source, error_code, detail)
    SELECT $1, campaign_id, id, from_state, to_state, $10, error_code, error_message FROM settled
)
SELECT id, campaign_id, to_state, held FROM settled
"""

# Debit sent rows (plan bucket first) and release the reservations of every settled row that held one.
SETTLE_CREDITS = """
WITH account AS (
    SELECT plan_balance FROM credit_accounts WHERE tenant_id = $1 FOR UPDATE
), debited AS (
    UPDATE credit_accounts a
    SET plan_balance = a.plan_balance - least(a.plan_balance, $2),
        purchased_balance = greatest(a.purchased_balance - greatest($2 - a.plan_balance, 0), 0),
        reserved = greatest(a.reserved - $3, 0),
        updated_at = now()
    WHERE a.tenant_id = $1
    RETURNING a.tenant_id
), ledger AS (
    INSERT INTO credit_ledger (tenant_id, kind, bucket, amount, campaign_id, recipient_id)
    SELECT $1, 'debit', CASE WHEN d.n <= account.plan_balance THEN 'plan' ELSE 'purchased' END,
           -1, d.campaign_id, d.id
    FROM account, debited,
         unnest($4::bigint[], $5::uuid[]) WITH ORDINALITY AS d(id, campaign_id, n)
    ON CONFLICT DO NOTHING
)
SELECT plan_balance FROM account
"""

ADD_SUPPRESSIONS = """
WITH added AS (
    INSERT INTO suppressions (tenant_id, phone_e164, source, reason)
    SELECT $1, phone, 'error_code', reason FROM unnest($2::text[], $3::text[]) AS s(phone, reason)
    ON CONFLICT (tenant_id, phone_e164) DO NOTHING
    RETURNING phone_e164, reason
)
INSERT INTO suppression_events (tenant_id, phone_e164, action, source, reason)
SELECT $1, phone_e164, 'added', 'error_code', reason FROM added
"""

# Maintenance (one sender at a time) --------------------------------------------------------------

# A row still ``sending`` past its lease lost its sender mid-call: whether Twilio got the request
# is unknown, so it is reconciled, never re-sent blindly.
EXPIRE_LEASES = """
WITH expired AS (
    UPDATE recipients
    SET state = 'unknown', lease_until = NULL, error_message = 'lease expired', updated_at = now()
    WHERE id IN (
        SELECT id FROM recipients WHERE state = 'sending' AND lease_until < now() ORDER BY id LIMIT $1
        FOR UPDATE SKIP LOCKED)
    RETURNING id, tenant_id, campaign_id
)
INSERT INTO message_events (tenant_id, campaign_id, recipient_id, from_state, to_state, source, detail)
SELECT tenant_id, campaign_id, id, 'sending', 'unknown', 'lease', 'lease expired' FROM expired
"""

UNKNOWN_DUE = """
SELECT r.id, r.tenant_id, r.campaign_id, r.phone_e164, r.claimed_at, r.attempts
FROM recipients r
WHERE r.state = 'unknown' AND r.updated_at < now() - make_interval(secs => $1)
ORDER BY r.id
LIMIT $2
"""

# A status callback for the message whose sid the sender never learnt, matched by its recipient.
ORPHAN_FOR_PHONE = """
SELECT message_sid FROM orphan_callbacks
WHERE tenant_id = $1 AND matched_at IS NULL AND payload ->> 'To' = $2 AND received_at >= $3
  AND NOT EXISTS (SELECT 1 FROM recipients r WHERE r.twilio_sid = orphan_callbacks.message_sid)
ORDER BY id
LIMIT 1
"""

TAKEN_SIDS = "SELECT twilio_sid FROM recipients WHERE twilio_sid = ANY($1::text[])"

RUNNING_CAMPAIGNS = "SELECT id, tenant_id, published_upto FROM campaigns WHERE state = 'running'"

# Rows of a running campaign that wait for a broker message that may be gone.
COUNT_WAITING = """
SELECT count(*) FROM recipients
WHERE campaign_id = $1 AND (
    (state IN ('pending', 'queued') AND id <= $2)
    OR (state = 'retry_wait' AND next_attempt_at < now() - make_interval(secs => $3)))
"""

WAITING_IDS = """
SELECT id FROM recipients
WHERE campaign_id = $1 AND id > $4 AND (
    (state IN ('pending', 'queued') AND id <= $2)
    OR (state = 'retry_wait' AND next_attempt_at < now() - make_interval(secs => $3)))
ORDER BY id
LIMIT $5
"""
