-- Foreign-key actions look rows up by the referencing column alone: without an index leading
-- with it, deleting a customer (or a tenant, which deletes its customers) scanned all of
-- appointments once per customer, and deleting a service, location or staff member once per row.
CREATE INDEX appointments_customer_id ON appointments (customer_id);
CREATE INDEX appointments_service_id ON appointments (service_id) WHERE service_id IS NOT NULL;
CREATE INDEX appointments_location_id ON appointments (location_id) WHERE location_id IS NOT NULL;
CREATE INDEX appointments_staff_id ON appointments (staff_id) WHERE staff_id IS NOT NULL;
