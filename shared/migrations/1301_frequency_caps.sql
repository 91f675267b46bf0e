-- Frequency caps: a tenant may allow at most `frequency_cap_messages` marketing messages per
-- number in any `frequency_cap_days` days, across its campaigns (test and manual sends are exempt).
ALTER TABLE tenants
    ADD COLUMN frequency_cap_messages integer CHECK (frequency_cap_messages BETWEEN 1 AND 1000),
    ADD COLUMN frequency_cap_days integer CHECK (frequency_cap_days BETWEEN 1 AND 365),
    ADD CONSTRAINT tenants_frequency_cap_whole
        CHECK ((frequency_cap_messages IS NULL) = (frequency_cap_days IS NULL));

-- Why a recipient row ended `skipped` (today: `frequency_capped`).
ALTER TABLE recipients ADD COLUMN skip_reason text;

-- The marketing messages claimed for each number of a capped tenant within its window: the
-- recipient rows and when each was claimed (oldest first). The claim counts and extends a number's
-- row in the same statement, under the row's lock, so two senders claiming two campaigns for one
-- number at once are serialised on it and the second sees the first's message.
CREATE TABLE contact_frequency (
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    phone_e164    text NOT NULL,
    recipient_ids bigint[] NOT NULL,
    claimed_at    timestamptz[] NOT NULL,
    PRIMARY KEY (tenant_id, phone_e164)
);
