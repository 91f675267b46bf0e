-- WhatsApp messaging limits: a tenant's sender may start conversations with at most its tier of
-- unique numbers in a moving window (24 h), across all its campaigns and sends. NULL: unlimited.
-- Set by the operator only, like the rate.
ALTER TABLE tenants ADD COLUMN messaging_limit integer
    CHECK (messaging_limit IN (250, 1000, 2000, 10000, 100000));

-- A running campaign that waits (its tenant's messaging limit is reached, its sender was told to
-- slow down for spam, its tenant's sending window is closed): why, and when it is expected to go
-- on. Not a state: a held campaign is still `running` (pause, resume and cancel work as always).
-- The sender's holds end by themselves: when `hold_until` has passed, its maintenance clears them
-- and publishes the campaign's waiting recipients again. The sending-window migration adds the
-- same two columns; whichever runs first adds them.
ALTER TABLE campaigns ADD COLUMN IF NOT EXISTS hold_reason text,
                      ADD COLUMN IF NOT EXISTS hold_until timestamptz;
CREATE INDEX campaigns_held ON campaigns (hold_until) WHERE hold_until IS NOT NULL;

-- The numbers a limited tenant messaged, each with its last claim: a number counts against the
-- limit while that is inside the window. Written by the claim, under the lock below.
CREATE TABLE tenant_contacts (
    tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    phone_e164        text NOT NULL,
    last_contacted_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, phone_e164)
);
CREATE INDEX tenant_contacts_by_time ON tenant_contacts (tenant_id, last_contacted_at);

-- One row per tenant that has a limit (or a hold): the lock every claim of a limited tenant takes,
-- and the number of its contacts inside the window at `counted_at` (the last claim's time), kept
-- up to date by each claim (contacts that left the window since are counted off), so that no
-- claim counts the whole window. Claims take their time as the later of now and `counted_at`,
-- so the count moves forward only, whatever order their transactions began in.
-- `hold_*`: the whole tenant waits (its sender was refused for spam, 131048).
CREATE TABLE tenant_send_limits (
    tenant_id    uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    in_window    integer NOT NULL DEFAULT 0 CHECK (in_window >= 0),
    counted_at   timestamptz NOT NULL DEFAULT now(),
    hold_reason  text,
    hold_until   timestamptz
);
