//! The log of a running node (`jingteng serve`): `tracing` events of level INFO and
//! above — background work such as the scheduled refresh of audiences — one line each
//! on stderr. Events carry counts, names and ids of jobs, never people (STYLE.md).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Writes events as `2026-07-01T09:30:00Z WARN target: message key=value …`.
struct Stderr;

/// Collects an event's message and fields.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc(secs: i64) -> String {
    jingteng_engine::datafusion::arrow::temporal_conversions::timestamp_s_to_datetime(secs)
        .map_or_else(
            || format!("{secs} s after 1970"),
            |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )
}

impl Subscriber for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::INFO
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        // Spans are not shown; every span gets the same (non-zero) id.
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = Line::default();
        event.record(&mut line);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let meta = event.metadata();
        eprintln!(
            "{} {} {}: {}{}",
            utc(now),
            meta.level(),
            meta.target(),
            line.message,
            line.fields
        );
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Sends the node's log to stderr (once per process; later calls change nothing).
pub(crate) fn init() {
    let _ = tracing::subscriber::set_global_default(Stderr);
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_utc() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(1_782_835_200), "2026-06-30T16:00:00Z");
    }
}
