"""SQL of the sender: claims, outcomes, credits, leases, reconciliation and the stuck-row sweep.

Every statement filters on the tenant. Outcomes are written for a whole chunk at once
(``unnest`` arrays), never one round trip per message.

Claims and settlements find their rows by primary key only. The campaign being sent is always
new to the planner's statistics (its rows were written moments ago), so a plan that walks the
campaign's or the unsettled rows' index looks cheap and reads the whole campaign for every chunk
(measured: 80 ms instead of 4 ms per claim at 60,000 rows). Their other conditions are therefore
written in forms no index matches: ``IS NOT DISTINCT FROM`` for the tenant and campaign (the
columns are never null, so it means ``=``), ``(...) IS TRUE`` for the state.
"""

# Tenants and campaigns ------------------------------------------------------------------------

SELECT_TENANT = """
SELECT id, name, business_name, twilio_account_sid, twilio_auth_token_enc, whatsapp_from,
       messaging_service_sid, timezone, locale, active, sending_window, messaging_limit
FROM tenants WHERE id = $1
"""

SELECT_CAMPAIGN = (
    "SELECT id, tenant_id, kind, state, template FROM campaigns WHERE tenant_id = $1 AND id = $2"
)

# A running campaign that holds (outside its tenant's sending window) reads as ``held``.
# A held campaign's reason is its hold's (the gate lets claimed messages of some holds go).
CAMPAIGN_STATES = """
SELECT id, CASE WHEN state = 'running' AND hold_reason IS NOT NULL THEN 'held' ELSE state END AS state,
       CASE WHEN state = 'running' AND hold_reason IS NOT NULL THEN hold_reason ELSE pause_reason END
           AS pause_reason
FROM campaigns WHERE id = ANY($1::uuid[])
"""

# Claim ----------------------------------------------------------------------------------------

# The whole claim is one statement, committed on its own: the tenant's credit account row (which
# every claim and settlement of the tenant must lock) is held for one statement and its commit,
# never across round trips to a busy sender.
#
# Rows of the chunk still claimable move to ``sending`` under a lease (SKIP LOCKED: a row another
# sender is claiming this instant is that sender's); suppressed numbers move to ``suppressed``;
# when credits apply (``$5`` and the tenant's account enabled; no account means no credits) only
# as many rows as are available are claimed and their credits reserved.
#
# A tenant with a frequency cap (at most N marketing messages per number in D days; test and
# manual sends are exempt and not counted) has its numbers' recent claims in ``contact_frequency``.
# Each row about to be claimed extends its number's entry with an upsert whose condition is
# evaluated on the latest version of that entry under its lock — not on the statement's snapshot,
# which would miss a claim another sender committed meanwhile — so a number already at the cap
# is never claimed again, whichever campaigns and senders race for it. Entries are locked in phone
# order (after the credit account), so two claims never deadlock. A number at the cap moves to
# ``skipped`` with the reason ``frequency_capped``. An entry counts while it is younger than the
# window, unless its row ended without a message (failed before Twilio accepted it, cancelled,
# suppressed, skipped): such a final state never changes, so a stale view of it cannot undercount.
# Entries leave a number's row when they leave the window.
# A row claimed again (a retry, a pause) is already counted. The preview's count of capped numbers
# (services/segmenter/audience/query.py) applies the same rule.
#
# The first row carries the summary: whether credits fell short, how many rows were suppressed and
# capped, whether the campaign was held. Columns after it describe each claimed row for rendering.
#
# A tenant with a messaging limit (a tier: unique numbers per moving window of ``$6`` seconds)
# claims only as many numbers new to the window as the tier has room for; numbers already in the
# window cost nothing. Such a claim runs in a transaction after ``LOCK_SEND_LIMIT`` (``$7``), so
# claims of the tenant take turns and each one sees the contacts of those before it (a statement
# reads the rows committed when it started, and the lock is taken in a statement of its own).
# Without the lock (``$7`` false) a limited tenant's claim takes nothing and says so
# (``needs_lock``): the sender's view of the tenant was out of date. A claim that left rows for
# the limit, or for a hold of the whole tenant, holds the campaign until the window has room (the
# oldest contact leaves it) or the tenant's hold ends; the rows stay where they were. A campaign
# held for the limit is still claimed from: numbers already counted go, new ones keep waiting.
CLAIM = """
WITH limits AS (
    SELECT t.messaging_limit AS tier,
           (t.messaging_limit IS NOT NULL AND NOT $7) AS needs_lock,
           coalesce(w.hold_until > now(), false) AS tenant_held,
           w.hold_reason AS tenant_hold_reason, w.hold_until AS tenant_hold_until,
           coalesce(w.in_window, 0) AS in_window, w.counted_at,
           greatest(now(), w.counted_at) AS claim_at
    FROM tenants t LEFT JOIN tenant_send_limits w ON w.tenant_id = t.id
    WHERE t.id = $1
), candidates AS (
    SELECT r.id, r.state, r.phone_e164, r.vars,
           (s.phone_e164 IS NOT NULL) AS suppressed,
           cu.first_name, cu.last_name, cu.email,
           a.starts_at, a.status AS appointment_status,
           sv.name AS service_name, l.name AS location_name, l.address AS location_address,
           st.name AS staff_name
    FROM recipients r
    LEFT JOIN suppressions s ON s.tenant_id = r.tenant_id AND s.phone_e164 = r.phone_e164
    LEFT JOIN customers cu ON cu.id = r.customer_id AND cu.tenant_id = r.tenant_id
    LEFT JOIN appointments a ON a.id = r.appointment_id AND a.tenant_id = r.tenant_id
    LEFT JOIN services sv ON sv.id = a.service_id
    LEFT JOIN locations l ON l.id = a.location_id
    LEFT JOIN staff st ON st.id = a.staff_id
    WHERE r.id = ANY($3::bigint[])
      AND r.tenant_id IS NOT DISTINCT FROM $1 AND r.campaign_id IS NOT DISTINCT FROM $2
      AND r.state IN ('pending', 'queued', 'retry_wait')
      AND EXISTS (SELECT 1 FROM campaigns c WHERE c.id = $2 AND c.tenant_id = $1 AND c.state = 'running'
                  AND (c.hold_reason IS NULL OR c.hold_reason = 'messaging_limit'))
    ORDER BY r.id
    FOR UPDATE OF r SKIP LOCKED
), known AS (
    -- Numbers the window already counts: messaging them again is free.
    SELECT c.id FROM candidates c
    JOIN tenant_contacts tc ON tc.tenant_id = $1 AND tc.phone_e164 = c.phone_e164
    WHERE (SELECT tier FROM limits) IS NOT NULL
      AND tc.last_contacted_at > (SELECT claim_at FROM limits) - make_interval(secs => $6)
), expired AS (
    -- Contacts that left the window since the last claim counted.
    SELECT count(*) AS n FROM tenant_contacts tc, limits l
    WHERE l.tier IS NOT NULL AND $7 AND tc.tenant_id = $1
      AND tc.last_contacted_at > l.counted_at - make_interval(secs => $6)
      AND tc.last_contacted_at <= l.claim_at - make_interval(secs => $6)
), ranked AS (
    SELECT c.id, c.state, c.phone_e164, (k.id IS NULL) AS is_new,
           row_number() OVER (PARTITION BY k.id IS NULL ORDER BY c.id) AS n
    FROM candidates c LEFT JOIN known k ON k.id = c.id
    WHERE NOT c.suppressed
), within_limit AS (
    SELECT r.id, r.state, r.phone_e164, r.is_new FROM ranked r, limits l
    WHERE NOT l.needs_lock AND NOT l.tenant_held
      AND (l.tier IS NULL OR NOT r.is_new
           OR r.n <= l.tier - greatest(l.in_window - (SELECT n FROM expired), 0))
), account AS (
    SELECT enabled, greatest(plan_balance + purchased_balance - reserved, 0) AS available
    FROM credit_accounts
    WHERE tenant_id = $1 AND $5 AND EXISTS (SELECT 1 FROM within_limit)
    FOR UPDATE
), policy AS (
    SELECT $5 AND coalesce((SELECT enabled FROM account), true) AS metered,
           coalesce((SELECT available FROM account), 0) AS available
), budgeted AS (
    SELECT w.id, w.state, w.phone_e164, w.is_new FROM within_limit w
    ORDER BY w.id
    LIMIT (SELECT CASE WHEN metered THEN available END FROM policy)
), cap AS (
    SELECT t.frequency_cap_messages AS messages, now() - make_interval(days => t.frequency_cap_days) AS since
    FROM tenants t
    WHERE t.id = $1 AND t.frequency_cap_messages IS NOT NULL
      AND EXISTS (SELECT 1 FROM campaigns c WHERE c.id = $2 AND c.tenant_id = $1 AND c.kind = 'campaign')
), counted AS (
    INSERT INTO contact_frequency AS f (tenant_id, phone_e164, recipient_ids, claimed_at)
    SELECT $1, b.phone_e164, ARRAY[b.id], ARRAY[now()]
    FROM budgeted b CROSS JOIN cap
    ORDER BY b.phone_e164
    ON CONFLICT (tenant_id, phone_e164) DO UPDATE
    SET (recipient_ids, claimed_at) = (
        SELECT coalesce(array_agg(e.id ORDER BY e.at, e.id), '{}') || EXCLUDED.recipient_ids,
               coalesce(array_agg(e.at ORDER BY e.at, e.id), '{}') || EXCLUDED.claimed_at
        FROM unnest(f.recipient_ids, f.claimed_at) AS e(id, at)
        WHERE e.id <> EXCLUDED.recipient_ids[1] AND e.at > (SELECT since FROM cap))
    -- Cheapest test first: the rows of the entries are looked at only for a number at the cap.
    WHERE EXCLUDED.recipient_ids[1] = ANY(f.recipient_ids)
       OR (SELECT count(*) FROM unnest(f.claimed_at) AS e(at) WHERE e.at > (SELECT since FROM cap))
          < (SELECT messages FROM cap)
       OR (SELECT count(*)
           FROM unnest(f.recipient_ids, f.claimed_at) AS e(id, at)
           WHERE e.at > (SELECT since FROM cap)
             AND NOT EXISTS (SELECT 1 FROM recipients r
                             WHERE r.id = e.id AND r.twilio_sid IS NULL
                               AND r.state IN ('failed', 'cancelled', 'suppressed', 'skipped')))
          < (SELECT messages FROM cap)
    RETURNING f.phone_e164
), allowed AS (
    SELECT b.id, b.state, b.phone_e164, b.is_new FROM budgeted b
    WHERE NOT EXISTS (SELECT 1 FROM cap) OR b.phone_e164 IN (SELECT phone_e164 FROM counted)
), claimed AS (
    UPDATE recipients r
    SET state = 'sending', attempts = r.attempts + 1, claimed_at = now(), lookups = 0, latest_write_at = NULL,
        lease_until = now() + make_interval(secs => $4), credit_held = (SELECT metered FROM policy),
        next_attempt_at = NULL, updated_at = now()
    FROM allowed a
    WHERE r.id = a.id
    RETURNING r.id, r.attempts, r.deferrals, r.claimed_at
), suppressed AS (
    UPDATE recipients r SET state = 'suppressed', updated_at = now()
    FROM candidates c
    WHERE r.id = c.id AND c.suppressed
    RETURNING r.id
), capped AS (
    UPDATE recipients r
    SET state = 'skipped', skip_reason = 'frequency_capped', next_attempt_at = NULL, updated_at = now()
    FROM budgeted b
    WHERE r.id = b.id AND EXISTS (SELECT 1 FROM cap) AND b.phone_e164 NOT IN (SELECT phone_e164 FROM counted)
    RETURNING r.id, b.state AS from_state
), reserve AS (
    UPDATE credit_accounts SET reserved = reserved + (SELECT count(*) FROM allowed), updated_at = now()
    WHERE tenant_id = $1 AND (SELECT metered FROM policy) AND EXISTS (SELECT 1 FROM allowed)
), contacted AS (
    INSERT INTO tenant_contacts AS tc (tenant_id, phone_e164, last_contacted_at)
    SELECT $1, a.phone_e164, (SELECT claim_at FROM limits) FROM allowed a
    WHERE (SELECT tier FROM limits) IS NOT NULL
    ON CONFLICT (tenant_id, phone_e164) DO UPDATE SET last_contacted_at = EXCLUDED.last_contacted_at
), window_counted AS (
    UPDATE tenant_send_limits w
    SET in_window = greatest(w.in_window - (SELECT n FROM expired), 0)
                    + (SELECT count(*) FROM allowed WHERE is_new),
        counted_at = (SELECT claim_at FROM limits)
    WHERE w.tenant_id = $1 AND $7 AND (SELECT tier FROM limits) IS NOT NULL
), held AS (
    UPDATE campaigns c
    SET hold_reason = CASE WHEN l.tenant_held THEN l.tenant_hold_reason ELSE 'messaging_limit' END,
        hold_until = CASE WHEN l.tenant_held THEN l.tenant_hold_until
                          ELSE coalesce((SELECT min(tc.last_contacted_at) FROM tenant_contacts tc
                                         WHERE tc.tenant_id = $1
                                           AND tc.last_contacted_at > l.claim_at - make_interval(secs => $6)),
                                        l.claim_at) + make_interval(secs => $6) END
    FROM limits l
    WHERE c.id = $2 AND c.tenant_id = $1 AND NOT l.needs_lock
      AND (SELECT count(*) FROM ranked) > (SELECT count(*) FROM within_limit)
      -- Never in place of another kind of hold (a closed sending window) set meanwhile.
      AND (c.hold_reason IS NULL OR c.hold_reason IN ('messaging_limit', 'spam_rate_limit'))
    RETURNING c.hold_reason, c.hold_until
), logged AS (
    INSERT INTO message_events (tenant_id, campaign_id, recipient_id, from_state, to_state, source, detail)
    SELECT $1, $2, a.id, a.state, 'sending', 'sender', NULL FROM allowed a
    UNION ALL
    SELECT $1, $2, c.id, c.state, 'suppressed', 'sender', 'suppressed at claim'
    FROM candidates c WHERE c.suppressed
    UNION ALL
    SELECT $1, $2, k.id, k.from_state, 'skipped', 'sender', 'frequency_capped' FROM capped k
)
SELECT summary.short_of_credits, summary.suppressed_count, summary.capped_count, summary.needs_lock,
       summary.hold_reason, summary.hold_until,
       cl.id, cl.attempts, cl.deferrals, cl.claimed_at, c.phone_e164, c.vars, c.first_name, c.last_name,
       c.email, c.starts_at, c.appointment_status, c.service_name, c.location_name, c.location_address,
       c.staff_name
FROM (
    SELECT (SELECT count(*) FROM within_limit) > (SELECT count(*) FROM budgeted) AS short_of_credits,
           (SELECT count(*) FROM suppressed) AS suppressed_count,
           (SELECT count(*) FROM capped) AS capped_count,
           coalesce((SELECT needs_lock FROM limits), false) AS needs_lock,
           (SELECT hold_reason FROM held) AS hold_reason,
           (SELECT hold_until FROM held) AS hold_until
) AS summary
LEFT JOIN (claimed cl JOIN candidates c ON c.id = cl.id) ON true
ORDER BY cl.id
"""

# The turn of a limited tenant's claim (see CLAIM): its row, created on first use, locked until
# the claim's transaction ends.
LOCK_SEND_LIMIT = """
INSERT INTO tenant_send_limits AS w (tenant_id) VALUES ($1)
ON CONFLICT (tenant_id) DO UPDATE SET tenant_id = w.tenant_id
"""

# Meta refused the tenant's sender for spam (131048): the whole tenant waits ``$3`` seconds, and
# so do its running campaigns (their claims would wait anyway; this shows it at once).
HOLD_TENANT = """
WITH tenant AS (
    INSERT INTO tenant_send_limits AS w (tenant_id, hold_reason, hold_until)
    VALUES ($1, $2, now() + make_interval(secs => $3))
    ON CONFLICT (tenant_id) DO UPDATE
    SET hold_reason = EXCLUDED.hold_reason,
        hold_until = greatest(coalesce(w.hold_until, now()), EXCLUDED.hold_until)
    RETURNING hold_until
)
UPDATE campaigns c
SET hold_reason = $2, hold_until = greatest(coalesce(c.hold_until, now()), (SELECT hold_until FROM tenant))
WHERE c.tenant_id = $1 AND c.state = 'running'
  AND (c.hold_reason IS NULL OR c.hold_reason IN ('messaging_limit', 'spam_rate_limit'))
RETURNING c.id, c.hold_until
"""

# Recipients sent back to wait because a status callback reported Meta's spam refusal (131048)
# after Twilio accepted the create (the tracker records them): their tenants' sending is held
# until ``$1`` seconds after the latest refusal, and so are their running campaigns. Idempotent
# (a hold is only ever moved later, to a time computed from the rows), so a pass run twice, or by
# two leaders, holds once; only holds that changed come back, to be announced.
HOLD_TENANTS_REFUSED_IN_CALLBACKS = """
WITH refused AS (
    SELECT tenant_id, max(updated_at) + make_interval(secs => $1) AS until
    FROM recipients
    WHERE state = 'retry_wait' AND error_code = 131048 AND updated_at > now() - make_interval(secs => $1)
    GROUP BY tenant_id
), tenants_held AS (
    INSERT INTO tenant_send_limits AS w (tenant_id, hold_reason, hold_until)
    SELECT tenant_id, $2, until FROM refused
    ON CONFLICT (tenant_id) DO UPDATE
    SET hold_reason = EXCLUDED.hold_reason, hold_until = EXCLUDED.hold_until
    WHERE w.hold_until IS NULL OR w.hold_until < EXCLUDED.hold_until
    RETURNING tenant_id, hold_until
)
UPDATE campaigns c
SET hold_reason = $2, hold_until = t.hold_until
FROM tenants_held t
WHERE c.tenant_id = t.tenant_id AND c.state = 'running'
  AND (c.hold_reason IS NULL OR c.hold_reason IN ('messaging_limit', 'spam_rate_limit'))
  AND (c.hold_until IS NULL OR c.hold_until < t.hold_until)
RETURNING c.id, c.tenant_id, c.hold_until
"""

ROLL_CREDIT_PERIOD = """
WITH rolled AS (
    UPDATE credit_accounts a
    SET plan_balance = a.plan_monthly, plan_period_start = $2, updated_at = now()
    FROM (SELECT tenant_id, plan_balance FROM credit_accounts WHERE tenant_id = $1 FOR UPDATE) AS before
    WHERE a.tenant_id = $1 AND a.plan_period_start < $2
    RETURNING before.plan_balance AS expired, a.plan_monthly AS granted
)
INSERT INTO credit_ledger (tenant_id, kind, bucket, amount, note)
SELECT $1, kind, 'plan', amount, 'monthly plan'
FROM rolled,
     LATERAL (VALUES ('plan_expiry', -rolled.expired), ('plan_grant', rolled.granted)) AS v(kind, amount)
WHERE amount <> 0
"""

# Outcomes -------------------------------------------------------------------------------------

# A chunk's outcomes, their events, the tenant's credits (a debit per sent row, plan credits
# first; reservations released) and opt-out suppressions: one statement, committed on its own.
# Only the claim being settled (same ``claimed_at``) may be, so a late answer can never overwrite
# a later claim of the same row.
SETTLE = """
WITH outcome AS (
    SELECT * FROM unnest($2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::integer[], $7::text[],
                         $8::boolean[], $9::timestamptz[], $11::boolean[], $12::float8[])
        AS o(id, claimed_at, to_state, sid, error_code, error_message, uncount, next_attempt_at, suppress,
             accepted_at)
), settled AS (
    UPDATE recipients r
    SET state = f.to_state,
        twilio_sid = coalesce(o.sid, r.twilio_sid),
        error_code = o.error_code,
        error_message = o.error_message,
        attempts = CASE WHEN o.uncount THEN greatest(r.attempts - 1, 0) ELSE r.attempts END,
        deferrals = CASE WHEN o.uncount AND o.to_state = 'retry_wait' THEN r.deferrals + 1
                         ELSE r.deferrals END,
        -- When Twilio accepted this message (its answer arrived), never after a delivery or read
        -- its callbacks already reported.
        sent_at = CASE WHEN o.to_state <> 'sent' THEN r.sent_at
                       ELSE coalesce(r.sent_at, least(coalesce(to_timestamp(o.accepted_at), now()),
                                                      r.delivered_at, r.read_at)) END,
        failed_at = CASE WHEN o.to_state = 'failed' THEN now() ELSE r.failed_at END,
        lease_until = NULL,
        -- An ambiguous answer: the call has ended, so the create was written (if at all) before now.
        latest_write_at = CASE WHEN f.to_state = 'unknown' THEN now() END,
        next_attempt_at = o.next_attempt_at,
        credit_held = (f.to_state = 'unknown' AND before.credit_held),
        updated_at = now()
    FROM outcome o
    -- Each row by its primary key, the campaign's state by its own: joined to the campaign
    -- instead, the planner may walk all the campaign's rows through the (tenant, campaign)
    -- index that row-level security's tenant condition opens to it, when the statistics
    -- still say a new campaign has a handful of rows (seconds per settlement at 30,000).
    JOIN recipients before ON before.id = o.id,
    -- A row handed back or left to retry after its campaign was cancelled is cancelled too:
    -- the cancel marked the rows waiting at that moment, and this one was in flight then.
    LATERAL (SELECT CASE WHEN o.to_state IN ('queued', 'retry_wait')
                              AND (SELECT c.state FROM campaigns c
                                   WHERE c.id = before.campaign_id) = 'cancelled'
                         THEN 'cancelled' ELSE o.to_state END AS to_state) f
    WHERE r.id = o.id AND r.tenant_id IS NOT DISTINCT FROM $1 AND (r.state IN ('sending', 'unknown')) IS TRUE
      AND r.claimed_at = o.claimed_at
    RETURNING r.id, r.campaign_id, r.phone_e164, before.state AS from_state, f.to_state, o.error_code,
              o.error_message, before.credit_held AS held, o.suppress
), logged AS (
    INSERT INTO message_events
        (tenant_id, campaign_id, recipient_id, from_state, to_state, source, error_code, detail)
    SELECT $1, campaign_id, id, from_state, to_state, $10, error_code, error_message FROM settled
), debits AS (
    -- One debit per recipient: a number sent again after a refusal its callback reported
    -- (131048, 131056: that message was not delivered) is not charged twice. Looked up row by
    -- row through the one-debit index: as NOT EXISTS, the planner, trusting statistics that
    -- still counted a handful of debits, read all the tenant's debits for every settlement
    -- (an anti join over the partial index ANDed with the tenant's), 100 x 8,700 rows at 8,700
    -- sent: a 100,000-message campaign slowed to 200 messages a second and kept slowing.
    SELECT s.id, s.campaign_id, row_number() OVER (ORDER BY s.id) AS n FROM settled s
    WHERE s.held AND s.to_state = 'sent'
      AND (SELECT l.id FROM credit_ledger l WHERE l.recipient_id = s.id AND l.kind = 'debit') IS NULL
), counts AS (
    SELECT (SELECT count(*) FROM debits) AS debit,
           count(*) FILTER (WHERE held AND to_state <> 'unknown') AS released
    FROM settled
), account AS (
    SELECT plan_balance FROM credit_accounts
    WHERE tenant_id = $1 AND (SELECT released FROM counts) > 0
    FOR UPDATE
), debited AS (
    UPDATE credit_accounts a
    SET plan_balance = a.plan_balance - least(a.plan_balance, c.debit),
        purchased_balance = greatest(a.purchased_balance - greatest(c.debit - a.plan_balance, 0), 0),
        reserved = greatest(a.reserved - c.released, 0),
        updated_at = now()
    FROM counts c
    WHERE a.tenant_id = $1 AND c.released > 0
), ledger AS (
    INSERT INTO credit_ledger (tenant_id, kind, bucket, amount, campaign_id, recipient_id)
    SELECT $1, 'debit', CASE WHEN d.n <= account.plan_balance THEN 'plan' ELSE 'purchased' END,
           -1, d.campaign_id, d.id
    FROM debits d, account
    ON CONFLICT DO NOTHING
), opted_out AS (
    INSERT INTO suppressions (tenant_id, phone_e164, source, reason)
    SELECT $1, phone_e164, 'error_code', 'Twilio error ' || error_code FROM settled WHERE suppress
    ON CONFLICT (tenant_id, phone_e164) DO NOTHING
    RETURNING phone_e164, reason
), opted_out_logged AS (
    INSERT INTO suppression_events (tenant_id, phone_e164, action, source, reason)
    SELECT $1, phone_e164, 'added', 'error_code', reason FROM opted_out
)
SELECT s.id, s.to_state, (SELECT debit FROM counts) AS debited FROM settled s
"""

# Pacing --------------------------------------------------------------------------------------

# A back-off of the tenant's shared effective rate (shared/pacing.py): the factor in force now
# (the last one, recovered since at $4 per second, at most 1) times $2, not below $5; a
# Retry-After ($3 seconds) holds the tenant. At most one back-off per $6 seconds: refusals right
# after one were caused by the rate it already corrected. Returns the new factor, or nothing
# when a back-off was too recent.
BACK_OFF = """
INSERT INTO tenant_pacing AS p (tenant_id, factor, changed_at, hold_until)
VALUES ($1, greatest($5::float8, $2::float8), now(), now() + make_interval(secs => $3::float8))
ON CONFLICT (tenant_id) DO UPDATE
SET factor = greatest($5::float8,
                      least(1.0, p.factor + $4::float8 * extract(epoch FROM now() - p.changed_at)::float8)
                      * $2::float8),
    changed_at = now(),
    hold_until = greatest(p.hold_until, EXCLUDED.hold_until),
    backoffs = p.backoffs + 1
WHERE p.changed_at < now() - make_interval(secs => $6::float8)
RETURNING factor
"""

# Maintenance (one sender at a time) --------------------------------------------------------------

# A row still ``sending`` past its lease lost its sender mid-call: whether Twilio got the request
# is unknown, so it is reconciled, never re-sent blindly. No sender writes a create after its
# claim's lease (it stops a call that could outlive it), so the lease's end bounds the write.
EXPIRE_LEASES = """
WITH expired AS (
    UPDATE recipients
    SET state = 'unknown', lease_until = NULL, latest_write_at = lease_until, error_message = 'lease expired',
        updated_at = now()
    WHERE id IN (
        SELECT id FROM recipients WHERE state = 'sending' AND lease_until < now() ORDER BY id LIMIT $1
        FOR UPDATE SKIP LOCKED)
    RETURNING id, tenant_id, campaign_id
)
INSERT INTO message_events (tenant_id, campaign_id, recipient_id, from_state, to_state, source, detail)
SELECT tenant_id, campaign_id, id, 'sending', 'unknown', 'lease', 'lease expired' FROM expired
"""

# ``unknown`` rows due for a lookup: a reconcile interval after their last change, and, once one
# lookup has found nothing, only when their create's write is older than the late-create bound
# ($3 seconds): before that, "not found" would not be believed, so there is nothing to ask.
# ``latest_write_at`` is the latest moment the row's create can have been written: as recorded
# for the current claim (every value recorded for a claim is later than the claim), or else (a
# row made unknown before the column existed) the row's last change, no earlier than the moment
# it became unknown; LOOK_AGAIN pins it. ``looked_at`` is the database's clock as the rows are
# read, before any lookup is sent.
UNKNOWN_DUE = """
SELECT r.id, r.tenant_id, r.campaign_id, r.phone_e164, r.claimed_at, r.attempts, r.deferrals,
       r.lookups, r.error_code, r.error_message,
       CASE WHEN r.latest_write_at >= r.claimed_at THEN r.latest_write_at ELSE r.updated_at END
           AS latest_write_at,
       now() AS looked_at
FROM recipients r
WHERE r.state = 'unknown' AND r.updated_at < now() - make_interval(secs => $1)
  AND (r.lookups = 0
       OR CASE WHEN r.latest_write_at >= r.claimed_at THEN r.latest_write_at ELSE r.updated_at END
          < now() - make_interval(secs => $3))
ORDER BY r.id
LIMIT $2
"""

# Rows whose message was not found yet: looked up again later (the claim must still be the same
# one, and no other lookup counted meanwhile: two lookups at once, from a leader and one that
# replaced it, count once). The latest write is pinned first, so a row whose own was not recorded
# does not count from the change made here.
LOOK_AGAIN = """
UPDATE recipients r
SET lookups = r.lookups + 1,
    latest_write_at = CASE WHEN r.latest_write_at >= r.claimed_at THEN r.latest_write_at
                           ELSE r.updated_at END,
    updated_at = now()
FROM unnest($2::bigint[], $3::timestamptz[], $4::int[]) AS l(id, claimed_at, lookups)
WHERE r.id = l.id AND r.tenant_id IS NOT DISTINCT FROM $1 AND (r.state = 'unknown') IS TRUE
  AND r.claimed_at = l.claimed_at AND r.lookups = l.lookups
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

# Campaigns held by the sender wait for their hold to end (their rows wait on purpose).
# A campaign without a hold has NULL hold columns: the test must be false for it, not NULL (a
# NULL under NOT would leave out every campaign that is not held).
RUNNING_CAMPAIGNS = """
SELECT id, tenant_id, published_upto FROM campaigns
WHERE state = 'running'
  AND NOT coalesce(hold_reason IN ('messaging_limit', 'spam_rate_limit') AND hold_until > now(), false)
"""

# The sender's holds (the messaging limit, a spam hold; a closed sending window is the
# segmenter's) whose time has come: cleared, and the running campaigns among them get their
# waiting rows published again (a claim that still finds no room holds the campaign anew).
HOLDS_ENDED = """
UPDATE campaigns c SET hold_reason = NULL, hold_until = NULL
FROM (SELECT id, hold_reason FROM campaigns
      WHERE hold_until <= now() AND hold_reason IN ('messaging_limit', 'spam_rate_limit')
      ORDER BY hold_until LIMIT $1
      FOR UPDATE SKIP LOCKED) ended
WHERE c.id = ended.id
RETURNING c.id, c.tenant_id, c.state, c.published_upto, ended.hold_reason
"""

# Contacts the window no longer counts and their tenant's count has already counted off (of a
# tenant whose limit was lifted: once out of the window): kept no longer. Only tenants with a
# limits row have contacts (a limited claim creates it).
FORGET_CONTACTS = """
DELETE FROM tenant_contacts
WHERE ctid = ANY(ARRAY(
    SELECT gone.ctid
    FROM tenant_send_limits w
    JOIN tenants t ON t.id = w.tenant_id
    CROSS JOIN LATERAL (
        SELECT tc.ctid FROM tenant_contacts tc
        WHERE tc.tenant_id = w.tenant_id
          AND tc.last_contacted_at <= CASE WHEN t.messaging_limit IS NULL
                                           THEN now() - make_interval(secs => $1)
                                           ELSE w.counted_at - make_interval(secs => $1) END
        LIMIT $2) gone
    LIMIT $2))
"""

# Frequency-cap entries none of whose claims is younger than $1 days, at most $2 of them
# (services/sender/frequency_retention.py). The age is checked again on the entry deleted, so one
# that a claim extended meanwhile (it waited for the claim's lock) stays.
DELETE_OLD_FREQUENCY_ENTRIES = """
DELETE FROM contact_frequency f
USING (SELECT tenant_id, phone_e164 FROM contact_frequency
       WHERE (SELECT max(at) FROM unnest(claimed_at) AS at) < now() - make_interval(days => $1)
       LIMIT $2) old
WHERE f.tenant_id = old.tenant_id AND f.phone_e164 = old.phone_e164
  AND (SELECT max(at) FROM unnest(f.claimed_at) AS at) < now() - make_interval(days => $1)
"""

# Rows of a running campaign that wait for a broker message that may be gone ($4: now, on the
# clock the retry times were written with).
COUNT_WAITING = """
SELECT count(*) FROM recipients
WHERE campaign_id = $1 AND (
    (state IN ('pending', 'queued') AND id <= $2)
    OR (state = 'retry_wait' AND next_attempt_at < $4::timestamptz - make_interval(secs => $3)))
"""

WAITING_IDS = """
SELECT id FROM recipients
WHERE campaign_id = $1 AND id > $4 AND (
    (state IN ('pending', 'queued') AND id <= $2)
    OR (state = 'retry_wait' AND next_attempt_at < $6::timestamptz - make_interval(secs => $3)))
ORDER BY id
LIMIT $5
"""

# Take the lease when it is free or expired, or renew it when this holder has it: a row back means
# this holder leads until expires_at. The database's clock is the only one that counts.
ACQUIRE_LEASE = """
INSERT INTO leader_leases (name, holder, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT (name) DO UPDATE
SET holder = EXCLUDED.holder,
    expires_at = EXCLUDED.expires_at,
    acquired_at = CASE WHEN leader_leases.holder = EXCLUDED.holder
                       THEN leader_leases.acquired_at ELSE now() END
WHERE leader_leases.holder = EXCLUDED.holder OR leader_leases.expires_at < now()
RETURNING holder
"""

RELEASE_LEASE = "DELETE FROM leader_leases WHERE name = $1 AND holder = $2"

# Rows left at sent/delivered whose last change (or last re-check) is older than the re-check
# age, doubled for every earlier re-check: at most $2 per tenant and $4 in all, taken in turns
# (every due tenant's oldest row, then every one's second oldest, ...), oldest first within a
# turn. Oldest first alone let tenants whose re-checks keep failing (credentials Twilio refuses:
# such a row is postponed, not counted, so it is due again after the first interval) fill every
# pass once there were enough of them, and a tenant whose callbacks were lost waited behind them.
STATUS_RECHECK_DUE = """
SELECT r.id, r.tenant_id, r.twilio_sid, r.state
FROM tenants t
CROSS JOIN LATERAL (
    SELECT r.id, r.tenant_id, r.twilio_sid, r.state, r.updated_at,
           row_number() OVER (ORDER BY r.updated_at) AS turn
    FROM recipients r
    WHERE r.tenant_id = t.id
      AND r.state IN ('sent', 'delivered')
      AND r.twilio_sid IS NOT NULL
      AND r.status_rechecks < $3
      AND GREATEST(r.updated_at, r.status_checked_at)
          < now() - make_interval(secs => $1 * power(2, r.status_rechecks))
    ORDER BY r.updated_at
    LIMIT $2
) r
WHERE t.active
ORDER BY r.turn, r.updated_at
LIMIT $4
"""

# A re-check done: counted ($2) or, when Twilio could not be asked, only postponed.
STATUS_RECHECKED = """
UPDATE recipients
SET status_checked_at = now(), status_rechecks = status_rechecks + $2
WHERE id = ANY($1::bigint[])
"""
