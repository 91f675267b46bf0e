-- Outbound webhooks: endpoints a tenant registers, the deliveries of events to them (durable
-- retry schedule) and every attempt's answer, and the position of the feed that turns message
-- events into deliveries.

CREATE TABLE webhook_endpoints (
    id                   uuid PRIMARY KEY,
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url                  text NOT NULL,
    description          text NOT NULL DEFAULT '',
    event_types          text[] NOT NULL,
    -- The signing secret, encrypted like the tenants' Twilio tokens (shown to the tenant once).
    secret_enc           text NOT NULL,
    enabled              boolean NOT NULL DEFAULT true,
    disabled_at          timestamptz,
    disabled_reason      text,
    -- The current run of failed attempts: since when, and how many (reset by a success).
    failing_since        timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at);

CREATE TABLE webhook_deliveries (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id         uuid NOT NULL,
    endpoint_id       uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- The event's own id: the same for a resend, so receivers can recognise a repeat.
    event_id          text NOT NULL,
    event_type        text NOT NULL,
    -- The exact JSON body that is signed and sent.
    body              text NOT NULL,
    state             text NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'delivering', 'succeeded', 'failed')),
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    lease_until       timestamptz,
    last_attempt_at   timestamptz,
    last_status_code  integer,
    last_response     text,
    last_error        text,
    resend_of         bigint REFERENCES webhook_deliveries (id) ON DELETE SET NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
-- An event reaches an endpoint once (a redelivered broker message or a re-read feed finds it
-- there); a resend is a new delivery of the same event.
CREATE UNIQUE INDEX webhook_deliveries_once ON webhook_deliveries (endpoint_id, event_id)
    WHERE resend_of IS NULL;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at, id)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_in_flight ON webhook_deliveries (lease_until)
    WHERE state = 'delivering';
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant_id, id);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_updated_at ON webhook_deliveries (updated_at)
    WHERE state IN ('succeeded', 'failed');

CREATE TABLE webhook_attempts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       uuid NOT NULL,
    delivery_id     bigint NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt         integer NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    duration_ms     integer NOT NULL,
    status_code     integer,
    response        text,
    error           text
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);

-- How far the feed has read message_events: every id up to ``position`` was read, except the
-- ``gaps`` (ranges of ids not visible yet, as [low, high, first seen epoch]: a transaction that
-- had not committed, or one that rolled back), which are looked at again until they settle.
CREATE TABLE webhook_feed (
    name     text PRIMARY KEY,
    position bigint NOT NULL,
    gaps     jsonb NOT NULL DEFAULT '[]'
);
-- Deliveries start with the events that come after this release: the history is not replayed.
INSERT INTO webhook_feed (name, position) SELECT 'message_events', COALESCE(max(id), 0) FROM message_events;
