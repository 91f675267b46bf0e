-- Access paths of the audience queries (services/segmenter/audience/query.py) at a million
-- customers: every scan they make is answered from an index alone, without visiting the rows.
--
-- customers: the phone index carries the facts, so the preview's sample and the snapshot walk
-- customers in phone order and test the facts there; the customers without a valid, with a
-- suppressed or with a shared number are read from it too. The counts of the fact segments
-- (first_time, repeat, all_appointments, lapsed) are ranges of the two fact indexes.
CREATE INDEX customers_audience_phone ON customers (tenant_id, phone_e164)
    INCLUDE (id, phone_shared, appointment_count, last_starts_at);
DROP INDEX customers_tenant_phone;

CREATE INDEX customers_audience_shared_phone ON customers (tenant_id, phone_e164)
    INCLUDE (id, appointment_count, last_starts_at) WHERE phone_shared;
DROP INDEX customers_tenant_shared_phone;

CREATE INDEX customers_audience_count ON customers (tenant_id, appointment_count);
CREATE INDEX customers_audience_last_starts ON customers (tenant_id, last_starts_at) INCLUDE (appointment_count);

-- appointments: a window (on created_at, starts_at, or status_changed_at of the cancelled
-- statuses) yields its customers with what the filters test. A service or location filter reads
-- its appointments in customer order (for one id), so they are counted per customer as they come.
CREATE INDEX appointments_audience_created ON appointments (tenant_id, created_at)
    INCLUDE (customer_id, service_id, location_id, status);
DROP INDEX appointments_tenant_created;

CREATE INDEX appointments_audience_starts ON appointments (tenant_id, starts_at)
    INCLUDE (customer_id, service_id, location_id, status);
DROP INDEX appointments_tenant_starts;

CREATE INDEX appointments_audience_status_changed ON appointments (tenant_id, status, status_changed_at)
    INCLUDE (customer_id, starts_at, service_id, location_id);
DROP INDEX appointments_tenant_status_changed;

CREATE INDEX appointments_audience_service ON appointments (tenant_id, service_id, customer_id)
    INCLUDE (starts_at, location_id, status);
DROP INDEX appointments_tenant_service;

CREATE INDEX appointments_audience_location ON appointments (tenant_id, location_id, customer_id)
    INCLUDE (starts_at, service_id, status);
DROP INDEX appointments_tenant_location;
