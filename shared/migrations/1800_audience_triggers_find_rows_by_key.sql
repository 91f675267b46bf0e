-- The audience triggers find the customers they refresh by key, whatever the statistics say.
--
-- A batch of customers written into a tenant the statistics have not seen yet (analysed when the
-- table held many small tenants, so each tenant "has" a row or two) was planned as a walk of the
-- whole tenant for each number of the batch: the tenant's row-level security condition offered
-- an index on the tenant alone, estimated at one row. A batch of 5,000 into a tenant of 10,000
-- read 50 million rows (23 s); the customer upsert of 10,000 rows timed out at 60 s.
--
-- The trigger functions and their helper now run as their owner (SECURITY DEFINER), so no tenant
-- condition is added to their statements: they touch only the rows found from the transition
-- tables of a statement the caller was allowed to make. Then:
-- - a customer's facts are found by its id, and its appointments by ``appointments.customer_id``
--   alone, which only the index leading with it serves (customer ids are unique across tenants);
-- - the customers holding the statement's numbers are read in one statement per tenant with no
--   join, planned for the numbers at hand (``plan_cache_mode``): an index on the tenant alone
--   can look as cheap as the one on (tenant, number) when the statistics hide the tenant, and
--   its worst is then one pass over the tenant, never one per number.
-- ``jit`` is off in them: a plan estimated large (a generic plan, a big batch) would otherwise be
-- compiled for a statement that runs in a millisecond.

CREATE OR REPLACE FUNCTION refresh_customer_appointment_facts(customer_ids bigint[]) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
SET jit = off
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

-- Its body is unchanged (migration 0201); it runs as the owner to call the helper above.
ALTER FUNCTION appointments_refresh_facts()
    SECURITY DEFINER SET search_path = public, pg_temp SET jit = off;

CREATE OR REPLACE FUNCTION customers_refresh_phone_shared() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
SET jit = off
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    tenants uuid[];
    phones text[];
    tenant uuid;
    tenant_phones text[];
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
    -- The holders of the statement's numbers, a tenant at a time (one, but for a cross-tenant
    -- delete): one statement with no join, whose worst plan reads the tenant once.
    FOR tenant IN SELECT DISTINCT t FROM unnest(tenants) AS t LOOP
        SELECT array_agg(tp.p) INTO tenant_phones FROM unnest(tenants, phones) AS tp (t, p) WHERE tp.t = tenant;
        SELECT array_agg(h.id), array_agg(h.shared) INTO ids, flags
        FROM (
            SELECT cu.id, cu.phone_shared, count(*) OVER (PARTITION BY cu.phone_e164) > 1 AS shared
            FROM customers cu
            WHERE cu.tenant_id = tenant AND cu.phone_e164 = ANY (tenant_phones)
        ) h
        WHERE h.phone_shared IS DISTINCT FROM h.shared;
        IF ids IS NOT NULL THEN
            UPDATE customers c SET phone_shared = f.shared
            FROM unnest(ids, flags) AS f (id, shared)
            WHERE c.id = f.id;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
