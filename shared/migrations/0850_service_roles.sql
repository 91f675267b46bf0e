-- The runtime roles, one per service (README "Database roles and migrations"). They are group
-- roles without LOGIN: an operator creates a login user per deployment IN ROLE wce_<service>
-- (or lets the database operator manage them). Their grants are in shared/privileges.sql,
-- re-applied by every migration run, so a table added later gets its grants in one place.
-- Creating them needs CREATEROLE; where the owner role has none, create them beforehand.
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['wce_segmenter', 'wce_dispatcher', 'wce_sender', 'wce_tracker'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created meanwhile by a migration of another database on this server
            END;
        END IF;
    END LOOP;
END
$$;
