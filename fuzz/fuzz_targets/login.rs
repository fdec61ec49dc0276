#![no_main]
//! Login response handling: whatever status, `Location` and `Set-Cookie` headers the site
//! answers with, `AuthClient::login` returns a token or a typed error, never panics, and never
//! puts the password in an error.
use std::sync::OnceLock;

use bcfy_auth::{AuthClient, Credentials};
use bcfy_transport::mock::{MockResponse, MockTransport};
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

const PASSWORD: &str = "fuzz-password-9f8e7d";

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let status = 100 + (u16::from_le_bytes([data[0], data[1]]) % 500);
    let Ok(status) = http::StatusCode::from_u16(status) else {
        return;
    };
    let text = String::from_utf8_lossy(&data[2..]);
    let mut response = MockResponse::new(status);
    for (i, line) in text.split('\n').enumerate() {
        let name = if i == 0 { "location" } else { "set-cookie" };
        if let Ok(v) = http::HeaderValue::from_str(line) {
            response = response.header(name, v);
        }
    }
    let mock = MockTransport::new();
    mock.on(http::Method::POST, "/login/", response);
    let site = url::Url::parse("https://www.broadcastify.com/").expect("static url");
    let client = AuthClient::new(mock.shared(), site);
    let creds = Credentials::new("fuzz", PASSWORD);
    match runtime().block_on(client.login(&creds)) {
        Ok(result) => {
            assert!(!result.token.expose_secret().is_empty());
            assert!(!format!("{result:?}").contains(PASSWORD));
        }
        Err(e) => {
            assert!(!e.to_string().contains(PASSWORD));
            assert!(!format!("{e:?}").contains(PASSWORD));
        }
    }
});
