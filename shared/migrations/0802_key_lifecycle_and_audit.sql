-- API keys get a name, an optional expiry and the time of their last use, so a tenant can hold
-- several (one per integration), rotate one with an overlap and see which are still used.
ALTER TABLE api_keys
    ADD COLUMN name         text NOT NULL DEFAULT 'default',
    ADD COLUMN expires_at   timestamptz,
    ADD COLUMN last_used_at timestamptz;

-- Who did what, when, to which tenant: operator actions and API key changes.
CREATE TABLE audit_log (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,
    action    text NOT NULL,
    tenant_id uuid,
    detail    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);
CREATE INDEX audit_log_action ON audit_log (action, id);
