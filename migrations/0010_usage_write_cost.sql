-- Makes each write of the usage table cheaper for the server: every admitted call writes one row
-- per window, so what a write costs limits how many calls per second the store admits.
--
-- CHECK constraints. PostgreSQL 15 keeps a table's CHECK constraints as text in its catalog
-- cache, and for every statement that inserts or updates rows it parses that text and prepares
-- the expressions again. With the three constraints below, that took about a fifth of the
-- instructions the server spent on the store's single-call statement (a consume of minute, hour
-- and day windows on 10,000 keys, counted with callgrind). The statements in
-- src/store/postgres/fast.rs take their window types, bounds and costs from the store, which
-- checks them. The functions check their arguments before they write, and migration 0011 adds
-- the checks they lacked (repeated window types, bounds that end before they start, the costs of
-- a batch's later windows). The policy table keeps its constraints: it is written rarely.
--
-- Collation. The ids are compared at every step of every index search, and under a linguistic
-- collation (en_US.UTF-8, or an ICU one) each comparison of two different ids calls strcoll. The
-- ids are opaque names, so byte order serves as well: with COLLATE "C" a comparison is a memcmp.
-- window_type keeps the database's collation. The store's single-call statement returns it, and a
-- server that has prepared a statement rejects the statement's next run with "cached plan must not
-- change result type" once a column it returns changes collation: every pooled connection that
-- ran the statement before this migration, in this release and in earlier ones, would fail every
-- such call until it reconnects. A comparison reaches window_type only between rows of one key.
-- NOTE: the instruction counts below were measured with window_type in "C" too.
-- Changing the collation rebuilds the primary key's index, under a lock that stops consumes while
-- it runs; docs/operations.md gives the time it takes.
--
-- Primary key order. The key's columns stay the same, but the index now leads with scope_key,
-- which tells most keys apart. In the old order every comparison first compared tenant_id and
-- tool_name, which most keys share, before it reached scope_key. With the ids in the "C"
-- collation, leading with scope_key took the single-call statement from about 292,000 to 244,000
-- instructions on 10,000 keys of one tenant and tool (280,000 instead of 322,000 with their rows
-- present). ON CONFLICT names the same columns, and every function looks rows up by the whole
-- key, so they keep using the index. The admin API's usage listing finds a workflow policy's keys by
-- their prefix through the index, which the "C" collation allows. Without a policy it lists the
-- keys of a tenant and tool, which no index leads with, so it reads the whole table. The index is
-- rebuilt once, together with the collation change.
--
-- Fill factor. A key's rows are updated many times per window. An update fits on the row's own
-- page as a heap-only tuple, with no new index entry, only while that page has room; with pages
-- filled to the brim, updates first prune the page or move the row. New rows now leave 30 % of
-- each page free: with every key's rows present, that took the single-call statement from about
-- 342,000 to 322,000 instructions (314,000 with half of each page free), for a table about 1.4
-- times as large. Pages written before keep their layout until their rows are deleted.

ALTER TABLE highway.tool_rate_limit_usage
    DROP CONSTRAINT IF EXISTS tool_rate_limit_usage_window_type_check,
    DROP CONSTRAINT IF EXISTS tool_rate_limit_usage_window_check,
    DROP CONSTRAINT IF EXISTS tool_rate_limit_usage_count_check,
    DROP CONSTRAINT tool_rate_limit_usage_pkey,
    ALTER COLUMN tenant_id TYPE TEXT COLLATE "C",
    ALTER COLUMN tool_name TYPE TEXT COLLATE "C",
    ALTER COLUMN scope_key TYPE TEXT COLLATE "C",
    ADD CONSTRAINT tool_rate_limit_usage_pkey
        PRIMARY KEY (scope_key, tenant_id, tool_name, window_type, window_start),
    SET (fillfactor = 70);
