//! Handler failures are logged through `tracing`, with the subscriber, the topic and the cause.

use std::io;
use std::sync::{Arc, Mutex};

use bcfy_bus::{EventBus, SubscribeOptions};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn handler_errors_and_panics_are_logged() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    // Current-thread runtime: the handler task runs on this thread, under this default.
    let _guard = tracing::subscriber::set_default(subscriber);

    let bus: EventBus<u32> = EventBus::new();
    let sub = bus
        .subscribe_with(
            "jobs.*",
            SubscribeOptions::default().name("indexer"),
            |ev| async move {
                match ev.payload {
                    1 => Err(format!("disk full while indexing {}", ev.payload)),
                    2 => panic!("index corrupted"),
                    _ => Ok(()),
                }
            },
        )
        .unwrap();
    for n in 0..4 {
        bus.publish("jobs.index", n).await.unwrap();
    }
    let stats = sub.unsubscribe().await;
    assert_eq!(
        (stats.handler_errors, stats.panics, stats.received),
        (1, 1, 4)
    );

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let error_line = logs
        .lines()
        .find(|l| l.contains("bus handler returned an error"))
        .unwrap_or_else(|| panic!("no error line in {logs}"));
    assert!(error_line.contains("WARN"), "{error_line}");
    assert!(
        error_line.contains("disk full while indexing 1"),
        "{error_line}"
    );
    assert!(error_line.contains("indexer"), "{error_line}");
    assert!(error_line.contains("jobs.index"), "{error_line}");
    let panic_line = logs
        .lines()
        .find(|l| l.contains("bus handler panicked"))
        .unwrap_or_else(|| panic!("no panic line in {logs}"));
    assert!(panic_line.contains("ERROR"), "{panic_line}");
    assert!(panic_line.contains("index corrupted"), "{panic_line}");
}
