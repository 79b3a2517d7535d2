//! Every cross-crate test, compiled into one binary: the store conformance suite (run against both
//! adapters) and the handlers fed real API Gateway events.

mod callback_receiver;
mod conformance;
mod faults;
mod flash_sale;
mod gateway_events;
mod history;
mod provider_vectors;
mod round_trips;
mod schema;
mod supplier;
