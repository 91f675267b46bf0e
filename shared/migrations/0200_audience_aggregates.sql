-- Per-customer facts the audience queries read instead of aggregating millions of appointments:
-- how many appointments a customer has, when the latest starts, and whether another customer of
-- the tenant has the same number (so counting distinct numbers needs no sort of the whole audience).
-- Statement-level triggers keep them exact whoever writes the booking tables (API, events, CSV,
-- a bulk COPY), at one aggregate per statement rather than one per row.

ALTER TABLE customers
    ADD COLUMN appointment_count integer NOT NULL DEFAULT 0,
    ADD COLUMN last_starts_at timestamptz,
    ADD COLUMN phone_shared boolean NOT NULL DEFAULT false;

CREATE FUNCTION refresh_customer_appointment_facts(customer_ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF customer_ids IS NULL OR cardinality(customer_ids) = 0 THEN
        RETURN;
    END IF;
    -- Lock first, aggregate after: the aggregate then runs on a snapshot taken once concurrent
    -- writers of the same customers have committed, so none of their appointments is missed.
    PERFORM 1 FROM customers WHERE id = ANY (customer_ids) ORDER BY id FOR NO KEY UPDATE;
    UPDATE customers c
    SET appointment_count = f.n, last_starts_at = f.last_starts_at
    FROM (
        SELECT cu.id,
               coalesce(agg.n, 0) AS n,
               agg.last_starts_at
        FROM customers cu
        LEFT JOIN LATERAL (
            SELECT count(*)::integer AS n, max(a.starts_at) AS last_starts_at
            FROM appointments a
            WHERE a.tenant_id = cu.tenant_id AND a.customer_id = cu.id
        ) agg ON true
        WHERE cu.id = ANY (customer_ids)
    ) f
    WHERE c.id = f.id
      AND (c.appointment_count, c.last_starts_at) IS DISTINCT FROM (f.n, f.last_starts_at);
END
$$;

CREATE FUNCTION appointments_refresh_facts() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT customer_id) INTO ids FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT customer_id) INTO ids FROM old_rows;
    ELSE
        SELECT array_agg(DISTINCT x.customer_id) INTO ids
        FROM new_rows n
        JOIN old_rows o ON o.id = n.id
        CROSS JOIN LATERAL (VALUES (n.customer_id), (o.customer_id)) AS x (customer_id)
        WHERE n.customer_id IS DISTINCT FROM o.customer_id OR n.starts_at IS DISTINCT FROM o.starts_at;
    END IF;
    PERFORM refresh_customer_appointment_facts(ids);
    RETURN NULL;
END
$$;

CREATE TRIGGER appointments_facts_insert AFTER INSERT ON appointments
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION appointments_refresh_facts();
CREATE TRIGGER appointments_facts_update AFTER UPDATE ON appointments
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION appointments_refresh_facts();
CREATE TRIGGER appointments_facts_delete AFTER DELETE ON appointments
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION appointments_refresh_facts();

CREATE FUNCTION customers_refresh_phone_shared() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    tenants uuid[];
    phones text[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(tenant_id), array_agg(phone_e164) INTO tenants, phones
        FROM (SELECT DISTINCT tenant_id, phone_e164 FROM new_rows WHERE phone_e164 IS NOT NULL) x;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(tenant_id), array_agg(phone_e164) INTO tenants, phones
        FROM (SELECT DISTINCT tenant_id, phone_e164 FROM old_rows WHERE phone_e164 IS NOT NULL) x;
    ELSE
        SELECT array_agg(tenant_id), array_agg(phone_e164) INTO tenants, phones
        FROM (
            SELECT DISTINCT x.tenant_id, x.phone_e164
            FROM new_rows n
            JOIN old_rows o ON o.id = n.id
            CROSS JOIN LATERAL (VALUES (n.tenant_id, n.phone_e164), (o.tenant_id, o.phone_e164))
                AS x (tenant_id, phone_e164)
            WHERE n.phone_e164 IS DISTINCT FROM o.phone_e164 AND x.phone_e164 IS NOT NULL
        ) changed;
        IF EXISTS (SELECT 1 FROM new_rows WHERE phone_e164 IS NULL AND phone_shared) THEN
            UPDATE customers c SET phone_shared = false
            FROM new_rows n
            WHERE c.id = n.id AND n.phone_e164 IS NULL AND c.phone_shared;
        END IF;
    END IF;
    IF phones IS NULL THEN
        RETURN NULL;
    END IF;
    -- Two writers adding the same new number concurrently would each see only their own row;
    -- a transaction lock per (tenant, bucket of numbers) makes the second wait for the first.
    PERFORM pg_advisory_xact_lock(b.tenant_key, b.bucket)
    FROM (
        SELECT DISTINCT hashtext(t::text) AS tenant_key, abs(hashtext(p) % 64) AS bucket
        FROM unnest(tenants, phones) AS tp (t, p)
    ) b
    ORDER BY b.tenant_key, b.bucket;
    UPDATE customers c SET phone_shared = s.shared
    FROM (
        SELECT cu.id, count(*) OVER (PARTITION BY cu.tenant_id, cu.phone_e164) > 1 AS shared
        FROM customers cu
        JOIN unnest(tenants, phones) AS tp (tenant_id, phone_e164)
          ON cu.tenant_id = tp.tenant_id AND cu.phone_e164 = tp.phone_e164
    ) s
    WHERE c.id = s.id AND c.phone_shared IS DISTINCT FROM s.shared;
    RETURN NULL;
END
$$;

CREATE TRIGGER customers_phone_insert AFTER INSERT ON customers
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION customers_refresh_phone_shared();
CREATE TRIGGER customers_phone_update AFTER UPDATE ON customers
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION customers_refresh_phone_shared();
CREATE TRIGGER customers_phone_delete AFTER DELETE ON customers
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION customers_refresh_phone_shared();

-- Audience access paths: windows on the three appointment instants, the filters, shared numbers.
CREATE INDEX appointments_tenant_created ON appointments (tenant_id, created_at);
CREATE INDEX appointments_tenant_starts ON appointments (tenant_id, starts_at);
CREATE INDEX appointments_tenant_status_changed ON appointments (tenant_id, status_changed_at);
CREATE INDEX appointments_tenant_service ON appointments (tenant_id, service_id);
CREATE INDEX appointments_tenant_location ON appointments (tenant_id, location_id);
CREATE INDEX customers_tenant_shared_phone ON customers (tenant_id, phone_e164) WHERE phone_shared;
