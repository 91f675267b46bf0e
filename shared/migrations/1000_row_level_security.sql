-- Row-level security on every tenant table (every table with a tenant_id column): the runtime
-- roles see and write only the rows of the tenant named by the transaction-local setting
-- wce.tenant_id, and no row at all while it is unset. Isolation no longer rests on each query's
-- `tenant_id = $1` alone: a statement that forgets its predicate finds nothing of another tenant,
-- and a write naming another tenant is refused (WITH CHECK).
--
-- Why a transaction-local setting: it never outlives the transaction, so it is safe behind a
-- transaction-mode PgBouncer and on pooled connections (no session state to reset). The services
-- name the tenant in the same message as their BEGIN (shared/db.py, tenant_transaction): a path
-- that already ran in a transaction sends no extra round trip; a single statement becomes
-- BEGIN+setting, the statement, COMMIT. Why not fold the setting into the statement itself: the
-- policy's qualifier is evaluated inside the scans, and nothing orders a set_config in a CTE or
-- subquery before them.
--
-- The owner (migrations, and the development default of connecting as the owner or a superuser)
-- is not subject to the policies: row-level security is ENABLEd, not FORCEd.
--
-- The deliberately cross-tenant paths (maintenance passes, lease expiry, reconciliation, the
-- sweeper, metrics sampling, the campaign monitor, authentication by API-key hash, batches of
-- callbacks spanning tenants, retention, operator listings) switch, for their transaction only, to
-- their service's cross-tenant role wce_<service>_all_tenants: NOLOGIN, BYPASSRLS, the same grants
-- as its service (shared/privileges.sql), and granted to wce_<service> so that the service's login
-- may SET ROLE to it. BYPASSRLS is never inherited, so a login only bypasses the policies inside
-- such a transaction. The list of those paths is in shared/privileges.sql's header and the README.
--
-- Creating a BYPASSRLS role needs a superuser: where the owner is not one, create the four roles
-- beforehand (CREATE ROLE wce_sender_all_tenants NOLOGIN BYPASSRLS; GRANT wce_sender_all_tenants
-- TO wce_sender; and so on for segmenter, tracker, dispatcher).

DO $$
DECLARE
    service text;
    name text;
BEGIN
    FOREACH service IN ARRAY ARRAY['segmenter', 'dispatcher', 'sender', 'tracker'] LOOP
        name := 'wce_' || service || '_all_tenants';
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN BYPASSRLS', name);
            EXCEPTION
                WHEN duplicate_object OR unique_violation THEN
                    NULL;  -- created meanwhile by a migration of another database on this server
                WHEN insufficient_privilege THEN
                    RAISE EXCEPTION 'creating role % needs a superuser (it bypasses row-level security)', name
                        USING HINT = format('as a superuser: CREATE ROLE %I NOLOGIN BYPASSRLS; GRANT %I TO %I;'
                                            ' (for each of segmenter, dispatcher, sender, tracker), then migrate again',
                                            name, name, 'wce_' || service);
            END;
        END IF;
        IF NOT pg_has_role('wce_' || service, name, 'MEMBER') THEN
            EXECUTE format('GRANT %I TO %I', name, 'wce_' || service);
        END IF;
    END LOOP;
END
$$;

-- One policy per tenant table, the same everywhere. shared/privileges.sql (applied after every
-- migration run) keeps the complete list and creates the policy where it is missing, so a tenant
-- table added by a later migration is covered by adding it there
-- (tests/security/test_row_level_security.py fails, saying so, for one that is not).
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY[
        'api_keys', 'appointment_statuses', 'appointments', 'audit_log', 'broker_publishers',
        'callback_receipts', 'campaigns', 'credit_accounts', 'credit_ledger', 'customers',
        'inbound_messages', 'locations', 'message_events', 'orphan_callbacks', 'recipients',
        'services', 'staff', 'suppression_events', 'suppressions', 'tenant_pacing'
    ] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', name);
        EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON %I', name);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I'
            ' USING (tenant_id = nullif(current_setting(''wce.tenant_id'', true), '''')::uuid)'
            ' WITH CHECK (tenant_id = nullif(current_setting(''wce.tenant_id'', true), '''')::uuid)',
            name
        );
    END LOOP;
END
$$;
