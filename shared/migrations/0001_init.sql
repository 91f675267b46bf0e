-- Initial schema. Every table holding tenant data carries tenant_id; every query filters on it.

CREATE TABLE tenants (
    id                    uuid PRIMARY KEY,
    name                  text NOT NULL,
    twilio_account_sid    text NOT NULL,
    twilio_auth_token_enc text NOT NULL,
    whatsapp_from         text NOT NULL,
    messaging_service_sid text,
    rate_per_second       integer CHECK (rate_per_second IS NULL OR rate_per_second > 0),
    timezone              text NOT NULL DEFAULT 'UTC',
    default_region        text NOT NULL DEFAULT 'US',
    locale                text NOT NULL DEFAULT 'en_US',
    business_name         text,
    test_numbers          text[] NOT NULL DEFAULT '{}',
    opt_out_keywords      text[] NOT NULL DEFAULT '{}',
    opt_in_keywords       text[] NOT NULL DEFAULT '{}',
    active                boolean NOT NULL DEFAULT true,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX tenants_account_sid ON tenants (twilio_account_sid, id);

CREATE TABLE api_keys (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_hash   text NOT NULL UNIQUE,
    prefix     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- Booking read model ------------------------------------------------------------------------

CREATE TABLE services (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    external_id text NOT NULL,
    name        text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, external_id)
);

CREATE TABLE locations (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    external_id text NOT NULL,
    name        text NOT NULL,
    address     text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, external_id)
);

CREATE TABLE staff (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    external_id text NOT NULL,
    name        text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, external_id)
);

CREATE TABLE customers (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    external_id text NOT NULL,
    first_name  text NOT NULL DEFAULT '',
    last_name   text NOT NULL DEFAULT '',
    email       text,
    phone_raw   text,
    -- NULL when phone_raw is missing or cannot be parsed as a valid number (kept, flagged).
    phone_e164  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, external_id)
);
CREATE INDEX customers_tenant_phone ON customers (tenant_id, phone_e164);

-- Built-in statuses are approved, pending, canceled, rejected; tenants may add their own.
CREATE TABLE appointment_statuses (
    tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name              text NOT NULL,
    counts_as_cancelled boolean NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE appointments (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    external_id       text NOT NULL,
    customer_id       bigint NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    service_id        bigint REFERENCES services (id) ON DELETE SET NULL,
    location_id       bigint REFERENCES locations (id) ON DELETE SET NULL,
    staff_id          bigint REFERENCES staff (id) ON DELETE SET NULL,
    starts_at         timestamptz NOT NULL,
    ends_at           timestamptz,
    created_at        timestamptz NOT NULL,
    status            text NOT NULL,
    status_changed_at timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, external_id)
);
CREATE INDEX appointments_customer ON appointments (tenant_id, customer_id, starts_at);

-- Suppression (opt-outs) -----------------------------------------------------------------------

CREATE TABLE suppressions (
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    phone_e164 text NOT NULL,
    source     text NOT NULL CHECK (source IN ('manual', 'import', 'inbound', 'error_code', 'api')),
    reason     text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, phone_e164)
);

CREATE TABLE suppression_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    phone_e164 text NOT NULL,
    action     text NOT NULL CHECK (action IN ('added', 'removed')),
    source     text NOT NULL,
    reason     text,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX suppression_events_tenant ON suppression_events (tenant_id, at);

-- Campaigns and recipients --------------------------------------------------------------------

CREATE TABLE campaigns (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name            text NOT NULL,
    kind            text NOT NULL DEFAULT 'campaign' CHECK (kind IN ('campaign', 'test', 'manual')),
    audience        jsonb NOT NULL,
    template        jsonb NOT NULL,
    options         jsonb NOT NULL DEFAULT '{}',
    state           text NOT NULL DEFAULT 'draft'
                    CHECK (state IN ('draft', 'snapshotting', 'running', 'paused', 'completed',
                                     'cancelled', 'failed')),
    pause_reason    text,
    idempotency_key text,
    total           integer NOT NULL DEFAULT 0,
    -- Highest recipient id handed to the broker by the progressive publisher.
    published_upto  bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    paused_at       timestamptz,
    completed_at    timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX campaigns_tenant ON campaigns (tenant_id, created_at DESC);
CREATE INDEX campaigns_active ON campaigns (state) WHERE state IN ('snapshotting', 'running', 'paused');

CREATE TABLE recipients (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id          uuid NOT NULL,
    campaign_id        uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    customer_id        bigint,
    appointment_id     bigint,
    phone_e164         text NOT NULL,
    -- Per-recipient values for sends without a customer row (manual and test sends).
    vars               jsonb,
    state              text NOT NULL DEFAULT 'pending'
                       CHECK (state IN ('pending', 'queued', 'sending', 'retry_wait', 'unknown', 'sent',
                                        'delivered', 'read', 'undelivered', 'failed_delivery', 'failed',
                                        'suppressed', 'skipped', 'cancelled')),
    attempts           integer NOT NULL DEFAULT 0,
    lease_until        timestamptz,
    error_code         integer,
    error_message      text,
    twilio_sid         text,
    claimed_at         timestamptz,
    sent_at            timestamptz,
    delivered_at       timestamptz,
    read_at            timestamptz,
    failed_at          timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, phone_e164)
);
CREATE INDEX recipients_campaign_state ON recipients (campaign_id, state);
CREATE INDEX recipients_tenant_campaign_id ON recipients (tenant_id, campaign_id, id);
CREATE UNIQUE INDEX recipients_twilio_sid ON recipients (twilio_sid) WHERE twilio_sid IS NOT NULL;
CREATE INDEX recipients_unsettled ON recipients (state, lease_until)
    WHERE state IN ('sending', 'unknown', 'retry_wait');

-- Append-only log of every recipient state change.
CREATE TABLE message_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    uuid NOT NULL,
    campaign_id  uuid NOT NULL,
    recipient_id bigint NOT NULL,
    from_state   text,
    to_state     text NOT NULL,
    source       text NOT NULL,
    error_code   integer,
    detail       text,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_events_recipient ON message_events (tenant_id, recipient_id, id);
CREATE INDEX message_events_at ON message_events (at);

-- Status callbacks ------------------------------------------------------------------------------

-- Replay protection: one row per distinct callback (idempotency token, else sid + status).
CREATE TABLE callback_receipts (
    tenant_id   uuid NOT NULL,
    dedupe_key  text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, dedupe_key)
);

-- Callbacks whose MessageSid matched no recipient yet (kept for later matching).
CREATE TABLE orphan_callbacks (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    message_sid text NOT NULL,
    status      text NOT NULL,
    error_code  integer,
    payload     jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    matched_at  timestamptz
);
CREATE INDEX orphan_callbacks_sid ON orphan_callbacks (tenant_id, message_sid) WHERE matched_at IS NULL;

CREATE TABLE inbound_messages (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    message_sid text NOT NULL,
    phone_e164  text NOT NULL,
    body        text NOT NULL,
    action      text,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, message_sid)
);

-- Credits --------------------------------------------------------------------------------------

CREATE TABLE credit_accounts (
    tenant_id         uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    enabled           boolean NOT NULL DEFAULT true,
    plan_monthly      integer NOT NULL DEFAULT 0 CHECK (plan_monthly >= 0),
    plan_balance      integer NOT NULL DEFAULT 0 CHECK (plan_balance >= 0),
    plan_period_start date NOT NULL DEFAULT date_trunc('month', now())::date,
    purchased_balance integer NOT NULL DEFAULT 0 CHECK (purchased_balance >= 0),
    -- Credits held by claimed recipients whose send outcome is not known yet.
    reserved          integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE credit_ledger (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('plan_grant', 'plan_expiry', 'topup', 'debit', 'adjustment')),
    bucket       text NOT NULL CHECK (bucket IN ('plan', 'purchased')),
    amount       integer NOT NULL,
    campaign_id  uuid,
    recipient_id bigint,
    note         text,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX credit_ledger_tenant ON credit_ledger (tenant_id, id);
CREATE UNIQUE INDEX credit_ledger_one_debit ON credit_ledger (recipient_id) WHERE kind = 'debit';
