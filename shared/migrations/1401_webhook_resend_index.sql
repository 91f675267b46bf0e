-- Deleting a delivery sets its resends' resend_of to NULL: without an index leading with the
-- column, each such delete (retention removes finished deliveries) scans the whole table.
CREATE INDEX webhook_deliveries_resend_of ON webhook_deliveries (resend_of);
