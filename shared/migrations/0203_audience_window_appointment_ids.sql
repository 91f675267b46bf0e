-- The snapshot of recent_bookers and upcoming reads each member's appointment (the one its
-- recipient carries) from the window's index in the same pass as the member: the indexes of the
-- two windows carry the appointment ids.
DROP INDEX appointments_audience_created;
CREATE INDEX appointments_audience_created ON appointments (tenant_id, created_at)
    INCLUDE (customer_id, id, service_id, location_id, status);

DROP INDEX appointments_audience_starts;
CREATE INDEX appointments_audience_starts ON appointments (tenant_id, starts_at)
    INCLUDE (customer_id, id, service_id, location_id, status);
