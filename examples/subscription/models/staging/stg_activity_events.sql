-- One row per customer and day with any activity; quiet days have no row here.
with source as (
    select * from {{ source('raw', 'activity_events') }}
),

renamed as (
    select
        customer_id,
        cast(event_date as date) as activity_date,
        cast(logins as bigint) as logins,
        cast(sessions as bigint) as sessions,
        cast(minutes_active as double) as minutes_active,
        cast(purchases as bigint) as purchases,
        cast(purchase_amount as double) as spend,
        cast(support_tickets as bigint) as support_tickets,
        cast(payment_failures as bigint) as payment_failures,
        cast("date" as date) as loaded_date
    from source
)

select * from renamed
