"""SQL of the dispatcher: it only reads (tenants' rates, campaigns' states)."""

TENANTS = "SELECT id, rate_per_second, active FROM tenants"

TENANT = "SELECT id, rate_per_second, active FROM tenants WHERE id = $1"

# Every tenant's shared back-off record (shared/pacing.py, written by the senders) still in
# force: changed within the last $1 seconds (None: any), or holding the tenant still.
PACING_IN_FORCE = """
SELECT tenant_id, factor, changed_at, hold_until FROM tenant_pacing
WHERE $1::float8 IS NULL OR changed_at > now() - make_interval(secs => $1) OR hold_until > now()
"""

# A running campaign that holds (outside its tenant's sending window) reads as ``held``.
# A campaign held for its tenant's messaging limit is dispatched as usual: its claims send the
# numbers already counted and leave the others waiting.
CAMPAIGN_STATES = """
SELECT id, CASE WHEN state = 'running' AND hold_reason IS NOT NULL AND hold_reason <> 'messaging_limit'
                THEN 'held' ELSE state END AS state
FROM campaigns WHERE id = ANY($1::uuid[])
"""
