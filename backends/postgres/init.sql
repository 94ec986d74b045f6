-- statekit on PostgreSQL: a `statekit` database holding the state table.
-- Run with psql (it uses \gexec and \connect), e.g.
--   psql -h 127.0.0.1 -U postgres -f backends/postgres/init.sql
-- Idempotent. The table matches SQLBackend.create_schema(); statekit creates it by itself
-- on first use unless create_schema=False, so running this file is optional.

SELECT 'CREATE DATABASE statekit'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'statekit')\gexec

\connect statekit

CREATE TABLE IF NOT EXISTS statekit_state (
    id               BIGSERIAL NOT NULL,
    runner_id        VARCHAR(255) NOT NULL,
    binding_identity VARCHAR(255) NOT NULL,
    scope            VARCHAR(32) NOT NULL,
    scope_key        VARCHAR(255) NOT NULL,
    -- "C": code-point order for ORDER BY and prefix ranges, served by the unique index.
    state_key        VARCHAR(255) COLLATE "C" NOT NULL,
    value_json       TEXT NOT NULL,
    bot_id           VARCHAR(255),
    workspace_id     VARCHAR(255),
    conversation_id  VARCHAR(255),
    thread_id        VARCHAR(255),
    actor_type       VARCHAR(255),
    actor_id         VARCHAR(255),
    subject_type     VARCHAR(255),
    subject_id       VARCHAR(255),
    created_at       TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at       TIMESTAMP WITH TIME ZONE NOT NULL,
    version          BIGINT DEFAULT 1 NOT NULL,
    PRIMARY KEY (id),
    -- The upsert's conflict target; also serves get, the snapshot's IN and listings.
    CONSTRAINT uq_statekit_state_scope_key_state_key UNIQUE (scope_key, state_key)
);
