//! Auto traits and redaction of the public types.

use bcfy_transport::mock::MockTransport;
use bcfy_transport::{
    Body, BodyChunks, HttpTransport, Request, Response, SessionSlot, SessionToken, SharedTransport,
    TransportError,
};
use static_assertions::assert_impl_all;

assert_impl_all!(HttpTransport: Send, Sync, Clone, std::fmt::Debug);
assert_impl_all!(MockTransport: Send, Sync, Clone);
assert_impl_all!(SharedTransport: Send, Sync, Clone);
assert_impl_all!(Request: Send, Sync, Clone);
assert_impl_all!(Response: Send, Sync);
assert_impl_all!(Body: Send, Sync);
assert_impl_all!(BodyChunks: Send, Sync, Unpin);
assert_impl_all!(SessionSlot: Send, Sync, Clone);
assert_impl_all!(TransportError: Send, Sync, std::error::Error);

#[test]
fn debug_output_redacts_secrets() {
    let slot = SessionSlot::with_token(SessionToken::new("tok-abcdef"));
    assert!(!format!("{slot:?}").contains("tok-abcdef"));
    let req = Request::post_form(
        bcfy_transport::url::Url::parse("https://x.test/login/?key=qs-secret").unwrap(),
        "username=u&password=pw-secret",
    )
    .header("authorization", "Bearer sk-abc");
    let dbg = format!("{req:?}");
    assert!(
        !dbg.contains("pw-secret") && !dbg.contains("qs-secret") && !dbg.contains("sk-abc"),
        "{dbg}"
    );
    let t = HttpTransport::builder()
        .session_slot(slot.clone())
        .build()
        .unwrap();
    assert!(!format!("{t:?}").contains("tok-abcdef"));
    let mut headers = bcfy_transport::http::HeaderMap::new();
    headers.insert(
        "set-cookie",
        "bcfyuser1=tok-abcdef; path=/".parse().unwrap(),
    );
    let resp = Response::new(
        bcfy_transport::http::StatusCode::FOUND,
        headers,
        Body::empty(),
    );
    assert!(!format!("{resp:?}").contains("tok-abcdef"));
}

#[test]
fn a_session_slot_is_shared_and_versioned() {
    let slot = SessionSlot::new();
    let other = slot.clone();
    assert_eq!(slot.snapshot().1, 0);
    let g1 = other.set(Some(SessionToken::new("a")));
    assert_eq!(slot.get().unwrap().expose_secret(), "a");
    assert_eq!(
        slot.set_if_generation(0, None),
        Err(g1),
        "stale generation is refused"
    );
    assert_eq!(slot.set_if_generation(g1, None), Ok(g1 + 1));
    assert!(!other.is_set());
}
