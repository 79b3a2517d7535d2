//! The body parser of one route (`parse_checkout`): any bytes, parsed as the handler parses them (the size
//! limit, JSON, then the command), never panic; an error is always a catalogue error.
#![no_main]

use domain::usecases::request::{json_body, parse_checkout};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() > 64 * 1024 {
        return;
    }
    if let Ok(body) = json_body(data) {
        if let Err(err) = parse_checkout(&body) {
            // Every refusal of a body is a 400 of the catalogue.
            assert_eq!(err.code().http_status(), 400, "{err:?}");
        }
    }
});
