//! A minimal stderr logger for `-d`.

struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        eprintln!("[{}] {}: {}", r.level(), r.target(), r.args());
    }
    fn flush(&self) {}
}

static LOGGER: Stderr = Stderr;

/// Debug logging when `debug`, warnings otherwise.
pub fn init(debug: bool) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(if debug {
        if std::env::var_os("STRATA_TRACE").is_some() {
            log::LevelFilter::Trace
        } else {
            log::LevelFilter::Debug
        }
    } else {
        log::LevelFilter::Warn
    });
}
