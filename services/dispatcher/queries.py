"""SQL of the dispatcher: it only reads (tenants' rates, campaigns' states)."""

TENANTS = "SELECT id, rate_per_second, active FROM tenants"

TENANT = "SELECT id, rate_per_second, active FROM tenants WHERE id = $1"

# A tenant's shared back-off record (shared/pacing.py), written by the senders.
PACING = "SELECT factor, changed_at, hold_until FROM tenant_pacing WHERE tenant_id = $1"

CAMPAIGN_STATES = "SELECT id, state FROM campaigns WHERE id = ANY($1::uuid[])"
