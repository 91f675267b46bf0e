"""SQL of the tenant API's outbound webhooks: endpoints and the deliveries a tenant reads and
resends (the trackers' delivery SQL is in services/tracker/outbound_queries.py)."""

ENDPOINT_COLUMNS = """
id, url, description, event_types, enabled, disabled_at, disabled_reason, failing_since,
consecutive_failures, created_at, updated_at
"""

SELECT_ENDPOINTS = f"""
SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY created_at, id
"""

SELECT_ENDPOINT = f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2"

# Serialises endpoint creation of one tenant, so the bound cannot be raced past.
LOCK_TENANT = "SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE"

COUNT_ENDPOINTS = "SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1"

INSERT_ENDPOINT = f"""
INSERT INTO webhook_endpoints (id, tenant_id, url, description, event_types, secret_enc)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING {ENDPOINT_COLUMNS}
"""

# $6: NULL leaves ``enabled`` alone; true re-enables (the failure run starts over); false
# disables, noting that the tenant did.
UPDATE_ENDPOINT = f"""
UPDATE webhook_endpoints SET
    url = COALESCE($3, url),
    description = COALESCE($4, description),
    event_types = COALESCE($5, event_types),
    enabled = COALESCE($6::boolean, enabled),
    disabled_at = CASE WHEN $6::boolean THEN NULL
                       WHEN NOT $6::boolean AND enabled THEN now() ELSE disabled_at END,
    disabled_reason = CASE WHEN $6::boolean THEN NULL
                           WHEN NOT $6::boolean AND enabled THEN 'disabled by the tenant'
                           ELSE disabled_reason END,
    failing_since = CASE WHEN $6::boolean THEN NULL ELSE failing_since END,
    consecutive_failures = CASE WHEN $6::boolean THEN 0 ELSE consecutive_failures END,
    updated_at = now()
WHERE tenant_id = $1 AND id = $2
RETURNING {ENDPOINT_COLUMNS}
"""

DELETE_ENDPOINT = "DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2 RETURNING id"

DELIVERY_COLUMNS = """
id, endpoint_id, event_id, event_type, state, attempts,
CASE WHEN state = 'pending' THEN next_attempt_at END AS next_attempt_at,
last_attempt_at, last_status_code, last_response, last_error, resend_of, created_at
"""

# Newest first, keyset-paged by id.
SELECT_DELIVERIES = f"""
SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
WHERE tenant_id = $1
  AND ($2::uuid IS NULL OR endpoint_id = $2)
  AND ($3::text IS NULL OR state = $3)
  AND ($4::bigint IS NULL OR id < $4)
ORDER BY id DESC
LIMIT $5
"""

SELECT_DELIVERY = f"SELECT {DELIVERY_COLUMNS}, body FROM webhook_deliveries WHERE tenant_id = $1 AND id = $2"

SELECT_ATTEMPTS = """
SELECT attempt, at, duration_ms, status_code, response, error FROM webhook_attempts
WHERE tenant_id = $1 AND delivery_id = $2
ORDER BY id
"""

SELECT_DELIVERY_ENDPOINT_ENABLED = """
SELECT e.enabled FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
WHERE d.tenant_id = $1 AND d.id = $2 AND e.tenant_id = $1
"""

# A resend is a new delivery of the same event (same id, type and body), due at once.
RESEND_DELIVERY = f"""
INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_id, event_type, body, resend_of)
SELECT tenant_id, endpoint_id, event_id, event_type, body, id FROM webhook_deliveries
WHERE tenant_id = $1 AND id = $2
RETURNING {DELIVERY_COLUMNS}
"""
