//! `ridectl generate`: realistic ride traffic for dashboards, alerts and load tests.
//!
//! The pieces: [`sim`] (the pure ride lifecycle simulator), [`encode`] (the wire
//! form), [`source`] (the deterministic message stream: slots, scenarios, faults),
//! [`pace`] (when each slot may go out), [`sink`] (Kafka and/or a JSON-lines file)
//! and [`run`] here, which ties them together and returns a [`Summary`].
//!
//! # Time
//!
//! Every message belongs to an emission *slot* with a simulated time; its
//! timestamp is the slot's time. Ride slots are spaced evenly:
//!
//! - **paced** (`--rate 50000/min`): `speedup / rate` apart; slot `k` goes out at
//!   wall time `k / rate` after the start. Without `--start-time` the simulated
//!   clock starts at the wall clock (timestamps ≈ now); with it, simulated time
//!   starts there and runs `--speedup` times faster than the wall clock.
//! - **unpaced** (`--rate max`): as fast as the sink takes them, the simulated
//!   clock advancing `1 / generator.rate` (the nominal rate of pipeline.yaml) per
//!   slot, so memory stays bounded and timestamps form a realistic history at
//!   the nominal density. It starts at `--start-time`, or `--backfill` ago, or
//!   (with `--count N`) far enough back that the history ends about now, or else
//!   now (and then runs ahead of the wall clock).
//! - `--backfill 24h` is `--rate max --start-time <now − 24h>` until the
//!   simulated clock reaches the time the run started.
//!
//! Driver GPS updates have slots of their own (each online driver once per
//! `driver_location_interval` of simulated time), merged in time order; they are
//! counted apart and never count towards `--count` or `--rate`.

pub mod encode;
pub mod pace;
pub mod rng;
pub mod scenario;
pub mod sim;
pub mod sink;
pub mod source;

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

pub use self::encode::Wire;
use self::pace::{Clock, Pacer, SystemClock};
use self::scenario::{Late, Scenarios};
use self::sink::{Counts, FileSink, KafkaSink, Output, Sink, Stats};
use self::source::{Kind, Source, SourceConfig};
use crate::config::PipelineConfig;
use crate::exit::UsageError;
use crate::time::{EpochMillis, format_millis, now_millis};
use crate::units::Rate;

/// The nominal rate when `generator.rate` is `max` (the 50,000/min).
const FALLBACK_NOMINAL_PER_SEC: f64 = 50_000.0 / 60.0;
/// The longest the start-up check waits for a broker, so that a missing broker
/// is reported within 10 s whatever `kafka.connect_timeout` says.
const MAX_STARTUP_CHECK: Duration = Duration::from_secs(9);

/// What the producing loop asks, between messages, to know whether to stop (then
/// it flushes and summarizes). Implemented by [`Shutdown`] and by any
/// `Fn() -> bool`, so another shutdown signal (a watch channel, a test's flag)
/// plugs in with a closure.
pub trait Stop: Sync {
    /// True once production should stop.
    fn stop_requested(&self) -> bool;
}

impl<F: Fn() -> bool + Sync> Stop for F {
    fn stop_requested(&self) -> bool {
        self()
    }
}

/// A stop request shared between a signal handler and the generator. The first
/// request stops production (then the generator flushes and summarizes); the
/// caller decides what a second one means.
#[derive(Clone, Debug, Default)]
pub struct Shutdown(Arc<AtomicUsize>);

impl Shutdown {
    /// No stop requested yet.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Requests a stop; returns how many requests there have been, this one
    /// included.
    pub fn request(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// True once a stop was requested.
    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }
}

impl Stop for Shutdown {
    fn stop_requested(&self) -> bool {
        self.is_requested()
    }
}

/// How progress is shown while running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Progress {
    /// A progress bar when stderr is a terminal, log lines otherwise.
    #[default]
    Auto,
    /// An indicatif progress bar on stderr.
    Bar,
    /// A log line every 10 s.
    Log,
    /// Nothing.
    Off,
}

/// What to generate and where (the command line of `ridectl generate`).
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Ride events per unit of time, or `max`; `None`: `generator.rate`.
    pub rate: Option<Rate>,
    /// Stop after this long (wall clock).
    pub duration: Option<Duration>,
    /// Stop after this many valid ride events.
    pub count: Option<u64>,
    /// Seed; `None`: `generator.seed`, else random (the summary reports it).
    pub seed: Option<u64>,
    /// Simulated start time; `None`: see the module documentation.
    pub start_time: Option<EpochMillis>,
    /// Simulated time runs this many times faster than the wall clock (paced
    /// runs with `start_time`).
    pub speedup: Option<f64>,
    /// Write this much history, ending now, as fast as possible.
    pub backfill: Option<Duration>,
    /// `--surge` and `--cancel-spike`.
    pub scenarios: Scenarios,
    /// `--late`.
    pub late: Option<Late>,
    /// `--out-of-order`.
    pub out_of_order: bool,
    /// `--malformed`, a fraction of ride slots.
    pub malformed: Option<f64>,
    /// Produce driver locations; `None`: `generator.driver_locations`.
    pub driver_locations: Option<bool>,
    /// Kafka, a file, or both.
    pub output: Output,
    /// Progress display.
    pub progress: Progress,
    /// Longest wait for outstanding acknowledgements at the end.
    pub flush_timeout: Duration,
    /// The form of ride events on the wire.
    pub wire: Wire,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            rate: None,
            duration: None,
            count: None,
            seed: None,
            start_time: None,
            speedup: None,
            backfill: None,
            scenarios: Scenarios::default(),
            late: None,
            out_of_order: false,
            malformed: None,
            driver_locations: None,
            output: Output::Kafka,
            progress: Progress::Off,
            flush_timeout: Duration::from_secs(30),
            wire: Wire::Full,
        }
    }
}

/// A run's derived settings: the stream, its pacing and its limits.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The message stream.
    pub source: SourceConfig,
    /// The asked rate.
    pub rate: Rate,
    /// Simulated/wall speed ratio; `None`: unpaced.
    pub speedup: Option<f64>,
    /// Stop producing after this much wall time (unpaced `--duration`).
    pub wall_limit: Option<Duration>,
    /// Valid ride events expected, when known in advance (for the progress bar).
    pub expected_rides: Option<u64>,
}

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

impl GenerateOptions {
    /// Checks the options against each other and `cfg` and derives the run's plan;
    /// every error is a usage error naming the flag. No I/O.
    pub fn plan(&self, cfg: &PipelineConfig, now: EpochMillis) -> Result<Plan, UsageError> {
        let g = &cfg.generator;
        let rate = self.rate.unwrap_or(g.rate);
        if self.count == Some(0) {
            return Err(usage("--count must be at least 1"));
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err(usage("--duration must be greater than zero"));
        }
        if self.count.is_some() && self.duration.is_some() {
            return Err(usage("--count and --duration cannot be used together"));
        }
        if let Some(s) = self.speedup {
            if !(s.is_finite() && s > 0.0) {
                return Err(usage("--speedup must be a number greater than zero"));
            }
            if self.start_time.is_none() {
                return Err(usage(
                    "--speedup needs --start-time (simulated time runs faster than the wall clock from there)",
                ));
            }
            if rate == Rate::Max {
                return Err(usage(
                    "--speedup cannot be used with --rate max (unpaced runs are as fast as possible already)",
                ));
            }
        }
        if let Some(b) = self.backfill {
            if b.is_zero() {
                return Err(usage("--backfill must be greater than zero"));
            }
            if self.start_time.is_some() {
                return Err(usage(
                    "--backfill and --start-time cannot be used together (--backfill 24h starts 24 h ago)",
                ));
            }
            if self.rate.is_some_and(|r| r != Rate::Max) {
                return Err(usage(
                    "--backfill runs as fast as possible: leave out --rate (or use --rate max)",
                ));
            }
            if self.duration.is_some() {
                return Err(usage(
                    "--backfill and --duration cannot be used together (a backfill ends when it reaches now)",
                ));
            }
            if self.speedup.is_some() {
                return Err(usage("--backfill and --speedup cannot be used together"));
            }
        }
        if self.malformed.is_some_and(|m| !(m > 0.0 && m <= 1.0)) {
            return Err(usage(
                "--malformed must be more than 0 and at most 100 (percent)",
            ));
        }
        if self.malformed == Some(1.0) && self.count.is_some() {
            return Err(usage(
                "--malformed 100 with --count never ends: --count counts valid ride events",
            ));
        }
        self.scenarios.check_cities(&g.cities).map_err(usage)?;
        if self.output == Output::File("".into()) {
            return Err(usage("--output needs a file name or -"));
        }

        let rate = if self.backfill.is_some() {
            Rate::Max
        } else {
            rate
        };
        let malformed = self.malformed.unwrap_or(0.0);
        let locations = self.driver_locations.unwrap_or(g.driver_locations);
        let loc_ms = g.driver_location_interval.get().as_secs_f64() * 1000.0;
        let (ride_interval_ms, speedup, start_ms, end_ms, max_slots, wall_limit, expected) =
            match rate {
                Rate::PerSecond(r) => {
                    let speedup = self.speedup.unwrap_or(1.0);
                    let start = self.start_time.unwrap_or(now);
                    let slots = self.duration.map(|d| (r * d.as_secs_f64()).round() as u64);
                    // Driver locations go on until the end of the duration.
                    let end = self
                        .duration
                        .map(|d| start + (d.as_secs_f64() * speedup * 1000.0).round() as i64);
                    let expected = self
                        .count
                        .or_else(|| slots.map(|s| (s as f64 * (1.0 - malformed)).round() as u64));
                    (
                        1000.0 * speedup / r,
                        Some(speedup),
                        start,
                        end,
                        slots,
                        None,
                        expected,
                    )
                }
                Rate::Max => {
                    let nominal = g.rate.per_second().unwrap_or(FALLBACK_NOMINAL_PER_SEC);
                    let interval = 1000.0 / nominal;
                    let (start, end) = match (self.start_time, self.backfill, self.count) {
                        (Some(t), _, _) => (t, None),
                        (None, Some(b), _) => (
                            now - i64::try_from(b.as_millis()).unwrap_or(i64::MAX / 4),
                            Some(now),
                        ),
                        (None, None, Some(n)) => {
                            let slots = n as f64 / (1.0 - malformed.min(0.99));
                            (now - (slots * interval).ceil() as i64, None)
                        }
                        (None, None, None) => (now, None),
                    };
                    let expected = self.count.or_else(|| {
                        end.map(|e| ((e - start) as f64 / interval * (1.0 - malformed)) as u64)
                    });
                    (interval, None, start, end, None, self.duration, expected)
                }
            };
        Ok(Plan {
            source: SourceConfig {
                seed: self.seed.or(g.seed).unwrap_or_else(rand::random),
                start_ms,
                ride_interval_ms,
                location_interval_ms: locations.then_some(loc_ms),
                max_ride_events: self.count,
                max_ride_slots: max_slots,
                end_ms,
                late: self.late,
                out_of_order: self.out_of_order,
                malformed,
                scenarios: self.scenarios.resolve(&g.cities, start_ms).map_err(usage)?,
                wire: self.wire,
            },
            rate,
            speedup,
            wall_limit,
            expected_rides: expected,
        })
    }
}

/// Delivery latency percentiles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Where messages went.
    pub output: String,
    /// The seed (pass it to `--seed` to replay the run).
    pub seed: u64,
    /// The run id in every event and ride id.
    pub run_id: String,
    /// The asked rate.
    pub rate: String,
    /// Simulated time of the first slot.
    pub start_time: String,
    /// Simulated time of the last slot handed out (ride event or location).
    pub end_time: String,
    /// Valid ride events.
    pub ride_events: Counts,
    /// Malformed messages (`--malformed`), never counted as ride events.
    pub malformed: Counts,
    /// Driver location updates.
    pub driver_locations: Counts,
    /// Seconds spent producing (first message to last handed to the sink).
    pub produce_secs: f64,
    /// Seconds from the first message to the end of the flush.
    pub elapsed_secs: f64,
    /// Valid ride events delivered per second of `elapsed_secs`.
    pub achieved_rate: f64,
    /// Messages of every kind delivered per second of `elapsed_secs`.
    pub messages_per_sec: f64,
    /// Delivery latency (enqueue to acknowledgement; 0 for files).
    pub latency: Latency,
    /// Mean size of a ride event, bytes.
    pub avg_ride_event_bytes: f64,
    /// Stopped by a signal.
    pub interrupted: bool,
    /// Times the producer's queue was full and the generator waited.
    pub queue_full_waits: u64,
    /// The first error behind a failure, if any.
    pub first_error: Option<String>,
}

impl Summary {
    /// Messages that failed, all kinds.
    pub fn failed(&self) -> u64 {
        self.ride_events.failed + self.malformed.failed + self.driver_locations.failed
    }

    /// The human-readable summary.
    pub fn table(&self) -> String {
        let mut t = crate::output::table(
            &["", "attempted", "delivered", "failed", "avg bytes"],
            &[1, 2, 3, 4],
        );
        for (name, c) in [
            ("ride events", self.ride_events),
            ("malformed", self.malformed),
            ("driver locations", self.driver_locations),
        ] {
            let avg = if c.attempted > 0 {
                format!("{:.0}", c.bytes as f64 / c.attempted as f64)
            } else {
                "-".into()
            };
            t.add_row(vec![
                name.to_string(),
                c.attempted.to_string(),
                c.delivered.to_string(),
                c.failed.to_string(),
                avg,
            ]);
        }
        let mut s = format!("{t}\n");
        s += &format!(
            "output {} · seed {} · run {} · rate {}{}\n",
            self.output,
            self.seed,
            self.run_id,
            self.rate,
            if self.interrupted {
                " · interrupted"
            } else {
                ""
            }
        );
        s += &format!("simulated time {} → {}\n", self.start_time, self.end_time);
        s += &format!(
            "achieved {:.1} ride events/s ({:.1} messages/s) over {:.2} s; delivery latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.achieved_rate,
            self.messages_per_sec,
            self.elapsed_secs,
            self.latency.p50_ms,
            self.latency.p99_ms,
            self.latency.max_ms
        );
        if let Some(e) = &self.first_error {
            s += &format!("\nfirst error: {e}");
        }
        s
    }
}

/// Checks the broker and the topics before producing: [`crate::exit::Unavailable`]
/// (exit 69) when no broker answers, an error naming a missing topic.
pub fn check_kafka(cfg: &PipelineConfig, locations: bool) -> anyhow::Result<()> {
    let timeout = cfg.kafka.connect_timeout.get().min(MAX_STARTUP_CHECK);
    crate::kafka::cluster_info(&cfg.kafka, timeout)?;
    let consumer: rdkafka::consumer::BaseConsumer =
        crate::kafka::client_config(&cfg.kafka, crate::kafka::Role::Admin)
            .create()
            .context("cannot create a Kafka client")?;
    use rdkafka::consumer::Consumer;
    let md = consumer
        .fetch_metadata(None, timeout)
        .map_err(|e| crate::exit::Unavailable(format!("cannot read Kafka metadata: {e}")))?;
    let mut wanted = vec![&cfg.topics.ride_events.name];
    if locations {
        wanted.push(&cfg.topics.driver_locations.name);
    }
    for name in wanted {
        let ok = md
            .topics()
            .iter()
            .any(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty());
        if !ok {
            anyhow::bail!(
                "topic {name} does not exist on {} (create it with `ridectl topics create`)",
                cfg.kafka.bootstrap_servers
            );
        }
    }
    Ok(())
}

/// Generates traffic: plans the run (usage errors first, before any connection),
/// checks the broker, produces until the limit or until `stop` says so, flushes
/// and summarizes. The summary counts every delivery report; a caller should fail
/// when [`Summary::failed`] is not zero.
pub fn run(
    cfg: &PipelineConfig,
    opts: &GenerateOptions,
    shutdown: &dyn Stop,
) -> anyhow::Result<Summary> {
    let plan = opts.plan(cfg, now_millis())?;
    run_plan(cfg, opts, &plan, shutdown)
}

/// [`run`] with a plan made beforehand (by [`GenerateOptions::plan`]).
pub fn run_plan(
    cfg: &PipelineConfig,
    opts: &GenerateOptions,
    plan: &Plan,
    shutdown: &dyn Stop,
) -> anyhow::Result<Summary> {
    let stats = Arc::new(Stats::default());
    let locations = plan.source.location_interval_ms.is_some();
    let mut sink = match &opts.output {
        Output::Kafka => {
            check_kafka(cfg, locations)?;
            Sink::Kafka(KafkaSink::new(cfg, stats.clone())?)
        }
        Output::File(p) => Sink::File(FileSink::create(p)?, stats.clone()),
        Output::KafkaAndFile(p) => {
            check_kafka(cfg, locations)?;
            Sink::Both(KafkaSink::new(cfg, stats.clone())?, FileSink::create(p)?)
        }
    };
    let output = match &opts.output {
        Output::Kafka => format!("kafka {}", cfg.kafka.bootstrap_servers),
        Output::File(p) => p.display().to_string(),
        Output::KafkaAndFile(p) => {
            format!("kafka {} + {}", cfg.kafka.bootstrap_servers, p.display())
        }
    };
    let mut source = Source::new(&cfg.generator, plan.source.clone());
    let clock = SystemClock::start();
    let pacer = match plan.speedup {
        Some(s) => Pacer::paced(clock, s),
        None => Pacer::unpaced(clock),
    };
    let reporter = Reporter::start(stats.clone(), plan, opts.progress);
    let mut interrupted = false;
    let mut n: u64 = 0;
    let mut last_offset = 0.0;
    let started = Instant::now();
    while let Some(msg) = source.next() {
        if shutdown.stop_requested() || !pacer.wait(msg.sim_offset_ms, || shutdown.stop_requested())
        {
            interrupted = true;
            break;
        }
        if let Some(limit) = plan.wall_limit
            && n & 127 == 0
            && pacer.clock().now() >= limit
        {
            break;
        }
        if let Err(e) = sink.send(msg.kind, msg.key, msg.payload) {
            reporter.finish();
            return Err(e);
        }
        last_offset = msg.sim_offset_ms;
        n += 1;
    }
    let produce_secs = started.elapsed().as_secs_f64();
    reporter.set_phase("flushing");
    let flushed = sink.flush(opts.flush_timeout);
    let elapsed_secs = started.elapsed().as_secs_f64();
    reporter.finish();
    flushed?;
    let rides = stats.counts(Kind::Ride);
    let total = stats.total();
    let ms = |us: u64| us as f64 / 1000.0;
    let per_sec = |x: u64| {
        if elapsed_secs > 0.0 {
            x as f64 / elapsed_secs
        } else {
            0.0
        }
    };
    Ok(Summary {
        output,
        seed: plan.source.seed,
        run_id: source.run_id().to_string(),
        rate: match plan.rate {
            Rate::Max => "max".into(),
            r => r.to_string(),
        },
        start_time: format_millis(plan.source.start_ms),
        end_time: format_millis(plan.source.start_ms + last_offset as i64),
        ride_events: rides,
        malformed: stats.counts(Kind::Malformed),
        driver_locations: stats.counts(Kind::Location),
        produce_secs,
        elapsed_secs,
        achieved_rate: per_sec(rides.delivered),
        messages_per_sec: per_sec(total.delivered),
        latency: if opts.output.uses_kafka() {
            Latency {
                p50_ms: ms(stats.latency_us.quantile(0.5)),
                p99_ms: ms(stats.latency_us.quantile(0.99)),
                max_ms: ms(stats.latency_us.max()),
            }
        } else {
            Latency::default()
        },
        avg_ride_event_bytes: if rides.attempted > 0 {
            rides.bytes as f64 / rides.attempted as f64
        } else {
            0.0
        },
        interrupted,
        queue_full_waits: sink.queue_full_waits(),
        first_error: stats.first_error(),
    })
}

/// Shows progress from the shared counters on a thread of its own, so the
/// producing loop never formats or draws.
struct Reporter {
    stop: Arc<AtomicBool>,
    phase: Arc<std::sync::Mutex<&'static str>>,
    handle: Option<JoinHandle<()>>,
}

impl Reporter {
    fn start(stats: Arc<Stats>, plan: &Plan, progress: Progress) -> Reporter {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(std::sync::Mutex::new("producing"));
        let mode = match progress {
            Progress::Auto if std::io::stderr().is_terminal() => Progress::Bar,
            Progress::Auto => Progress::Log,
            p => p,
        };
        let handle = (mode != Progress::Off).then(|| {
            let (stop, phase) = (stop.clone(), phase.clone());
            let expected = plan.expected_rides;
            std::thread::Builder::new()
                .name("generate-progress".into())
                .spawn(move || report_loop(&stats, expected, mode, &stop, &phase))
                .ok()
        });
        Reporter {
            stop,
            phase,
            handle: handle.flatten(),
        }
    }

    fn set_phase(&self, p: &'static str) {
        if let Ok(mut g) = self.phase.lock() {
            *g = p;
        }
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn report_loop(
    stats: &Stats,
    expected: Option<u64>,
    mode: Progress,
    stop: &AtomicBool,
    phase: &std::sync::Mutex<&'static str>,
) {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let tick = if mode == Progress::Bar {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(10)
    };
    let bar = (mode == Progress::Bar).then(|| {
        let pb = match expected {
            Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
        };
        let template = if expected.is_some() {
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} ride events · {msg} · ETA {eta}"
        } else {
            "{spinner} [{elapsed_precise}] {pos} ride events · {msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            pb.set_style(style);
        }
        pb
    });
    let started = Instant::now();
    let mut last = (Instant::now(), 0u64);
    let mut rate = 0.0;
    let mut next_report = Instant::now() + tick;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let now = Instant::now();
        if now >= next_report || stopping {
            next_report = now + tick;
            let rides = stats.counts(Kind::Ride);
            let total = stats.total();
            let dt = now.duration_since(last.0).as_secs_f64();
            if dt > 0.0 {
                let inst = (rides.attempted - last.1) as f64 / dt;
                rate = if mode == Progress::Bar && rate > 0.0 {
                    0.7 * rate + 0.3 * inst
                } else {
                    inst
                };
            }
            last = (now, rides.attempted);
            let phase = phase.lock().map(|p| *p).unwrap_or("producing");
            let msg = format!(
                "{rate:.0}/s · {} delivered · {} failed · {} locations · {phase}",
                rides.delivered,
                total.failed,
                stats.counts(Kind::Location).attempted
            );
            match &bar {
                Some(pb) => {
                    pb.set_position(rides.attempted);
                    pb.set_message(msg);
                }
                None if !stopping => tracing::info!(
                    "generate: {} ride events sent in {:.0}s, {msg}",
                    rides.attempted,
                    started.elapsed().as_secs_f64()
                ),
                None => {}
            }
        }
        if stopping {
            break;
        }
        std::thread::sleep(Duration::from_millis(50).min(tick));
    }
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
}

#[cfg(test)]
mod tests;
