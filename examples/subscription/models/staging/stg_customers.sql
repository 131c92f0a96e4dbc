-- One row per version of a customer record, as the change feed delivered it.
with source as (
    select * from {{ source('raw', 'customers') }}
),

renamed as (
    select
        customer_id,
        cast(signup_date as date) as signup_date,
        plan,
        contract,
        cast(monthly_price as double) as monthly_price,
        region,
        acquisition_channel,
        payment_method,
        cast(updated_at as timestamp) as updated_at,
        cast("date" as date) as loaded_date
    from source
)

select * from renamed
