//! The store conformance suite: every test below runs once against the SQLite store and once against
//! DynamoDB (moto over HTTP), through the real handlers, and checks statuses, bodies and the store's
//! state afterwards.

pub mod admin;
pub mod bad_requests;
pub mod batch;
pub mod cache;
pub mod callbacks;
pub mod catalog;
pub mod checkout;
pub mod closing;
pub mod idempotency;
pub mod lifecycle;
pub mod orders;
pub mod oversell;
pub mod payments;
pub mod place_port;
pub mod providers;
pub mod refunds;
pub mod shards;

/// Instantiates each listed test for both adapters: `sqlite::<name>` and `dynamodb::<name>`.
macro_rules! conformance {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::conformance::$module::$name(e2e::sqlite().await).await
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(env) = e2e::dynamodb().await else { return };
                    crate::conformance::$module::$name(env).await
                }
            )*
        }
    };
}

conformance!(
    catalog::a_large_catalogue_loads_in_bulk_and_a_reload_changes_only_what_changed,
    catalog::refused_entries_are_reported_and_the_rest_loaded,
    orders::create_order_writes_order_payment_and_takes_stock,
    orders::get_order_returns_the_order_with_its_payments,
    orders::get_order_hides_other_users_orders_and_unknown_ids,
    orders::supplier_products_are_checked_with_the_supplier_not_local_stock,
    orders::supplier_down_is_503_and_writes_nothing,
    oversell::two_hundred_concurrent_buyers_never_oversell,
    oversell::concurrent_batches_over_shared_products_never_oversell,
    oversell::concurrent_buyers_never_take_more_than_the_supplier_has,
    oversell::five_thousand_buyers_of_a_thousand_units_sell_exactly_the_stock,
    shards::a_sharded_product_sells_every_unit_and_answers_the_sum_once_short,
    shards::cancelled_expired_and_refunded_orders_return_units_to_their_shards,
    shards::concurrent_buyers_of_a_sharded_product_never_oversell,
    shards::the_loader_splits_stock_and_an_operator_rebalances_it,
    batch::one_short_product_writes_nothing_and_every_short_product_is_listed,
    batch::duplicate_lines_are_merged,
    batch::the_largest_batch_fits_one_write_and_one_more_is_refused,
    bad_requests::every_bad_request_gets_its_code_and_changes_nothing,
    place_port::a_stale_price_is_refused_as_changed,
    place_port::refusals_are_judged_in_the_seeds_order,
    payments::a_new_payment_supersedes_the_open_one_in_the_same_write,
    payments::a_new_payment_never_outlives_the_order,
    payments::refusals_follow_the_seeds_order_and_change_nothing,
    payments::past_the_deadline_is_order_expired,
    payments::twenty_concurrent_requests_leave_exactly_one_open_payment,
    callbacks::a_success_is_applied_once_however_often_it_is_delivered,
    callbacks::events_out_of_order_follow_the_state_machine,
    callbacks::amounts_within_a_fen_pay_and_beyond_are_mismatches,
    callbacks::a_late_success_pays_a_pending_order_and_is_refunded_on_a_cancelled_one,
    callbacks::unknown_payments_are_dropped,
    callbacks::one_event_id_shared_by_two_payments_is_applied_to_each,
    callbacks::a_failure_holds_back_the_rest_of_its_group_and_redelivery_completes_it_in_order,
    lifecycle::the_sweep_cancels_unpaid_orders_past_their_deadline_and_returns_local_stock,
    lifecycle::a_payment_past_its_own_expiry_is_expired_and_the_order_stays_payable,
    lifecycle::the_shopper_cancels_a_pending_order_once,
    lifecycle::a_success_callback_and_the_sweep_race_and_exactly_one_wins,
    lifecycle::a_success_callback_and_the_shoppers_cancel_race_and_exactly_one_wins,
    lifecycle::the_shoppers_cancel_and_the_sweep_race_and_stock_returns_once,
    lifecycle::a_thousand_due_orders_are_swept_across_pages_and_runs,
    lifecycle::the_list_pages_newest_first_behind_a_cursor_only_its_owner_can_use,
    lifecycle::the_lists_open_payment_follows_every_payment_write,
    lifecycle::stock_never_goes_back_to_a_product_that_is_gone,
    providers::wechatpay_notifications_are_verified_decrypted_and_applied_once,
    providers::alipay_notifications_are_verified_and_applied_once,
    admin::operator_actions_move_only_what_the_state_machine_allows,
    admin::operator_routes_need_the_scope_and_good_bodies,
    admin::a_paid_order_cancelled_by_an_operator_returns_stock_once_and_is_refunded_once,
    admin::an_operators_refund_refunds_the_order_when_the_provider_does,
    admin::an_operators_refund_racing_a_duplicate_success_starts_one_refund,
    admin::the_attention_list_pages_oldest_first_and_never_lists_a_settled_item,
    refunds::a_late_success_on_a_cancelled_order_is_refunded_once_at_its_provider,
    refunds::a_second_success_on_a_paid_order_is_refunded_once_at_its_provider,
    refunds::a_worker_that_dies_after_the_provider_refunded_refunds_once,
    refunds::a_provider_down_or_still_processing_is_asked_again_until_a_final_answer,
    refunds::a_final_refusal_or_a_bank_transfer_is_left_for_an_operator,
    refunds::a_refund_notification_is_applied_once_in_order_with_the_payments_events,
    providers::a_provider_speaks_only_for_its_own_payments,
    checkout::a_bank_transfer_checkout_is_stored_once_and_handed_out_again,
    checkout::an_alipay_page_checkout_is_a_signed_gateway_link,
    checkout::a_checkout_is_refused_for_what_cannot_be_paid_and_changes_nothing,
    checkout::a_wechatpay_checkout_opens_the_trade_once_signed_both_ways,
    checkout::a_wechatpay_that_fails_or_lies_is_503_and_nothing_is_stored,
    checkout::a_request_the_provider_cannot_verify_is_our_defect_500,
    checkout::an_alipay_qr_checkout_opens_a_verified_trade_at_the_gateway,
    checkout::an_alipay_request_signed_with_another_key_is_our_defect_500,
    checkout::paying_at_the_provider_pays_the_order_through_its_notification,
    checkout::a_change_judged_from_an_earlier_read_is_judged_again_if_the_order_moved,
    closing::an_unpaid_trade_is_closed_at_the_provider_then_the_payment_let_go,
    closing::a_trade_paid_with_its_notification_lost_pays_the_order_instead,
    closing::a_provider_down_stops_the_shopper_and_delays_the_sweeper_until_the_grace_period,
    closing::a_close_pending_trade_found_paid_is_flagged_for_refund,
    closing::paying_while_the_sweeper_closes_never_leaves_a_paid_trade_on_a_cancelled_order,
    closing::the_fake_providers_close_a_trade_at_its_time_expire,
    idempotency::fifty_concurrent_retries_of_one_key_create_one_order,
    idempotency::a_key_answers_only_its_own_request_for_a_day,
    idempotency::a_refused_request_stores_nothing_and_its_retry_may_succeed,
    idempotency::create_payment_is_idempotent_too,
    cache::a_price_changed_behind_a_warm_cache_is_charged_at_the_new_price,
    cache::a_product_withdrawn_behind_a_warm_cache_is_not_found,
    cache::an_address_reassigned_behind_a_warm_cache_is_invalid,
);
