-- Transition tables have neither indexes nor statistics, so joining OLD and NEW rows on id
-- becomes a nested loop that takes minutes on a large statement. The changed rows are found with
-- set operations instead (hashed), and the phone trigger skips the nested updates of customers
-- made by these triggers themselves, which never change a phone.

CREATE OR REPLACE FUNCTION appointments_refresh_facts() RETURNS trigger
LANGUAGE plpgsql AS $$
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

CREATE OR REPLACE FUNCTION customers_refresh_phone_shared() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    tenants uuid[];
    phones text[];
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
        IF EXISTS (SELECT 1 FROM new_rows WHERE phone_e164 IS NULL AND phone_shared) THEN
            UPDATE customers c SET phone_shared = false
            WHERE c.id IN (SELECT n.id FROM new_rows n WHERE n.phone_e164 IS NULL AND n.phone_shared);
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
