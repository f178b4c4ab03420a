{#
  The queue the connector reads, as a dbt model: a template to adapt. Replace the `to_archive`
  CTE with your own selection (a model of churned contacts, merged companies, ...); keep the
  columns below: they are the ones `routera-archive enqueue` makes, so the shipped queries
  about the queue (analyses/02_pending_requests.sql, 13_pending_backlog_age.sql) run on it.

  Off until `routera_archive_queue_model: true` (dbt_project.yml or --vars): once on, every
  build replaces the queue table, and with it any rows `routera-archive enqueue` wrote there,
  so let one of the two own a dataset's queue. Rebuilding it is safe for the connector: a
  request is settled by its terminal row in archive_log, not by its row in the queue, so a
  record the model selects again after its archive is not pending and is not called again.

  It lands in the dataset's own schema (`routera_archive`, not dbt's default
  `<target schema>_routera_archive`): macros/generate_schema_name.sql. A table, not a view:
  the connector reads the queue on every run, and a view on PostgreSQL would stop dlt from
  dropping the tables it reads (`dlt pipeline drop`).

  The example reads seeds/archive_queue_ids.csv: ids of records that `routera-archive sandbox`
  serves (its default seed 0), so that `routera-archive run --base-url <the sandbox's>` after
  `dbt build` archives exactly them.
#}
{{ config(
    materialized='table',
    schema=routera_archive_dataset(),
    alias=var('routera_archive_queue_table'),
    enabled=var('routera_archive_queue_model'),
) }}

with to_archive as (

    select object_type, object_id, reason
    from {{ ref('archive_queue_ids') }}

)

select
    -- No request id: NULL makes the connector derive `<type>:<id>` (`cid:<id>` for a
    -- contact), so a record stays one request however often the model is rebuilt.
    cast(null as {{ dbt.type_string() }}) as request_id,
    -- contacts, companies, deals or tickets, spelled so: anything else is settled `invalid`.
    cast(object_type as {{ dbt.type_string() }}) as object_type,
    -- The record's Routera id, of any type (compared as text).
    cast(object_id as {{ dbt.type_string() }}) as object_id,
    -- Only for contacts, and then equal to object_id if set; NULL is simplest.
    cast(null as {{ dbt.type_string() }}) as contact_id,
    cast('dbt' as {{ dbt.type_string() }}) as requested_by,
    cast(reason as {{ dbt.type_string() }}) as reason,
    -- Stamped at each build: take it from your data instead if the backlog's age matters.
    {{ dbt.current_timestamp() }} as requested_at
from to_archive
