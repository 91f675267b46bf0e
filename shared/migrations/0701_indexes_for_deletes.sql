-- wce:no-transaction
-- Foreign-key actions look rows up by the referencing column alone: without an index leading
-- with it, deleting a customer (or a tenant, which deletes its customers) scanned all of
-- appointments once per customer, and deleting a service, location or staff member once per row.
-- Built concurrently: appointments is the largest booking table and stays writable meanwhile.
DROP INDEX CONCURRENTLY IF EXISTS appointments_customer_id;
-- wce:step
CREATE INDEX CONCURRENTLY appointments_customer_id ON appointments (customer_id);
-- wce:step
DROP INDEX CONCURRENTLY IF EXISTS appointments_service_id;
-- wce:step
CREATE INDEX CONCURRENTLY appointments_service_id ON appointments (service_id) WHERE service_id IS NOT NULL;
-- wce:step
DROP INDEX CONCURRENTLY IF EXISTS appointments_location_id;
-- wce:step
CREATE INDEX CONCURRENTLY appointments_location_id ON appointments (location_id) WHERE location_id IS NOT NULL;
-- wce:step
DROP INDEX CONCURRENTLY IF EXISTS appointments_staff_id;
-- wce:step
CREATE INDEX CONCURRENTLY appointments_staff_id ON appointments (staff_id) WHERE staff_id IS NOT NULL;
