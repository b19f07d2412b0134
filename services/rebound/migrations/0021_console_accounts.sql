-- Who may sign in to the console and what they see: an admin sees every seller; an operator the
-- sellers of their warehouse; a seller's user that seller alone.
CREATE TABLE console.accounts (
    username      text        PRIMARY KEY CHECK (username ~ '^[A-Za-z0-9._@-]{1,64}$'),
    password_hash text        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('admin', 'operator', 'seller')),
    warehouse_id  text        CHECK ((role = 'operator') = (warehouse_id IS NOT NULL)),
    seller_id     text        CHECK ((role = 'seller') = (seller_id IS NOT NULL)),
    disabled      boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- The sellers whose returns a warehouse handles, as its admin declares them.
CREATE TABLE console.warehouse_sellers (
    warehouse_id text NOT NULL,
    seller_id    text NOT NULL,
    PRIMARY KEY (warehouse_id, seller_id)
);
