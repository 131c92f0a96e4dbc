-- One row per cancellation.
with source as (
    select * from {{ source('raw', 'cancellations') }}
),

renamed as (
    select
        customer_id,
        cast(cancel_date as date) as cancel_date,
        cancel_reason,
        cast(cancelled_at as timestamp) as cancelled_at,
        cast("date" as date) as loaded_date
    from source
)

select * from renamed
