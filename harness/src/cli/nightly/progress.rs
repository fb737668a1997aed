//! What a night shows while it runs: a progress bar over the whole budget on a terminal
//! (indicatif), a plain line every `PLAIN_EVERY` elsewhere (CI logs, pipes), so that a log
//! stays readable and a person at a terminal sees time left, execs/s and findings so far.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a plain progress line is printed when there is no terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

pub struct Progress {
    bar: Option<ProgressBar>,
    start: Instant,
    budget: Duration,
    last_plain: Instant,
}

impl Progress {
    /// A bar when stderr is a terminal and `CI` is not set; plain lines otherwise.
    pub fn new(budget_s: u64, start: Instant) -> Progress {
        let interactive = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
        let bar = interactive.then(|| {
            let bar = ProgressBar::new(budget_s);
            let style = ProgressStyle::with_template("{elapsed:>4} [{wide_bar}] {pos}/{len} s  {msg}")
                .expect("a valid template")
                .progress_chars("=> ");
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Progress { bar, start, budget: Duration::from_secs(budget_s), last_plain: start }
    }

    /// Seconds of the budget left.
    pub fn left_s(&self) -> u64 {
        self.budget.saturating_sub(self.start.elapsed()).as_secs()
    }

    /// A line that always shows (above the bar on a terminal).
    pub fn println(&self, line: impl AsRef<str>) {
        match &self.bar {
            Some(bar) => bar.println(line.as_ref()),
            None => println!("{}", line.as_ref()),
        }
    }

    /// The state now: the bar's message, or a plain line every `PLAIN_EVERY`.
    pub fn update(&mut self, state: String) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.start.elapsed().as_secs().min(self.budget.as_secs()));
                bar.set_message(state);
            }
            None if self.last_plain.elapsed() >= PLAIN_EVERY => {
                self.last_plain = Instant::now();
                println!("nightly: {} s left: {state}", self.left_s());
            }
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
