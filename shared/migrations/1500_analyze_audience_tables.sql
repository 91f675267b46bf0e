-- Fresh planner statistics for the tables the audience queries read, on the segmenter's request.
-- Right after a bulk load the planner still believes the tables hold what they held at their last
-- ANALYZE (nothing, for a new deployment) and picks plans that take seconds instead of
-- milliseconds; autovacuum gets there, but later, and not at all where it is turned off. ANALYZE
-- needs the table's owner (PostgreSQL 16 and older have no grantable MAINTAIN privilege), and the
-- services connect as runtime roles that own nothing, so this function runs as its owner. It
-- analyses only the audience tables named in its body, whatever it is asked; EXECUTE is granted to
-- the segmenter alone (shared/privileges.sql). The segmenter decides when a table is stale
-- (services/segmenter/audience/statistics.py).
--
-- ``seen_analyses[i]`` is analyze_count + autoanalyze_count of ``tables[i]`` when the caller found
-- it stale. One analysis of a table runs at a time on the whole server (an advisory lock per
-- table): a caller that waited for another's finds the count moved and does not analyse again.
-- ANALYZE takes SHARE UPDATE EXCLUSIVE, which blocks no reads and no writes; it waits only for
-- VACUUM, another ANALYZE, index builds and schema changes, so the wait is bounded by lock_timeout
-- (an autovacuum in the way is cancelled by the server after deadlock_timeout).

CREATE FUNCTION analyze_audience_tables(tables text[], seen_analyses bigint[]) RETURNS text[]
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '20s'
AS $$
DECLARE
    audience_tables CONSTANT text[] := ARRAY[
        'appointment_statuses', 'appointments', 'customers', 'locations', 'services', 'suppressions'
    ];
    refused text[];
    wanted record;
    analyses bigint;
    analysed text[] := '{}';
BEGIN
    IF cardinality(tables) IS DISTINCT FROM cardinality(seen_analyses) THEN
        RAISE EXCEPTION 'analyze_audience_tables: one seen count per table is needed'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT array_agg(t) INTO refused FROM unnest(tables) AS t WHERE t IS NULL OR NOT t = ANY (audience_tables);
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION 'analyze_audience_tables: not an audience table: %', array_to_string(refused, ', ', 'NULL')
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- In name order, so two callers wanting several tables take the locks in the same order.
    FOR wanted IN
        SELECT t.name, min(t.seen) AS seen FROM unnest(tables, seen_analyses) AS t (name, seen)
        GROUP BY t.name ORDER BY t.name
    LOOP
        PERFORM pg_advisory_xact_lock(hashtext('wce.analyze_audience_tables'), hashtext(wanted.name));
        -- Read the counters as they are now, not as this transaction first saw them.
        PERFORM pg_stat_clear_snapshot();
        SELECT s.analyze_count + s.autoanalyze_count INTO analyses
        FROM pg_stat_user_tables s WHERE s.schemaname = 'public' AND s.relname = wanted.name;
        IF coalesce(analyses, 0) > coalesce(wanted.seen, 0) THEN
            CONTINUE;  -- analysed by someone else since the caller looked
        END IF;
        EXECUTE format('ANALYZE public.%I', wanted.name);
        analysed := analysed || wanted.name;
    END LOOP;
    RETURN analysed;
END
$$;

REVOKE ALL ON FUNCTION analyze_audience_tables(text[], bigint[]) FROM PUBLIC;
