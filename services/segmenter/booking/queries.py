"""SQL of the booking read model: batched upserts (``unnest`` of column arrays) and deletes.

Upserts are keyed by (tenant, external id), so replaying a batch or an event changes nothing.
``xmax = 0`` on the returned row tells an insert from an update.
"""

UPSERT_CUSTOMERS = """
INSERT INTO customers (tenant_id, external_id, first_name, last_name, email, phone_raw, phone_e164)
SELECT $1, r.external_id, r.first_name, r.last_name, r.email, r.phone_raw, r.phone_e164
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
     AS r (external_id, first_name, last_name, email, phone_raw, phone_e164)
ON CONFLICT (tenant_id, external_id) DO UPDATE SET
    first_name = EXCLUDED.first_name,
    last_name = EXCLUDED.last_name,
    email = EXCLUDED.email,
    phone_raw = EXCLUDED.phone_raw,
    phone_e164 = EXCLUDED.phone_e164,
    updated_at = now()
RETURNING (xmax = 0) AS inserted
"""

UPSERT_SERVICES = """
INSERT INTO services (tenant_id, external_id, name)
SELECT $1, r.external_id, r.name FROM unnest($2::text[], $3::text[]) AS r (external_id, name)
ON CONFLICT (tenant_id, external_id) DO UPDATE SET name = EXCLUDED.name, updated_at = now()
RETURNING (xmax = 0) AS inserted
"""

UPSERT_STAFF = """
INSERT INTO staff (tenant_id, external_id, name)
SELECT $1, r.external_id, r.name FROM unnest($2::text[], $3::text[]) AS r (external_id, name)
ON CONFLICT (tenant_id, external_id) DO UPDATE SET name = EXCLUDED.name, updated_at = now()
RETURNING (xmax = 0) AS inserted
"""

UPSERT_LOCATIONS = """
INSERT INTO locations (tenant_id, external_id, name, address)
SELECT $1, r.external_id, r.name, r.address
FROM unnest($2::text[], $3::text[], $4::text[]) AS r (external_id, name, address)
ON CONFLICT (tenant_id, external_id) DO UPDATE SET
    name = EXCLUDED.name, address = EXCLUDED.address, updated_at = now()
RETURNING (xmax = 0) AS inserted
"""

# An unchanged status keeps the instant it was first given unless the source says otherwise.
UPSERT_APPOINTMENTS = """
INSERT INTO appointments (tenant_id, external_id, customer_id, service_id, location_id, staff_id,
                          starts_at, ends_at, created_at, status, status_changed_at)
SELECT $1, r.external_id, r.customer_id, r.service_id, r.location_id, r.staff_id,
       r.starts_at, r.ends_at, r.created_at, r.status, coalesce(r.status_changed_at, r.status_fallback_at)
FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::timestamptz[],
            $8::timestamptz[], $9::timestamptz[], $10::text[], $11::timestamptz[], $12::timestamptz[])
     AS r (external_id, customer_id, service_id, location_id, staff_id, starts_at, ends_at, created_at,
           status, status_changed_at, status_fallback_at)
ON CONFLICT (tenant_id, external_id) DO UPDATE SET
    customer_id = EXCLUDED.customer_id,
    service_id = EXCLUDED.service_id,
    location_id = EXCLUDED.location_id,
    staff_id = EXCLUDED.staff_id,
    starts_at = EXCLUDED.starts_at,
    ends_at = EXCLUDED.ends_at,
    created_at = EXCLUDED.created_at,
    status = EXCLUDED.status,
    status_changed_at = CASE
        WHEN appointments.status = EXCLUDED.status AND NOT $13::text[] @> ARRAY[EXCLUDED.external_id]
        THEN appointments.status_changed_at
        ELSE EXCLUDED.status_changed_at
    END,
    updated_at = now()
RETURNING (xmax = 0) AS inserted
"""

# External id -> internal id of the referenced rows; the key-share lock keeps them from being
# deleted before the referencing rows are written.
CUSTOMER_IDS = (
    "SELECT external_id, id FROM customers WHERE tenant_id = $1 AND external_id = ANY ($2::text[])"
    " FOR KEY SHARE"
)
SERVICE_IDS = (
    "SELECT external_id, id FROM services WHERE tenant_id = $1 AND external_id = ANY ($2::text[])"
    " FOR KEY SHARE"
)
LOCATION_IDS = (
    "SELECT external_id, id FROM locations WHERE tenant_id = $1 AND external_id = ANY ($2::text[])"
    " FOR KEY SHARE"
)
STAFF_IDS = (
    "SELECT external_id, id FROM staff WHERE tenant_id = $1 AND external_id = ANY ($2::text[]) FOR KEY SHARE"
)

CUSTOM_STATUSES = (
    "SELECT name, counts_as_cancelled FROM appointment_statuses WHERE tenant_id = $1 ORDER BY name"
)

UPSERT_STATUSES = """
INSERT INTO appointment_statuses (tenant_id, name, counts_as_cancelled)
SELECT $1, r.name, r.cancelled FROM unnest($2::text[], $3::boolean[]) AS r (name, cancelled)
ON CONFLICT (tenant_id, name) DO UPDATE SET counts_as_cancelled = EXCLUDED.counts_as_cancelled
RETURNING (xmax = 0) AS inserted
"""

DELETE_CUSTOMERS = (
    "DELETE FROM customers WHERE tenant_id = $1 AND external_id = ANY ($2::text[]) RETURNING external_id"
)
DELETE_APPOINTMENTS = (
    "DELETE FROM appointments WHERE tenant_id = $1 AND external_id = ANY ($2::text[]) RETURNING external_id"
)
DELETE_SERVICES = (
    "DELETE FROM services WHERE tenant_id = $1 AND external_id = ANY ($2::text[]) RETURNING external_id"
)
DELETE_LOCATIONS = (
    "DELETE FROM locations WHERE tenant_id = $1 AND external_id = ANY ($2::text[]) RETURNING external_id"
)
DELETE_STAFF = (
    "DELETE FROM staff WHERE tenant_id = $1 AND external_id = ANY ($2::text[]) RETURNING external_id"
)

TENANT_REGION = "SELECT default_region, timezone FROM tenants WHERE id = $1"

# A tenant's services and locations as the audience filters name them (external ids), in
# external-id order from after $2, optionally only names containing $3 (case-insensitive).
LIST_SERVICES = """
SELECT external_id, name FROM services
WHERE tenant_id = $1 AND ($2::text IS NULL OR external_id > $2)
  AND ($3::text IS NULL OR strpos(lower(name), lower($3)) > 0)
ORDER BY external_id
LIMIT $4
"""

LIST_LOCATIONS = """
SELECT external_id, name, address FROM locations
WHERE tenant_id = $1 AND ($2::text IS NULL OR external_id > $2)
  AND ($3::text IS NULL OR strpos(lower(name), lower($3)) > 0)
ORDER BY external_id
LIMIT $4
"""
