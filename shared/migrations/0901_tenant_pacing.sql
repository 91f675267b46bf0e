-- A tenant's effective send rate, shared by every dispatcher and sender: the fraction of its
-- configured rate in force at `changed_at` (after its last back-off), recovering from there at a
-- fixed pace (shared/pacing.py), and how long to send nothing after a Retry-After. No row: the
-- configured rate applies.
CREATE TABLE tenant_pacing (
    tenant_id uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    factor double precision NOT NULL CHECK (factor > 0 AND factor <= 1),
    changed_at timestamptz NOT NULL DEFAULT now(),
    hold_until timestamptz,
    backoffs bigint NOT NULL DEFAULT 1
);
