-- One row per event, typed, with the calendar day it happened on and the partition it was loaded with.
with source as (
    select * from {{ source('raw', 'transactions') }}
),

renamed as (
    select
        cast(user_id as bigint) as user_id,
        cast(event_time as timestamp) as event_time,
        cast(event_time as date) as event_date,
        cast(amount as double) as amount,
        event_type,
        channel,
        cast("date" as date) as loaded_date
    from source
)

select * from renamed
