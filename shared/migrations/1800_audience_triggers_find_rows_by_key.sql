-- The audience triggers find the customers they refresh by key, whatever the statistics say.
--
-- A batch of customers written into a tenant the statistics have not seen yet (analysed when the
-- table held many small tenants, so each tenant "has" a row or two) was planned as a walk of the
-- whole tenant for each number of the batch: the tenant's row-level security condition offered
-- an index on the tenant alone, estimated at one row. A batch of 5,000 into a tenant of 10,000
-- read 50 million rows (23 s); the customer upsert of 10,000 rows timed out at 60 s.
--
-- The trigger functions and their helpers now run as their owner (SECURITY DEFINER), so no tenant condition is added to
-- their statements: they touch only the rows found from the transition tables of a statement the
-- caller was allowed to make. Each row is then found by its own key:
-- - a customer's facts by its id, and its appointments by ``appointments.customer_id`` alone, which
--   only the index leading with it serves (customer ids are unique across tenants);
-- - the customers sharing a number through the one index that holds (tenant, number) with the id
--   and flag, in a function that allows only index-only scans: the indexes leading with the tenant
--   alone look as cheap as that one when the statistics hide the tenant, and walk all of it.

CREATE OR REPLACE FUNCTION refresh_customer_appointment_facts(customer_ids bigint[]) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
BEGIN
    IF customer_ids IS NULL OR cardinality(customer_ids) = 0 THEN
        RETURN;
    END IF;
    -- Lock first, aggregate after: the aggregate then runs on a snapshot taken once concurrent
    -- writers of the same customers have committed, so none of their appointments is missed.
    PERFORM 1 FROM customers WHERE id = ANY (customer_ids) ORDER BY id FOR NO KEY UPDATE;
    UPDATE customers c
    SET appointment_count = f.n, last_starts_at = f.last_starts_at
    FROM unnest(customer_ids) AS k (id)
    CROSS JOIN LATERAL (
        SELECT count(*)::integer AS n, max(a.starts_at) AS last_starts_at
        FROM appointments a
        WHERE a.customer_id = k.id
    ) f
    WHERE c.id = k.id
      AND (c.appointment_count, c.last_starts_at) IS DISTINCT FROM (f.n, f.last_starts_at);
END
$$;

CREATE OR REPLACE FUNCTION appointments_refresh_facts() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    ids bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT customer_id) INTO ids FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT customer_id) INTO ids FROM old_rows;
    ELSE
        SELECT array_agg(DISTINCT changed.customer_id) INTO ids
        FROM (
            (SELECT id, customer_id, starts_at FROM new_rows EXCEPT SELECT id, customer_id, starts_at FROM old_rows)
            UNION ALL
            (SELECT id, customer_id, starts_at FROM old_rows EXCEPT SELECT id, customer_id, starts_at FROM new_rows)
        ) changed;
    END IF;
    PERFORM refresh_customer_appointment_facts(ids);
    RETURN NULL;
END
$$;

-- The customers holding each (tenant, number), with whether the number is now shared.
CREATE FUNCTION customers_holding_numbers(tenants uuid[], phones text[])
RETURNS TABLE (id bigint, phone_shared boolean, shared boolean)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = public, pg_temp
SET enable_seqscan = off
SET enable_indexscan = off
SET enable_bitmapscan = off
AS $$
    SELECT holder.id, holder.phone_shared, holder.holders > 1
    FROM unnest(tenants, phones) AS k (tenant_id, phone_e164)
    CROSS JOIN LATERAL (
        SELECT cu.id, cu.phone_shared, count(*) OVER () AS holders
        FROM customers cu
        WHERE cu.tenant_id = k.tenant_id AND cu.phone_e164 = k.phone_e164
        OFFSET 0
    ) holder
$$;

CREATE OR REPLACE FUNCTION customers_refresh_phone_shared() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    tenants uuid[];
    phones text[];
    ids bigint[];
    flags boolean[];
BEGIN
    IF pg_trigger_depth() > 1 THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(tenant_id), array_agg(phone_e164) INTO tenants, phones
        FROM (SELECT DISTINCT tenant_id, phone_e164 FROM new_rows WHERE phone_e164 IS NOT NULL) x;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(tenant_id), array_agg(phone_e164) INTO tenants, phones
        FROM (SELECT DISTINCT tenant_id, phone_e164 FROM old_rows WHERE phone_e164 IS NOT NULL) x;
    ELSE
        SELECT array_agg(tenant_id), array_agg(phone_e164) INTO tenants, phones
        FROM (
            SELECT DISTINCT changed.tenant_id, changed.phone_e164
            FROM (
                (SELECT id, tenant_id, phone_e164 FROM new_rows EXCEPT SELECT id, tenant_id, phone_e164 FROM old_rows)
                UNION ALL
                (SELECT id, tenant_id, phone_e164 FROM old_rows EXCEPT SELECT id, tenant_id, phone_e164 FROM new_rows)
            ) changed
            WHERE changed.phone_e164 IS NOT NULL
        ) x;
        SELECT array_agg(n.id) INTO ids FROM new_rows n WHERE n.phone_e164 IS NULL AND n.phone_shared;
        IF ids IS NOT NULL THEN
            UPDATE customers c SET phone_shared = false WHERE c.id = ANY (ids) AND c.phone_shared;
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
    SELECT array_agg(h.id), array_agg(h.shared) INTO ids, flags
    FROM customers_holding_numbers(tenants, phones) h
    WHERE h.phone_shared IS DISTINCT FROM h.shared;
    IF ids IS NOT NULL THEN
        UPDATE customers c SET phone_shared = f.shared
        FROM unnest(ids, flags) AS f (id, shared)
        WHERE c.id = f.id;
    END IF;
    RETURN NULL;
END
$$;
