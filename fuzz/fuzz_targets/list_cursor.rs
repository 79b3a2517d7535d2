//! List cursors: any text offered as a cursor is opened or refused (never a panic), and any token a key
//! issues to a user opens again to the same token, for that user and list only.
#![no_main]

use domain::ids::UserId;
use domain::usecases::CursorKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = CursorKey::new("fuzz-cursor-key").expect("a key");
    let (alice, bob) = (UserId::parse("alice").unwrap(), UserId::parse("bob").unwrap());
    let text = String::from_utf8_lossy(data);
    let _ = key.open(&alice, &text);
    let _ = key.open_token(&alice, "attention", &text);
    let cursor = key.issue_token(&alice, "list", &text);
    assert_eq!(key.open_token(&alice, "list", &cursor).ok().as_deref(), Some(&*text));
    assert!(key.open_token(&bob, "list", &cursor).is_err());
    assert!(key.open_token(&alice, "attention", &cursor).is_err());
});
