-- What each service's runtime role may do: re-applied after every migration run (idempotent:
-- everything is revoked, then granted again, in one transaction). Every table of the schema
-- must appear here (tests/security/test_database_roles.py fails naming any that does not).
--
-- Reads: every runtime role reads every table (reads are what the services are for; isolation
-- between tenants is each query's tenant predicate). Writes: only what the service owns.
--   segmenter  tenants, API keys, booking data, campaigns, the recipient snapshot, credits,
--              broker publishers, the audit log (append only), webhook endpoints, resent
--              webhook deliveries, messaging-limit counts (when the operator sets a tier)
--   tracker    delivery status (recipients), message events, callbacks, inbound messages,
--              opt-outs, an API key's last use, outbound webhook deliveries and attempts,
--              an endpoint's failure run and its disabling (audited); never tenants, API keys
--              or campaigns
--   sender     recipient send state, message events, credit debits, opt-outs from error codes,
--              its maintenance lease, the tenants' pacing and messaging-limit counts, and a
--              running campaign's hold (never its state)
--   dispatcher nothing
-- The migration bookkeeping (schema_migrations, schema_migrations_lock) belongs to the owner.

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM wce_segmenter, wce_dispatcher, wce_sender, wce_tracker;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM wce_segmenter, wce_dispatcher, wce_sender, wce_tracker;
GRANT USAGE ON SCHEMA public TO wce_segmenter, wce_dispatcher, wce_sender, wce_tracker;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO wce_segmenter, wce_dispatcher, wce_sender, wce_tracker;
REVOKE SELECT ON schema_migrations_lock FROM wce_segmenter, wce_dispatcher, wce_sender, wce_tracker;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO wce_segmenter, wce_sender, wce_tracker;

-- segmenter
GRANT INSERT, UPDATE, DELETE ON
    tenants, api_keys, customers, appointments, services, locations, staff, appointment_statuses,
    campaigns, recipients, suppressions, suppression_events, credit_accounts, credit_ledger,
    rate_limit_hits, auth_lockouts, broker_publishers, tenant_contacts, tenant_send_limits
TO wce_segmenter;
GRANT INSERT ON message_events, audit_log TO wce_segmenter;
GRANT INSERT, UPDATE, DELETE ON webhook_endpoints TO wce_segmenter;
GRANT INSERT ON webhook_deliveries TO wce_segmenter;
-- ANALYZE of the audience tables only, as their owner (migration 1500).
REVOKE ALL ON FUNCTION analyze_audience_tables(text[], bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION analyze_audience_tables(text[], bigint[]) TO wce_segmenter;

-- tracker
GRANT UPDATE ON recipients TO wce_tracker;
GRANT INSERT, DELETE ON message_events, callback_receipts, inbound_messages, suppressions TO wce_tracker;
GRANT INSERT, UPDATE, DELETE ON orphan_callbacks, rate_limit_hits, auth_lockouts TO wce_tracker;
GRANT INSERT ON suppression_events TO wce_tracker;
GRANT INSERT, UPDATE ON api_key_last_use TO wce_segmenter, wce_tracker;
GRANT INSERT, UPDATE, DELETE ON webhook_deliveries, webhook_attempts TO wce_tracker;
GRANT UPDATE ON webhook_endpoints, webhook_feed TO wce_tracker;
GRANT INSERT ON audit_log TO wce_tracker;

-- sender
GRANT UPDATE ON recipients, credit_accounts TO wce_sender;
GRANT INSERT ON message_events, credit_ledger, suppressions, suppression_events TO wce_sender;
GRANT INSERT, UPDATE, DELETE ON leader_leases, tenant_pacing, tenant_contacts, tenant_send_limits TO wce_sender;
-- A campaign's hold (its tenant's messaging limit, a spam-rate refusal), never its state.
GRANT UPDATE (hold_reason, hold_until) ON campaigns TO wce_sender;

-- Tables not listed above (the audit of what reads and writes each table is in this file):
--   schema_migrations, schema_migrations_lock (owner only)
