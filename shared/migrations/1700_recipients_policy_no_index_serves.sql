-- The tenant policy on recipients, written so that no index can serve it.
--
-- The policy's condition (tenant_id = the transaction's tenant) is added to every statement on the
-- table, and the planner may use it as an index condition: on recipients, the index that leads with
-- tenant_id (recipients_tenant_campaign_id). The engine's hot statements find their rows by primary
-- key and write their own tenant conditions so that no index matches them (IS NOT DISTINCT FROM,
-- IS TRUE: services/sender/queries.py), because a new campaign's statistics are always stale. The
-- policy reopened that door: with statistics that still counted a few hundred rows for the tenant,
-- every claim ANDed a bitmap of all the tenant's rows with the chunk's ids, and every settlement
-- walked the whole campaign (1-7 s each at 30,000 recipients, growing with the tenant's rows).
--
-- Wrapped in IS TRUE, the condition is only a filter: rows are still visible exactly when the
-- tenant matches (NULL, an unset tenant, is not TRUE), and writes are checked the same way.
ALTER POLICY tenant_isolation ON recipients
    USING ((tenant_id = nullif(current_setting('wce.tenant_id', true), '')::uuid) IS TRUE)
    WITH CHECK ((tenant_id = nullif(current_setting('wce.tenant_id', true), '')::uuid) IS TRUE);
