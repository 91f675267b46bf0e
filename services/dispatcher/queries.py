"""SQL of the dispatcher: it only reads (tenants' rates, campaigns' states)."""

TENANTS = "SELECT id, rate_per_second, active FROM tenants"

TENANT = "SELECT id, rate_per_second, active FROM tenants WHERE id = $1"

CAMPAIGN_STATES = "SELECT id, state FROM campaigns WHERE id = ANY($1::uuid[])"
