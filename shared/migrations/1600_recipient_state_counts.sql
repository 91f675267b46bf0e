-- A campaign's recipients per state, kept as they change instead of counted on every read: the
-- progress of a campaign of a million recipients took count(*) GROUP BY state over all its rows
-- (about 0.4 s) on every progress request and every stream tick.
--
-- Every statement that inserts, updates or deletes recipients appends one row per (campaign,
-- state) it changed to recipient_state_deltas (statement-level triggers over the transition
-- tables). Writers only append, so concurrent senders and tracker batches never wait on a shared
-- counter row and cannot deadlock on one. The tracker folds the deltas into
-- recipient_state_counts (one row per campaign and state) in the background, one fold at a time
-- under an advisory lock (services/tracker/state_counts.py). A count is the base row plus the
-- deltas not folded yet, read in one statement, so a fold never shows a reader a change twice or
-- not at all.
--
-- Neither table references campaigns: a foreign-key check from a trigger would take a key-share
-- lock on the campaign row in every recipient write, and a campaign locked FOR UPDATE while its
-- recipients are changed would then deadlock against its own senders. Deleting a campaign (or its
-- tenant) deletes its recipients, whose trigger appends the matching negative deltas: its counts
-- fold to zero and the fold removes rows at zero. TRUNCATE of recipients empties both tables.

CREATE TABLE recipient_state_counts (
    campaign_id uuid NOT NULL,
    state       text NOT NULL,
    tenant_id   uuid NOT NULL,
    n           bigint NOT NULL,
    PRIMARY KEY (campaign_id, state)
);

CREATE TABLE recipient_state_deltas (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id uuid NOT NULL,
    state       text NOT NULL,
    tenant_id   uuid NOT NULL,
    delta       bigint NOT NULL
);
CREATE INDEX recipient_state_deltas_campaign ON recipient_state_deltas (campaign_id, state);
-- Appended and deleted within seconds: vacuumed often, so the campaign index stays small.
ALTER TABLE recipient_state_deltas SET (autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 5000,
                                        autovacuum_vacuum_insert_scale_factor = 0.0,
                                        autovacuum_vacuum_insert_threshold = 5000);

-- SECURITY INVOKER (the default): the writer's own role appends, under its row-level security,
-- and the grants of shared/privileges.sql say which roles may.
CREATE FUNCTION recipient_state_deltas_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO recipient_state_deltas (campaign_id, state, tenant_id, delta)
    SELECT campaign_id, state, tenant_id, count(*) FROM new_rows GROUP BY campaign_id, state, tenant_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION recipient_state_deltas_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO recipient_state_deltas (campaign_id, state, tenant_id, delta)
    SELECT campaign_id, state, tenant_id, -count(*) FROM old_rows GROUP BY campaign_id, state, tenant_id;
    RETURN NULL;
END
$$;

-- Most updates of recipients leave the state as it is (timestamps, leases, SIDs, status
-- re-checks): each row counts -1 for its old state and +1 for its new one, so an unchanged row
-- nets to nothing and a statement that changed no state appends nothing. (An UPDATE OF state
-- trigger cannot have transition tables; pairing the rows by id would cost a join.)
CREATE FUNCTION recipient_state_deltas_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO recipient_state_deltas (campaign_id, state, tenant_id, delta)
    SELECT campaign_id, state, tenant_id, sum(delta)
    FROM (
        SELECT campaign_id, state, tenant_id, -1 AS delta FROM old_rows
        UNION ALL
        SELECT campaign_id, state, tenant_id, 1 FROM new_rows
    ) changed
    GROUP BY campaign_id, state, tenant_id
    HAVING sum(delta) <> 0;
    RETURN NULL;
END
$$;

CREATE FUNCTION recipient_state_counts_after_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE recipient_state_deltas, recipient_state_counts;
    RETURN NULL;
END
$$;

-- Taking the triggers' lock first keeps recipients unchanged until this migration commits, so the
-- backfill below and the triggers' deltas neither miss nor repeat a row.
CREATE TRIGGER recipient_state_deltas_insert AFTER INSERT ON recipients
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION recipient_state_deltas_after_insert();
CREATE TRIGGER recipient_state_deltas_update AFTER UPDATE ON recipients
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION recipient_state_deltas_after_update();
CREATE TRIGGER recipient_state_deltas_delete AFTER DELETE ON recipients
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION recipient_state_deltas_after_delete();
CREATE TRIGGER recipient_state_counts_truncate AFTER TRUNCATE ON recipients
    FOR EACH STATEMENT EXECUTE FUNCTION recipient_state_counts_after_truncate();

INSERT INTO recipient_state_counts (campaign_id, state, tenant_id, n)
SELECT campaign_id, state, tenant_id, count(*) FROM recipients GROUP BY campaign_id, state, tenant_id;
