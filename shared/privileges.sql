-- What each service's runtime role may do: re-applied after every migration run (idempotent:
-- everything is revoked, then granted again, in one transaction). Every table of the schema
-- must appear here (tests/security/test_database_roles.py fails naming any that does not).
--
-- Reads: every runtime role reads every table (reads are what the services are for). Rows: on
-- every tenant table row-level security (migration 1000) shows a runtime role only the rows of
-- the tenant its transaction names (wce.tenant_id, set by shared/db.py's tenant_transaction and
-- OneTenant), and none when no tenant is named; each query's own `tenant_id = $1` stays as well.
-- Writes: only what the service owns. Every writer of recipients appends to
-- recipient_state_deltas (the triggers of migration 1600 do, as the writing role).
--   segmenter  tenants, API keys, booking data, campaigns, the recipient snapshot, credits,
--              broker publishers, the audit log (append only), webhook endpoints, resent
--              webhook deliveries, messaging-limit counts (when the operator sets a tier)
--   tracker    delivery status (recipients), message events, callbacks, inbound messages,
--              opt-outs, the campaigns' recipient counts per state (folding their deltas), an API key's last use, outbound webhook deliveries and attempts,
--              an endpoint's failure run and its disabling (audited); never tenants, API keys
--              or campaigns
--   sender     recipient send state, message events, credit debits, opt-outs from error codes,
--              its maintenance lease, the tenants' pacing, the numbers' frequency-cap counts and
--              messaging-limit counts, and a running campaign's hold (never its state)
--   dispatcher nothing
--
-- Cross-tenant roles: wce_<service>_all_tenants (NOLOGIN, BYPASSRLS, the same grants as its
-- service, below; wce_<service> is a member so its logins may switch to it) is taken for one
-- transaction at a time by shared/db.py's all_tenants_transaction / AllTenants, and only by
-- these deliberately cross-tenant paths:
--   segmenter  authentication (the API key's hash names its tenant: shared/http.py), the
--              campaign monitor's listings of running campaigns and of completed ones with
--              recipients refused after completion (runner.py), starting scheduled
--              campaigns (campaigns.py start_due), the sending-window pass (clockwork.py), the
--              operator's audit listing and audit entries of no tenant (shared/audit.py), and
--              the re-encryption of every stored secret (reencrypt.py)
--   tracker    authentication (as the segmenter), status-callback batches spanning tenants and
--              the orphan matcher (callbacks.py), metrics sampling (observe.py), retention
--              (retention.py), the outbound-webhook feed of message events and the delivery
--              worker's lease expiry and fair claim (outbound_fanout.py, outbound_worker.py);
--              recording a delivery's attempt goes one tenant at a time
--   sender     the maintenance pass (lease expiry, reconciliation lookups, status re-checks, the
--              sweeper, frequency-cap retention: maintenance.py) and the campaign-state poll
--              of the campaigns it sends for (handlers.py); settling still goes one tenant at a
--              time
--   dispatcher the campaign-state monitor and the tenants' pacing records (scheduler.py)
-- Everything else runs for one tenant. Tables without tenant_id (tenants, api_key_last_use,
-- leader_leases, rate_limit_hits, auth_lockouts, webhook_feed) carry no policy.
-- The migration bookkeeping (schema_migrations, schema_migrations_lock) belongs to the owner.

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM
    wce_segmenter, wce_dispatcher, wce_sender, wce_tracker,
    wce_segmenter_all_tenants, wce_dispatcher_all_tenants, wce_sender_all_tenants, wce_tracker_all_tenants;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM
    wce_segmenter, wce_dispatcher, wce_sender, wce_tracker,
    wce_segmenter_all_tenants, wce_dispatcher_all_tenants, wce_sender_all_tenants, wce_tracker_all_tenants;
GRANT USAGE ON SCHEMA public TO
    wce_segmenter, wce_dispatcher, wce_sender, wce_tracker,
    wce_segmenter_all_tenants, wce_dispatcher_all_tenants, wce_sender_all_tenants, wce_tracker_all_tenants;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO
    wce_segmenter, wce_dispatcher, wce_sender, wce_tracker,
    wce_segmenter_all_tenants, wce_dispatcher_all_tenants, wce_sender_all_tenants, wce_tracker_all_tenants;
REVOKE SELECT ON schema_migrations_lock FROM
    wce_segmenter, wce_dispatcher, wce_sender, wce_tracker,
    wce_segmenter_all_tenants, wce_dispatcher_all_tenants, wce_sender_all_tenants, wce_tracker_all_tenants;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO
    wce_segmenter, wce_sender, wce_tracker, wce_segmenter_all_tenants, wce_sender_all_tenants, wce_tracker_all_tenants;

-- segmenter
GRANT INSERT, UPDATE, DELETE ON
    tenants, api_keys, customers, appointments, services, locations, staff, appointment_statuses,
    campaigns, recipients, suppressions, suppression_events, credit_accounts, credit_ledger,
    rate_limit_hits, auth_lockouts, broker_publishers, tenant_contacts, tenant_send_limits
TO wce_segmenter, wce_segmenter_all_tenants;
-- Every role that writes recipients appends their state changes (the triggers of migration 1600).
GRANT INSERT ON recipient_state_deltas TO
    wce_segmenter, wce_sender, wce_tracker, wce_segmenter_all_tenants, wce_sender_all_tenants, wce_tracker_all_tenants;
GRANT INSERT ON message_events, audit_log TO wce_segmenter, wce_segmenter_all_tenants;
GRANT INSERT, UPDATE, DELETE ON webhook_endpoints TO wce_segmenter, wce_segmenter_all_tenants;
GRANT INSERT ON webhook_deliveries TO wce_segmenter, wce_segmenter_all_tenants;
-- ANALYZE of the audience tables only, as their owner (migration 1500).
REVOKE ALL ON FUNCTION analyze_audience_tables(text[], bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION analyze_audience_tables(text[], bigint[]) TO wce_segmenter;
-- The audience triggers' helper runs as the owner; only the triggers call it (migration 1800).
REVOKE ALL ON FUNCTION refresh_customer_appointment_facts(bigint[]) FROM PUBLIC;

-- tracker
GRANT UPDATE ON recipients TO wce_tracker, wce_tracker_all_tenants;
GRANT INSERT, DELETE ON message_events, callback_receipts, inbound_messages, suppressions TO wce_tracker, wce_tracker_all_tenants;
GRANT INSERT, UPDATE, DELETE ON orphan_callbacks, rate_limit_hits, auth_lockouts TO wce_tracker, wce_tracker_all_tenants;
GRANT INSERT ON suppression_events TO wce_tracker, wce_tracker_all_tenants;
GRANT INSERT, UPDATE ON api_key_last_use TO wce_segmenter, wce_tracker, wce_segmenter_all_tenants, wce_tracker_all_tenants;
GRANT INSERT, UPDATE, DELETE ON webhook_deliveries, webhook_attempts TO wce_tracker, wce_tracker_all_tenants;
GRANT UPDATE ON webhook_endpoints, webhook_feed TO wce_tracker, wce_tracker_all_tenants;
GRANT INSERT ON audit_log TO wce_tracker, wce_tracker_all_tenants;
-- Folding the state deltas into the campaigns' counts (services/tracker/state_counts.py).
GRANT DELETE ON recipient_state_deltas TO wce_tracker, wce_tracker_all_tenants;
GRANT INSERT, UPDATE, DELETE ON recipient_state_counts TO wce_tracker, wce_tracker_all_tenants;

-- sender
GRANT UPDATE ON recipients, credit_accounts TO wce_sender, wce_sender_all_tenants;
GRANT INSERT ON message_events, credit_ledger, suppressions, suppression_events TO wce_sender, wce_sender_all_tenants;
GRANT INSERT, UPDATE, DELETE ON leader_leases, tenant_pacing, tenant_contacts, tenant_send_limits
TO wce_sender, wce_sender_all_tenants;
-- A campaign's hold (its tenant's messaging limit, a spam-rate refusal), never its state.
GRANT UPDATE (hold_reason, hold_until) ON campaigns TO wce_sender, wce_sender_all_tenants;
-- Its entries: extended by claims, deleted once no cap window can count them (retention).
GRANT INSERT, UPDATE, DELETE ON contact_frequency TO wce_sender, wce_sender_all_tenants;

-- Row-level security: every tenant table (one with a tenant_id column) is listed here and gets
-- the one policy of migration 1000, created where missing (a table that has it already is not
-- touched, so a run takes no lock on it). A table added by a later migration goes into this
-- list; tests/security/test_row_level_security.py fails for one that is not.
DO $$
DECLARE
    name text;
    isolated text := 'tenant_id = nullif(current_setting(''wce.tenant_id'', true), '''')::uuid';
BEGIN
    FOREACH name IN ARRAY ARRAY[
        'api_keys', 'appointment_statuses', 'appointments', 'audit_log', 'broker_publishers',
        'callback_receipts', 'campaigns', 'contact_frequency', 'credit_accounts', 'credit_ledger', 'customers',
        'inbound_messages', 'locations', 'message_events', 'orphan_callbacks', 'recipient_state_counts',
        'recipient_state_deltas', 'recipients',
        'services', 'staff', 'suppression_events', 'suppressions', 'tenant_contacts', 'tenant_pacing',
        'tenant_send_limits', 'webhook_attempts', 'webhook_deliveries', 'webhook_endpoints'
    ] LOOP
        IF NOT (SELECT relrowsecurity FROM pg_class WHERE oid = format('public.%I', name)::regclass) THEN
            EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', name);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = 'public' AND tablename = name
                       AND policyname = 'tenant_isolation') THEN
            EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (%s) WITH CHECK (%s)', name, isolated, isolated);
        END IF;
    END LOOP;
END
$$;

-- Tables not listed above (the audit of what reads and writes each table is in this file):
--   schema_migrations, schema_migrations_lock (owner only)
