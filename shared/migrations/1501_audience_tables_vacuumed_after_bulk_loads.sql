-- The audience queries read covering indexes without visiting the table only for pages the
-- visibility map marks all-visible, and only VACUUM sets it. The segmenter analyses stale tables
-- itself (migration 1500), but VACUUM needs the owner and cannot run inside a function, so the
-- visibility map is autovacuum's work. By default autovacuum vacuums a table after inserts of 20 %
-- of its rows: a new tenant's million appointments in a table of fifty million would wait for ten
-- million more, and meanwhile its previews read the table page by page (seconds instead of
-- milliseconds). Here it is 1 % of the table plus 10,000 rows: soon after any bulk load. A vacuum
-- after inserts reads only the pages not yet all-visible and, with few dead rows, skips the index
-- passes, so it costs about the pages just written. Vacuums for updates and deletes keep their
-- defaults (they pass over every index). Where autovacuum is off, run VACUUM (ANALYZE) on these
-- tables after a bulk load.

ALTER TABLE appointments SET (autovacuum_vacuum_insert_threshold = 10000, autovacuum_vacuum_insert_scale_factor = 0.01);
ALTER TABLE customers SET (autovacuum_vacuum_insert_threshold = 10000, autovacuum_vacuum_insert_scale_factor = 0.01);
