-- Which broker users may publish booking events and campaign commands for which tenant. RabbitMQ
-- vouches for the user (it refuses a message whose user_id is not the publishing connection's
-- user); this table says whom that user may act for.
CREATE TABLE broker_publishers (
    username   text NOT NULL,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (username, tenant_id)
);
CREATE INDEX broker_publishers_tenant ON broker_publishers (tenant_id);
